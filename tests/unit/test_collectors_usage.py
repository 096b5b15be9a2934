"""Usage helpers on real SDK objects (openai, anthropic) and their dict shapes: cached tokens
normalised once, so ``input_tokens`` always includes cache reads and writes."""

from __future__ import annotations

import pytest

from agentledger.collectors import Emitter, MemoryTransport, usage_from_anthropic, usage_from_openai
from agentledger.collectors.usage import Usage

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")


def test_openai_chat_completion_counts_cached_inside_prompt() -> None:
    from openai.types.chat import ChatCompletion

    completion = ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                  "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0}},
    })  # fmt: skip
    assert usage_from_openai(completion) == Usage("openai", "gpt-4o-2024-08-06", 2006, 300, 1920, 0, 128)
    assert usage_from_openai(completion.model_dump()) == usage_from_openai(completion)


def test_openai_streamed_chat_takes_the_usage_chunk() -> None:
    from openai.types.chat import ChatCompletionChunk

    chunks = [
        ChatCompletionChunk.model_validate({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "h"}}]}),
        ChatCompletionChunk.model_validate({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini", "choices": [],
            "usage": {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57}}),
    ]  # fmt: skip
    assert usage_from_openai(chunks) == Usage("openai", "gpt-4o-mini", 50, 7)


def test_openai_responses_api_and_its_stream_event() -> None:
    from openai.types.responses import ResponseUsage

    usage = ResponseUsage.model_validate({
        "input_tokens": 1000, "output_tokens": 500, "total_tokens": 1500,
        "input_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 300},
        "output_tokens_details": {"reasoning_tokens": 400},
    })  # fmt: skip
    assert usage_from_openai(usage, model="o4-mini") == Usage("openai", "o4-mini", 1000, 500, 600, 300, 400)
    event = {"type": "response.completed", "sequence_number": 9,
             "response": {"id": "resp_1", "model": "o4-mini", "usage": usage.model_dump()}}  # fmt: skip
    assert usage_from_openai(event) == Usage("openai", "o4-mini", 1000, 500, 600, 300, 400)


def test_anthropic_message_adds_cache_reads_and_writes_to_input() -> None:
    from anthropic.types import Message

    message = Message.model_validate({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 300, "cache_read_input_tokens": 5000,
                  "cache_creation_input_tokens": 1000,
                  "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 0},
                  "output_tokens_details": {"thinking_tokens": 120}},
    })  # fmt: skip
    assert usage_from_anthropic(message) == Usage(
        "anthropic", "claude-sonnet-4-5", 6020, 300, 5000, 1000, 120
    )
    assert usage_from_anthropic(message.model_dump()) == usage_from_anthropic(message)


def test_anthropic_stream_merges_start_and_final_delta() -> None:
    from anthropic.types import RawMessageDeltaEvent, RawMessageStartEvent

    start = RawMessageStartEvent.model_validate({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 900,
                  "cache_creation_input_tokens": 0}}})  # fmt: skip
    delta = RawMessageDeltaEvent.model_validate({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 240}})  # fmt: skip
    assert usage_from_anthropic([start, delta]) == Usage("anthropic", "claude-haiku-4-5", 912, 240, 900, 0, 0)


def test_no_usage_is_none_and_record_goes_through_the_emitter() -> None:
    assert usage_from_openai({"id": "x"}) is None and usage_from_anthropic([]) is None
    mem = MemoryTransport()
    em = Emitter(tenant="acme", agent="a", transport=mem, linger_ms=1)
    Usage("anthropic", "claude", 912, 240, 900, 0, 0).record(em)
    assert em.flush(5)
    (event,) = mem.events
    assert (event["input_tokens"], event["cache_read_tokens"]) == (912, 900)
    em.shutdown(1)


@pytest.mark.parametrize(
    "raw",
    [
        {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
         "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0}},
        {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57},
        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
         "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 9}},  # more than the prompt
        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
         "completion_tokens_details": {"reasoning_tokens": 8}},  # more than the output
        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.1,  # an extra field
         "prompt_tokens_details": {"cached_tokens": None}},
    ],
)  # fmt: skip
def test_openai_chat_usage_object_read_without_per_field_calls(
    raw: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chat ``CompletionUsage`` is read from its fields in one function (the hook builds one
    per call on the sender's thread): the same counts as from its dict, with no ``_get`` call
    per field when the object holds plain fields only."""
    from openai.types import CompletionUsage

    from agentledger.collectors import usage as usage_module

    obj = CompletionUsage.model_validate(raw)
    expected = usage_module.openai_usage(dict(raw), "gpt-4o")
    assert usage_module.openai_usage(obj, "gpt-4o") == expected
    calls = []
    real_get = usage_module._get
    monkeypatch.setattr(usage_module, "_get", lambda o, n: calls.append(n) or real_get(o, n))
    assert usage_module.openai_usage(obj, "gpt-4o") == expected
    plain_fields = "cost" not in raw
    assert (calls == []) is plain_fields, calls
