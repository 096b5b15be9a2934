"""OTel's newer GenAI signals, from real SDK spans through both readers (the OTLP endpoint's
and the in-process bridge's): a provider-reported cost (``gen_ai.usage.cost*``, OpenInference's
``llm.cost.*``) is kept beside our price, and ``gen_ai.evaluation.result`` span events become
quality events of the span's agent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.api import otlp
from agentledger.collectors.otel import to_otel_span
from agentledger.events import QualityEvent, UsageEvent
from agentledger.genai import MappingDefaults, OtelSpan, spans_to_events

EVAL = "gen_ai.evaluation.result"


def _sdk_spans(cost: dict[str, Any], evaluations: list[dict[str, Any]]) -> tuple[ReadableSpan, ...]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "planner"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent planner") as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("gen_ai.agent.name", "planner")
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attribute("gen_ai.operation.name", "chat")
            llm.set_attribute("gen_ai.provider.name", "openai")
            llm.set_attribute("gen_ai.request.model", "gpt-4o")
            llm.set_attribute("gen_ai.usage.input_tokens", 1000)
            llm.set_attribute("gen_ai.usage.output_tokens", 200)
            for name, value in cost.items():
                llm.set_attribute(name, value)
            for attrs in evaluations:
                llm.add_event(EVAL, attrs)
    provider.shutdown()
    return exporter.get_finished_spans()


def _read(spans: tuple[ReadableSpan, ...], reader: str) -> list[OtelSpan]:
    if reader == "otlp":
        return otlp.spans_of(encode_spans(spans))
    out = [to_otel_span(s) for s in spans]
    return [s for s in out if s is not None]


def _events(cost: dict[str, Any], evaluations: list[dict[str, Any]], reader: str) -> list[Any]:
    return spans_to_events(_read(_sdk_spans(cost, evaluations), reader), MappingDefaults(tenant="acme"))


READERS = ["otlp", "bridge"]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("cost", "reported"),
    [
        ({"gen_ai.usage.cost": 0.0123}, Decimal("0.0123")),
        ({"gen_ai.usage.cost.total": "0.5"}, Decimal("0.5")),
        ({"llm.cost.total": 0.25}, Decimal("0.25")),
        ({"gen_ai.usage.cost.input": 0.01, "gen_ai.usage.cost.output": 0.02}, Decimal("0.03")),
        ({"llm.cost.prompt": 0.004}, Decimal("0.004")),
        ({}, None),
        ({"gen_ai.usage.cost": -1.0}, None),  # not a cost: left out, the call still counted
        ({"gen_ai.usage.cost": "n/a"}, None),
    ],
)
def test_the_provider_reported_cost_is_kept_beside_ours(
    reader: str, cost: dict[str, Any], reported: Decimal | None
) -> None:
    usage = [e for e in _events(cost, [], reader) if isinstance(e, UsageEvent)]
    assert len(usage) == 1
    assert usage[0].reported_cost_usd == reported
    assert (usage[0].input_tokens, usage[0].output_tokens) == (1000, 200)


@pytest.mark.parametrize("reader", READERS)
def test_evaluation_events_become_quality_events_of_the_spans_agent(reader: str) -> None:
    evaluations = [
        {
            "gen_ai.evaluation.name": "relevance",
            "gen_ai.evaluation.score.value": 0.82,
            "gen_ai.evaluation.score.label": "relevant",
            "gen_ai.evaluation.explanation": "answers the question",
        },
        {"gen_ai.evaluation.name": "toxicity", "gen_ai.evaluation.score.value": 0},
        {"gen_ai.evaluation.name": "tone", "gen_ai.evaluation.score.label": "polite"},  # no score: left out
        {"gen_ai.evaluation.score.value": 0.5},  # no name: left out
    ]
    events = _events({}, evaluations, reader)
    quality = sorted((e for e in events if isinstance(e, QualityEvent)), key=lambda e: e.metric)
    assert [(q.metric, q.score, q.label, q.comment) for q in quality] == [
        ("relevance", 0.82, "relevant", "answers the question"),
        ("toxicity", 0.0, None, None),
    ]
    llm_span = next(e for e in events if isinstance(e, UsageEvent))
    for q in quality:
        assert (q.tenant, q.agent, q.trace_id, q.span_id) == (
            "acme",
            "planner",
            llm_span.trace_id,
            llm_span.span_id,
        )
    assert len({q.event_id for q in quality}) == 2  # stable ids: a re-export dedupes
    again = [e for e in _events({}, evaluations, reader) if isinstance(e, QualityEvent)]
    assert {q.event_id.split(":")[-1] for q in again} == {q.event_id.split(":")[-1] for q in quality}
