"""The fake provider speaks what the official SDKs expect: the usage a test relies on arrives
through openai and anthropic, plain and streamed, and our usage helpers read it."""

from __future__ import annotations

import anthropic
import openai
import pytest
from fakeprovider import FakeProvider, FixedUsage

from agentledger.collectors import usage_from_anthropic, usage_from_openai

MSGS = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def fake():  # type: ignore[no-untyped-def]
    with FakeProvider(usage=FixedUsage(input_tokens=1000, output_tokens=200, cache_read_tokens=400)) as f:
        yield f


def test_openai_plain_and_streamed(fake):  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    resp = client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
    assert resp.choices[0].message.content == "4"
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True,  # type: ignore[arg-type]
                                                 stream_options={"include_usage": True}))  # fmt: skip
    for got in (usage_from_openai(resp), usage_from_openai(chunks)):
        assert got is not None
        assert (got.model, got.input_tokens, got.output_tokens, got.cache_read_tokens) == (
            "gpt-4o",
            1000,
            200,
            400,
        )
    assert [path for path, _ in fake.requests] == ["/v1/chat/completions"] * 2


def test_openai_responses_plain_and_streamed(fake):  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    resp = client.responses.create(model="gpt-4o", input="What is 2 + 2?")
    assert resp.output_text == "4"
    events = list(client.responses.create(model="gpt-4o", input="What is 2 + 2?", stream=True))
    assert [e.type for e in events][-1] == "response.completed"
    for got in (usage_from_openai(resp), usage_from_openai(events)):
        assert got is not None
        assert (got.input_tokens, got.output_tokens, got.cache_read_tokens) == (1000, 200, 400)


def test_anthropic_plain_and_streamed(fake):  # type: ignore[no-untyped-def]
    client = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake")
    msg = client.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS)  # type: ignore[arg-type]
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=MSGS) as stream:  # type: ignore[arg-type]
        assert stream.get_final_text() == "4"
        final = stream.get_final_message()
    for got in (usage_from_anthropic(msg), usage_from_anthropic(final)):
        assert got is not None
        # the contract's input counts the cache reads Anthropic reports apart
        assert (got.input_tokens, got.output_tokens, got.cache_read_tokens) == (1000, 200, 400)


def test_a_chat_offering_tools_gets_the_marked_tool_call_first_then_final_answer(fake):  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    fn = {
        "type": "object",
        "properties": {"task": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["task", "n"],
    }
    tools = [
        {"type": "function", "function": {"name": n, "parameters": fn}}
        for n in ("researcher", "final_answer")
    ]
    first = [
        {"role": "system", "content": "Delegate: [[call:researcher]]"},
        {"role": "user", "content": "2 + 2?"},
    ]
    resp = client.chat.completions.create(model="gpt-4o", messages=first, tools=tools)  # type: ignore[arg-type]
    [call] = resp.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("researcher", '{"task": "4", "n": 4}')  # type: ignore[union-attr]
    assert resp.choices[0].finish_reason == "tool_calls" and usage_from_openai(resp).input_tokens == 1000  # type: ignore[union-attr]
    later = [
        *first,
        {"role": "assistant", "content": "calling"},
        {"role": "user", "content": "Observation: 4"},
    ]
    resp = client.chat.completions.create(model="gpt-4o", messages=later, tools=tools)  # type: ignore[arg-type]
    assert [c.function.name for c in resp.choices[0].message.tool_calls or []] == ["final_answer"]  # type: ignore[union-attr]
    plain = client.chat.completions.create(model="gpt-4o", messages=first)  # type: ignore[arg-type]
    assert plain.choices[0].message.content == "4" and not plain.choices[0].message.tool_calls
    retried = [first[0], {"role": "user", "content": "2 + 2? Error calling researcher: killed"}]
    resp = client.chat.completions.create(model="gpt-4o", messages=retried, tools=tools)  # type: ignore[arg-type]
    assert [c.function.name for c in resp.choices[0].message.tool_calls or []] == ["final_answer"]  # type: ignore[union-attr]
