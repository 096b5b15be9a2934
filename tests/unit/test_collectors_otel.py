"""The OpenTelemetry bridge on spans made by the real OpenTelemetry SDK."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from agentledger import wire
from agentledger.collectors import Emitter, MemoryTransport
from agentledger.collectors.otel import AgentLedgerSpanProcessor
from agentledger.events import SpanEvent, ToolCallEvent, UsageEvent


@pytest.fixture
def setup() -> Iterator[tuple[Any, MemoryTransport, AgentLedgerSpanProcessor]]:
    mem = MemoryTransport()
    em = Emitter(tenant="acme", agent="default-agent", agent_version="v7", transport=mem, linger_ms=1)
    processor = AgentLedgerSpanProcessor(em)
    provider = TracerProvider(resource=Resource.create({"service.name": "bot"}))
    provider.add_span_processor(processor)
    yield provider.get_tracer("test"), mem, processor
    provider.shutdown()
    em.shutdown(1)


def events_of(mem: MemoryTransport) -> list[wire.AnyEvent]:
    out: list[wire.AnyEvent] = []
    for raw in mem.envelopes():
        dec = wire.decode_envelope(raw)
        assert dec.rejected == []
        out.extend(dec.events)
    return out


def test_agent_with_llm_calls_and_a_tool(setup: Any) -> None:
    tracer, mem, processor = setup
    secret = "the secret system prompt"
    with tracer.start_as_current_span("invoke_agent planner") as agent:
        agent.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner",
                              "gen_ai.usage.input_tokens": 999, "gen_ai.usage.output_tokens": 99})  # fmt: skip
        with tracer.start_as_current_span("chat claude-sonnet-4-5") as chat:
            chat.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                                 "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.id": "msg_1",
                                 "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 300,
                                 "gen_ai.usage.cache_read.input_tokens": 5000,
                                 "gen_ai.system_instructions": secret})  # fmt: skip
            with tracer.start_as_current_span("anthropic.messages.create") as inner:
                inner.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
                                      "gen_ai.response.model": "claude-sonnet-4-5-20250929",
                                      "gen_ai.response.id": "msg_1", "gen_ai.usage.input_tokens": 20,
                                      "gen_ai.usage.output_tokens": 300,
                                      "gen_ai.usage.cache_read.input_tokens": 5000})  # fmt: skip
        with tracer.start_as_current_span("execute_tool search") as tool:
            tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search",
                                 "gen_ai.tool.call.arguments": secret})  # fmt: skip
            tool.set_status(Status(StatusCode.ERROR, "boom"))
            tool.record_exception(TimeoutError("slow"))
    assert processor.force_flush(5_000)
    events = events_of(mem)
    usage = [e for e in events if isinstance(e, UsageEvent)]
    assert len(usage) == 1  # not the agent rollup, not the outer framework span
    (u,) = usage
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (5020, 5000, 300)
    assert (u.agent, u.agent_version, u.tenant, u.model) == (
        "planner",
        "v7",
        "acme",
        "claude-sonnet-4-5-20250929",
    )
    spans = {e.name: e for e in events if isinstance(e, SpanEvent)}
    assert spans["chat claude-sonnet-4-5"].parent_span_id == spans["invoke_agent planner"].span_id
    assert len({e.trace_id for e in events}) == 1
    (tool_event,) = [e for e in events if isinstance(e, ToolCallEvent)]
    assert tool_event.status.value == "error" and spans["execute_tool search"].error_type == "TimeoutError"
    assert secret.encode() not in b"".join(mem.envelopes())
    assert {b.key for b in mem.batches} == {"acme/planner"}


def test_openinference_spans_and_traces_apart(setup: Any) -> None:
    tracer, mem, processor = setup
    for agent_name in ("researcher", "writer"):
        with tracer.start_as_current_span(agent_name) as agent:
            agent.set_attribute("openinference.span.kind", "AGENT")
            with tracer.start_as_current_span("ChatOpenAI") as llm:
                llm.set_attributes({"openinference.span.kind": "LLM", "llm.provider": "openai",
                                    "llm.model_name": "gpt-4o-mini", "llm.token_count.prompt": 100,
                                    "llm.token_count.completion": 10,
                                    "llm.token_count.prompt_details.cache_read": 64})  # fmt: skip
    with tracer.start_as_current_span("GET /health"):
        pass  # not GenAI work: no event
    assert processor.force_flush(5_000)
    events = events_of(mem)
    usage = sorted(
        (e.agent, e.input_tokens, e.cache_read_tokens) for e in events if isinstance(e, UsageEvent)
    )
    assert usage == [("researcher", 100, 64), ("writer", 100, 64)]
    assert len({e.trace_id for e in events}) == 2
    assert all(e.name != "GET /health" for e in events if isinstance(e, SpanEvent))


def _refused_spans(tracer: Any, n: int) -> None:
    """LLM spans the contract refuses (a boolean token count), in one trace."""
    with tracer.start_as_current_span("request"):  # not GenAI work: skipped, not refused
        for i in range(n):
            with tracer.start_as_current_span(f"chat gpt-4o {i}") as chat:
                chat.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                     "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": True,
                                     "gen_ai.usage.output_tokens": 3})  # fmt: skip


def test_spans_the_mapping_refuses_are_counted_and_logged_once_a_minute(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tracer, mem, processor = setup
    em = processor.emitter
    caplog.set_level(logging.WARNING)
    _refused_spans(tracer, 3)
    assert processor.force_flush(5_000)
    assert em.stats()["rejected"] == 3
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1, warned
    assert "3 span(s) refused" in warned[0] and "input_tokens" in warned[0]
    _refused_spans(tracer, 2)  # within the minute: counted, not logged
    assert processor.force_flush(5_000)
    assert em.stats()["rejected"] == 5
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    em._rejected_logged_at -= 61  # a minute later the next one is logged, with what came between
    _refused_spans(tracer, 1)
    assert processor.force_flush(5_000)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 2 and "3 span(s) refused" in warned[1] and "6 in all" in warned[1]
    assert events_of(mem) == []  # nothing was recorded for them
