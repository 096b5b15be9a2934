"""Spans an OpenTelemetry instrumentation starts inside a call the provider-SDK hook records
(OpenInference's span of the openai SDK's request carries no response id to dedupe on) are
marked by the hook's span processor, and the OTLP mapping leaves their usage to the hook."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.collectors import naming
from agentledger.events import UsageEvent
from agentledger.genai import HOOKED_CALL, MappingDefaults, OtelSpan, spans_to_events

TRACE = "a" * 32
LLM = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.provider": "openai",
       "llm.token_count.prompt": 1000, "llm.token_count.completion": 200}  # fmt: skip


def usage(spans: list[OtelSpan]) -> list[UsageEvent]:
    return [e for e in spans_to_events(spans, MappingDefaults(tenant="acme")) if isinstance(e, UsageEvent)]


def test_a_span_started_inside_a_recorded_call_is_marked_and_one_outside_is_not() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert naming.track_open_spans(provider)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("agent"):
        token = naming.recording_call(naming.Caller("acme", "a", None, None, None, None, None))
        try:
            with tracer.start_as_current_span("ChatCompletion"):
                pass
        finally:
            naming.end_recording_call(token)
        with tracer.start_as_current_span("after"):
            pass
    marked = {s.name: s.attributes.get(HOOKED_CALL) for s in exporter.get_finished_spans()}
    assert marked == {"ChatCompletion": True, "after": None, "agent": None}


def test_the_mapping_leaves_a_marked_llm_spans_usage_to_the_hook() -> None:
    outer = OtelSpan(TRACE, "1" * 16, None, "crew.llm", 0, 10, {**LLM})  # a framework's LLM span
    inner = OtelSpan(TRACE, "2" * 16, "1" * 16, "ChatCompletion", 1, 9, {**LLM, HOOKED_CALL: True})
    assert usage([outer, inner]) == []  # the hook's own event is the one record of this call
    unmarked = OtelSpan(TRACE, "2" * 16, "1" * 16, "ChatCompletion", 1, 9, {**LLM})
    assert [(e.input_tokens, e.span_id) for e in usage([outer, unmarked])] == [(1000, "2" * 16)]
