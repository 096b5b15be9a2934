"""The shared OTel GenAI -> contract mapping, on neutral OtelSpans shaped like what each
framework emits: variants, traps, and no message content."""

from __future__ import annotations

from typing import Any

from agentledger import wire
from agentledger.events import SpanEvent, ToolCallEvent, UsageEvent
from agentledger.genai import MappingDefaults, OtelSpan, spans_to_events

TRACE = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_764_000_000_000_000_000
DEFAULTS = MappingDefaults(tenant="acme", agent="fallback")
# Response ids as unique as real ones: only those dedupe calls (docs/adr/0008-reused-response-ids.md).
MSG_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
CHAT_ID = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"


def sp(span_id: int, parent: int | None, name: str, attrs: dict[str, Any], **kw: Any) -> OtelSpan:
    return OtelSpan(
        trace_id=TRACE, span_id=f"{span_id:016x}", parent_span_id=f"{parent:016x}" if parent else None,
        name=name, start_ns=T0 + span_id * 1000, end_ns=T0 + 10_000_000 - span_id * 1000, attributes=attrs, **kw,
    )  # fmt: skip


def usages(events: list[Any]) -> list[UsageEvent]:
    return [e for e in events if isinstance(e, UsageEvent)]


def test_agent_framework_rollups_on_invoke_agent_are_not_counted() -> None:
    spans = [
        sp(1, None, "invoke_agent planner", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner",
            "gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 30}),
        sp(2, 1, "chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}),
        sp(3, 1, "chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 200, "gen_ai.usage.output_tokens": 20}),
    ]  # fmt: skip
    events = spans_to_events(spans, DEFAULTS)
    got = usages(events)
    assert sorted(u.input_tokens for u in got) == [100, 200]
    assert {u.agent for u in got} == {"planner"} and {u.provider for u in got} == {"openai"}
    assert {u.model for u in got} == {"gpt-4o-2024-08-06", "gpt-4o"}
    kinds = {e.name: e.kind.value for e in events if isinstance(e, SpanEvent)}
    assert kinds == {"invoke_agent planner": "agent", "chat gpt-4o": "llm"}


def test_sdk_span_inside_framework_span_counts_once() -> None:
    spans = [
        sp(1, None, "chat claude", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 5}),
        sp(2, 1, "anthropic.messages.create", {"gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
            "gen_ai.response.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 5, "gen_ai.response.id": MSG_ID}),
        # a sibling export of the same call (global tracer provider): same response id
        sp(3, None, "chat", {"gen_ai.operation.name": "chat", "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 5, "gen_ai.response.id": MSG_ID}),
    ]  # fmt: skip
    got = usages(spans_to_events(spans, DEFAULTS))
    assert len(got) == 1 and got[0].span_id in (f"{2:016x}", f"{3:016x}") and got[0].input_tokens == 50


def test_cache_variants_and_cached_tokens_outside_the_input_count() -> None:
    spans = [
        sp(1, None, "chat", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude", "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 7,
            "gen_ai.usage.cache_read.input_tokens": 5000, "gen_ai.usage.cache_creation.input_tokens": 1000}),
        sp(2, None, "chat", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "o4-mini", "gen_ai.usage.input_tokens": 2000, "gen_ai.usage.output_tokens": 700,
            "gen_ai.usage.cache_read.input_tokens": 1500, "gen_ai.usage.cache_write.input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 500}),
        sp(3, None, "ChatAnthropic", {"openinference.span.kind": "LLM", "llm.provider": "anthropic",
            "llm.model_name": "claude", "llm.token_count.prompt": 900, "llm.token_count.completion": 9,
            "llm.token_count.prompt_details.cache_read": 800, "llm.token_count.prompt_details.cache_write": 50,
            "llm.token_count.completion_details.reasoning": 4}),
        sp(4, None, "anthropic.chat", {"llm.request.type": "chat", "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "claude", "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1,
            "anthropic.usage.cache_creation.ephemeral_5m_input_tokens": 30,
            "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 70,
            "gen_ai.usage.details.cache_read_tokens": 0, "gen_ai.usage.details.reasoning_tokens": 0}),
    ]  # fmt: skip
    got = {u.span_id[-1]: u for u in usages(spans_to_events(spans, DEFAULTS))}
    assert (got["1"].input_tokens, got["1"].cache_read_tokens, got["1"].cache_write_tokens) == (
        6020,
        5000,
        1000,
    )
    assert (got["2"].input_tokens, got["2"].cache_write_tokens, got["2"].reasoning_tokens) == (2000, 100, 500)
    assert (got["3"].input_tokens, got["3"].cache_read_tokens, got["3"].cache_write_tokens) == (900, 800, 50)
    assert got["3"].reasoning_tokens == 4 and got["4"].provider == "anthropic"
    assert (got["4"].input_tokens, got["4"].cache_write_tokens) == (110, 100)


def test_which_agent_lc_agent_name_crewai_role_and_openinference_agent_spans() -> None:
    spans = [
        sp(1, None, "AgentExecutor", {"traceloop.span.kind": "agent", "gen_ai.agent.name": "root"}),
        sp(2, 1, "ChatOpenAI.chat", {"llm.request.type": "chat", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 1,
            "traceloop.association.properties.lc_agent_name": "sub/agent"}),
        sp(3, None, "Crew Agent", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a3f9c2e1",
            "crewai.agent.role": "Senior Researcher"}),
        sp(4, 3, "chat", {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "m",
            "gen_ai.usage.input_tokens": 2, "gen_ai.usage.output_tokens": 1}),
        sp(5, None, "researcher", {"openinference.span.kind": "AGENT"}),
        sp(6, 5, "llm", {"openinference.span.kind": "LLM", "llm.model_name": "m", "llm.token_count.prompt": 3,
            "llm.token_count.completion": 1}),
    ]  # fmt: skip
    got = {u.input_tokens: u.agent for u in usages(spans_to_events(spans, DEFAULTS))}
    assert got == {1: "sub_agent", 2: "Senior Researcher", 3: "researcher"}


def test_agent_version_from_resource_and_defaults_for_the_rest() -> None:
    spans = [
        sp(1, None, "chat", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 1},
            resource={"service.version": "2.4.1"}),
        sp(2, None, "chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 1, "gen_ai.agent.version": "v9"}),
    ]  # fmt: skip
    events = spans_to_events(spans, MappingDefaults(tenant="acme", agent="bot", workflow="wf"))
    by_span = {u.span_id[-1]: u for u in usages(events)}
    assert by_span["1"].agent_version == "2.4.1" and by_span["2"].agent_version == "v9"
    assert {u.agent for u in by_span.values()} == {"bot"} and {u.workflow for u in by_span.values()} == {"wf"}
    assert by_span["2"].provider == "unknown" and all(u.tenant == "acme" for u in by_span.values())


def test_tools_no_content_url_host_errors_and_non_genai_spans() -> None:
    secret = "my secret prompt about the merger"
    spans = [
        sp(1, None, "chat", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 1,
            "gen_ai.input.messages": f'[{{"role":"user","content":"{secret}"}}]', "gen_ai.prompt.0.content": secret,
            "gen_ai.completion.0.content": secret, "server.address": "https://api.openai.com/v1",
            "gen_ai.response.finish_reasons": ["stop"]}),
        sp(2, 1, "execute_tool search", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search",
            "gen_ai.tool.call.arguments": f'{{"q": "{secret}"}}'}, status_error=True, error_type="TimeoutError"),
        sp(3, 1, "GET /search", {"http.request.method": "GET"}),
        sp(4, None, "tool", {"openinference.span.kind": "TOOL", "tool.name": "calc", "input.value": secret}),
    ]  # fmt: skip
    events = spans_to_events(spans, DEFAULTS)
    raw = wire.encode_envelope("acme/fallback", events)
    assert secret.encode() not in raw and b"merger" not in raw
    assert wire.decode_envelope(raw).rejected == []
    assert {e.name for e in events if isinstance(e, SpanEvent)} == {"chat", "execute_tool search", "tool"}
    tools = {e.tool: e for e in events if isinstance(e, ToolCallEvent)}
    assert set(tools) == {"search", "calc"} and tools["search"].status.value == "error"
    chat = next(e for e in events if isinstance(e, SpanEvent) and e.name == "chat")
    assert chat.attributes["server.address"] == "api.openai.com"
    assert chat.attributes["gen_ai.response.finish_reasons"] == "stop"
    failed = next(e for e in events if isinstance(e, SpanEvent) and e.name == "execute_tool search")
    assert failed.status.value == "error" and failed.error_type == "TimeoutError"


def test_ids_are_deterministic_and_bad_spans_are_skipped() -> None:
    good = sp(1, None, "chat", {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 1})
    bad = OtelSpan(trace_id="xyz", span_id="1", parent_span_id=None, name="chat", start_ns=T0, end_ns=T0,
                   attributes={"gen_ai.operation.name": "chat"})  # fmt: skip
    first = spans_to_events([good, bad], DEFAULTS)
    assert [e.event_id for e in first] == [e.event_id for e in spans_to_events([good], DEFAULTS)]
    assert len(first) == 2 and first[0].event_id == f"otel:{TRACE}:{1:016x}"


def _chat(span_id: int, name: str = "chat gpt-4o", **attrs: Any) -> OtelSpan:
    base = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}  # fmt: skip
    return sp(span_id, None, name, {**base, **attrs})


def test_a_boolean_token_count_rejects_the_span_with_the_reason() -> None:
    rejected: list[tuple[OtelSpan, str]] = []
    spans = [
        _chat(1),
        _chat(2, **{"gen_ai.usage.output_tokens": True}),  # int(True) would be 1 token
        _chat(3, **{"gen_ai.usage.cache_read.input_tokens": False}),
    ]
    events = spans_to_events(spans, DEFAULTS, rejected)
    assert [(u.span_id, u.input_tokens, u.output_tokens) for u in usages(events)] == [(f"{1:016x}", 100, 10)]
    assert {e.span_id for e in events} == {f"{1:016x}"}  # no span event either: the span is refused
    assert sorted((s.span_id, why) for s, why in rejected) == [
        (f"{2:016x}", "gen_ai.usage.output_tokens is a boolean (True), not a token count"),
        (f"{3:016x}", "gen_ai.usage.cache_read.input_tokens is a boolean (False), not a token count"),
    ]


def test_a_boolean_count_alone_still_makes_an_llm_span_that_is_reported() -> None:
    rejected: list[tuple[OtelSpan, str]] = []
    span = sp(1, None, "call", {"gen_ai.usage.input_tokens": True})  # no operation name: the count says LLM
    assert spans_to_events([span], DEFAULTS, rejected) == []
    assert [why for _, why in rejected] == [
        "gen_ai.usage.input_tokens is a boolean (True), not a token count"
    ]


def test_span_names_with_hidden_characters_are_rejected_with_the_reason() -> None:
    rejected: list[tuple[OtelSpan, str]] = []
    spans = [
        _chat(1),
        _chat(2, name="chat gpt\u202e4o"),  # a right-to-left override
        _chat(3, name="chat\nforged log line"),
        sp(4, None, "execute_tool search\u200b", {"gen_ai.operation.name": "execute_tool"}),
        _chat(5, name="chat ｇｐｔ"),  # fullwidth letters: NFKC-normalised, kept
    ]
    events = spans_to_events(spans, DEFAULTS, rejected)
    names = sorted(e.name for e in events if isinstance(e, SpanEvent))
    assert names == ["chat gpt", "chat gpt-4o"]
    assert sorted((s.span_id, why) for s, why in rejected) == [
        (f"{2:016x}", "span name must not contain control or format characters: "
                      "U+202E RIGHT-TO-LEFT OVERRIDE at position 8"),
        (f"{3:016x}", "span name must not contain control or format characters: U+000A control character at position 4"),
        (f"{4:016x}", "span name must not contain control or format characters: "
                      "U+200B ZERO WIDTH SPACE at position 19"),
    ]  # fmt: skip


def test_agent_names_lose_the_method_the_framework_ran() -> None:
    spans = [
        sp(1, None, "weather_agent.run", {"openinference.span.kind": "AGENT"}),
        sp(2, 1, "chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1}),
        sp(3, None, "Crew", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "lead_agent._execute_core"}),
        sp(4, 3, "chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 2}),
    ]  # fmt: skip
    got = {u.input_tokens: u.agent for u in usages(spans_to_events(spans, DEFAULTS))}
    assert got == {10: "weather_agent", 20: "lead_agent"}  # a policy on `weather_agent` matches


def test_a_usage_event_id_comes_from_the_provider_response_id() -> None:
    from agentledger.genai import response_event_id

    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
             "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1}  # fmt: skip
    with_id = usages(
        spans_to_events([sp(1, None, "chat", {**attrs, "gen_ai.response.id": CHAT_ID})], DEFAULTS)
    )
    without = usages(spans_to_events([sp(2, None, "chat", attrs)], DEFAULTS))
    # the provider-SDK hook records the same call under the same id: the (tenant, event_id) dedupe keeps one
    assert [u.event_id for u in with_id] == [response_event_id(CHAT_ID)]
    assert [u.event_id for u in without] == [f"otel:{TRACE}:{2:016x}:u"]
