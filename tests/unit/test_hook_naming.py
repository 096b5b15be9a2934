"""Who the hook credits a call to: an explicit span first, else the innermost OTel agent span
(method suffix stripped), else service.name; and the response-derived event id."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from agentledger.collectors import Emitter, MemoryTransport
from agentledger.collectors.naming import agent_of_span, resolve, response_event_id, track_open_spans
from agentledger.events import UsageEvent


@pytest.fixture
def provider() -> TracerProvider:
    tp = TracerProvider(resource=Resource.create({"service.name": "billing-bot", "service.version": "7"}))
    assert track_open_spans(tp)
    return tp


@pytest.fixture
def emitter() -> Iterator[Emitter]:
    em = Emitter(tenant="acme", transport=MemoryTransport())  # no agent named: OTel may name it
    yield em
    em.shutdown(1)


@pytest.mark.parametrize(
    ("name", "attributes", "expected"),
    [
        ("ToolCallingAgent.run", {"openinference.span.kind": "AGENT"}, "ToolCallingAgent"),
        ("Crew Manager._execute_core", {"traceloop.span.kind": "agent"}, "Crew Manager"),
        ("invoke_agent researcher", {"gen_ai.operation.name": "invoke_agent"}, "researcher"),
        ("x", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "writer.run"}, "writer"),
        ("openai.chat", {"gen_ai.operation.name": "chat"}, None),  # not an agent span
        (".run", {"openinference.span.kind": "AGENT"}, ".run"),  # nothing left to strip to
    ],
)
def test_agent_of_span(name: str, attributes: dict[str, str], expected: str | None) -> None:
    assert agent_of_span(name, attributes) == expected


def test_innermost_otel_agent_names_the_call(provider: TracerProvider, emitter: Emitter) -> None:
    tracer = provider.get_tracer("t")
    agent = {"openinference.span.kind": "AGENT"}
    with (
        tracer.start_as_current_span("Planner.run", attributes=agent),
        tracer.start_as_current_span("Researcher.run", attributes=agent),
        tracer.start_as_current_span("chain step") as step,
        tracer.start_as_current_span("openai.chat", attributes={"gen_ai.operation.name": "chat"}),
    ):
        caller = resolve(emitter)
    assert (caller.tenant, caller.agent, caller.agent_version) == ("acme", "Researcher", "7")
    ctx = step.get_span_context()
    assert caller.trace_id == format(ctx.trace_id, "032x")  # a trace-scoped kill sees the OTel trace


def test_service_name_when_no_agent_span(provider: TracerProvider, emitter: Emitter) -> None:
    with provider.get_tracer("t").start_as_current_span("handler"):
        assert resolve(emitter).agent == "billing-bot"


def test_explicit_span_and_configured_agent_win(provider: TracerProvider, emitter: Emitter) -> None:
    named = Emitter(tenant="acme", agent="support", transport=MemoryTransport())
    tracer = provider.get_tracer("t")
    try:
        with tracer.start_as_current_span("Researcher.run", attributes={"openinference.span.kind": "AGENT"}):
            assert resolve(named).agent == "support"
            with emitter.span("triage", agent="triage") as span:
                caller = resolve(emitter)
            assert (caller.agent, caller.trace_id, caller.span_id) == ("triage", span.trace_id, span.span_id)
    finally:
        named.shutdown(1)


def test_no_context_falls_back_to_the_configured_agent(emitter: Emitter) -> None:
    caller = resolve(emitter)
    assert (caller.agent, caller.trace_id) == ("agent", None)


def test_response_event_id_is_stable_and_fits_the_contract() -> None:
    event_id = response_event_id("chatcmpl-AbC123")
    assert event_id == response_event_id("chatcmpl-AbC123") != response_event_id("chatcmpl-AbC124")
    event = UsageEvent(
        event_id=event_id, ts=datetime.now(UTC), tenant="acme", agent="a", trace_id="1" * 32,
        span_id="2" * 16, provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1,
    )  # fmt: skip
    assert event.event_id == event_id
    assert response_event_id("resp_" + "x" * 500).startswith("resp:")
    assert len(response_event_id("resp_" + "x" * 500)) <= 64
