"""Which response ids may stand for a call (docs/adr/0009-reused-response-ids.md): unique ones
dedupe every path's copy of a call; reused ones (Ollama's ``chatcmpl-<0..998>``) never make
two calls one, and a call inside an OTel LLM span still has one id on both paths."""

from __future__ import annotations

from typing import Any

import pytest

from agentledger.collectors.naming import Caller, usage_event_id
from agentledger.events import UsageEvent
from agentledger.genai import (
    MappingDefaults,
    OtelSpan,
    response_event_id,
    spans_to_events,
    unique_response_id,
)


@pytest.mark.parametrize(
    "response_id",
    [
        "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",  # OpenAI
        "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",  # OpenAI Responses
        "msg_01XFDUDYJgAACzvnptvVoYEL",  # Anthropic
        "chatcmpl-9f2c1d6e0b7a4a58b1f0e2d3c4b5a697",  # vLLM (uuid hex)
        "gen-1745612345-AbCdEfGhIjKlMnOp",  # OpenRouter
        "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b",  # a bare uuid
    ],
)
def test_ids_that_name_one_call(response_id: str) -> None:
    assert unique_response_id(response_id)


@pytest.mark.parametrize(
    "response_id", ["chatcmpl-0", "chatcmpl-998", "chatcmpl-fake12", "1712345678901234567", "x"]
)
def test_ids_that_do_not(response_id: str) -> None:
    assert not unique_response_id(response_id)


def llm_span(span_id: str, response_id: str) -> OtelSpan:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "llama3.2",
        "gen_ai.response.id": response_id, "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
    }  # fmt: skip
    return OtelSpan("a" * 32, span_id, None, "chat llama3.2", 1_000, 2_000, attrs)


def usage_of(spans: list[OtelSpan]) -> list[UsageEvent]:
    events = spans_to_events(spans, MappingDefaults(tenant="acme", agent="planner"))
    return [e for e in events if isinstance(e, UsageEvent)]


def test_two_calls_with_one_reused_id_count_twice_over_otlp() -> None:
    reused = usage_of([llm_span("1" * 16, "chatcmpl-7"), llm_span("2" * 16, "chatcmpl-7")])
    assert sorted(e.event_id for e in reused) == [
        f"otel:{'a' * 32}:{'1' * 16}:u",
        f"otel:{'a' * 32}:{'2' * 16}:u",
    ]
    unique = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    both = usage_of([llm_span("1" * 16, unique), llm_span("2" * 16, unique)])  # one call, two spans
    assert [e.event_id for e in both] == [response_event_id(unique)]


def test_the_hook_names_a_reused_id_call_as_its_llm_span_does() -> None:
    inside = Caller("acme", "planner", None, None, "a" * 32, "1" * 16, None)
    inside.in_llm_span = True
    [over_otlp] = usage_of([llm_span("1" * 16, "chatcmpl-7")])
    assert usage_event_id("chatcmpl-7", inside) == over_otlp.event_id
    outside = Caller("acme", "planner", None, None, "a" * 32, "1" * 16, None)  # an agent span, say
    first, second = usage_event_id("chatcmpl-7", outside), usage_event_id("chatcmpl-7", outside)
    assert first != second and not first.startswith("resp:")  # two calls, two events
    unique = "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert usage_event_id(unique, outside) == usage_event_id(unique, inside) == response_event_id(unique)
