"""The tap on streamed bodies read as bytes: usage and response id whatever the chunking, the
hook's own usage chunk taken out of what the agent reads, and one report per body."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentledger.collectors._bodytap import BodyTap
from agentledger.collectors.usage import Usage

USAGE = {"prompt_tokens": 1000, "completion_tokens": 200, "prompt_tokens_details": {"cached_tokens": 600}}


def sse(*events: dict[str, Any], done: bool = True, newline: str = "\n") -> bytes:
    body = "".join(f"data: {json.dumps(e)}{newline}{newline}" for e in events)
    return (body + (f"data: [DONE]{newline}{newline}" if done else "")).encode()


CHAT = sse(
    {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"delta": {"content": "4"}}]},
    {
        "id": "chatcmpl-1",
        "model": "gpt-4o",
        "choices": [{"delta": {}, "finish_reason": "stop"}],
        "usage": None,
    },
    {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [], "usage": USAGE},
)


def run(
    body: bytes, operation: str, hide: bool, size: int
) -> tuple[bytes, list[tuple[Usage | None, str | None]]]:
    reports: list[tuple[Usage | None, str | None]] = []
    tap = BodyTap(operation, hide, lambda usage, rid: reports.append((usage, rid)))
    seen = b"".join(tap.feed(body[i : i + size]) for i in range(0, len(body), size)) + tap.flush()
    tap.close()
    tap.close()  # idempotent
    return seen, reports


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_chat_usage_whatever_the_chunking_and_the_hooks_chunk_hidden(size: int) -> None:
    seen, reports = run(CHAT, "chat", hide=False, size=size)
    assert seen == CHAT
    [(usage, rid)] = reports
    assert rid == "chatcmpl-1" and usage is not None
    assert (usage.model, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (
        "gpt-4o",
        1000,
        200,
        600,
    )
    hidden, reports = run(CHAT, "chat", hide=True, size=size)
    assert b'"usage": {' not in hidden and hidden.count(b"data: ") == 3  # two chunks and [DONE]
    assert reports[0][0] == usage


def test_anthropic_and_responses_streams_with_crlf() -> None:
    start = {"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-6",
             "usage": {"input_tokens": 400, "cache_read_input_tokens": 600, "output_tokens": 1}}}  # fmt: skip
    delta = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 200}}
    _, [(usage, rid)] = run(sse(start, delta, done=False, newline="\r\n"), "messages", hide=False, size=5)
    assert rid == "msg_1" and usage is not None and (usage.input_tokens, usage.output_tokens) == (1000, 200)
    done = {"type": "response.completed", "response": {"id": "resp_1", "model": "gpt-4o",
            "usage": {"input_tokens": 10, "output_tokens": 2}}}  # fmt: skip
    _, [(usage, rid)] = run(
        sse({"type": "response.created"}, done, done=False), "responses", hide=False, size=3
    )
    assert rid == "resp_1" and usage is not None and (usage.input_tokens, usage.output_tokens) == (10, 2)


def test_a_body_closed_early_reports_what_it_saw_once() -> None:
    reports: list[Any] = []
    tap = BodyTap("chat", False, lambda usage, rid: reports.append((usage, rid)))
    tap.feed(CHAT[: CHAT.index(b"\n\n") + 2])  # the first chunk only
    tap.close()
    tap.close()
    assert reports == [(None, "chatcmpl-1")]
