"""``with_streaming_response`` and ``with_raw_response`` calls (openai and anthropic, sync and
async, plain and streamed, read as parsed objects, JSON, raw lines or not at all) are each
recorded exactly once, with the provider's usage, under an id derived from the response id;
the usage chunk the hook asks a chat stream for stays out of what the agent reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from fakeprovider import FakeProvider
from test_hook_sdk import CLAUDE, MSGS, USAGE, usage_events

from agentledger import collectors as al
from agentledger.collectors.naming import response_event_id


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(usage=USAGE) as f:
        yield f


@pytest.fixture
def configured(topics: Any) -> Iterator[Any]:
    em = al.configure(tenant="acme", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5)
    yield em
    al.uninstrument()
    al.shutdown(5)


def data_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in lines if line.startswith("data:") and "[DONE]" not in line]


def sync_calls(fake: FakeProvider) -> list[str]:
    oc = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake")
    ac = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-fake")
    ids = []
    with oc.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MSGS) as r:  # type: ignore[arg-type]
        ids.append(r.parse().id)
    with oc.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MSGS) as r:  # type: ignore[arg-type]
        ids.append(r.json()["id"])
    with oc.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MSGS) as r:  # type: ignore[arg-type]
        pass  # closed unread: the whole answer exists (and was billed) all the same
    with oc.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MSGS, stream=True) as r:  # type: ignore[arg-type]
        chunks = data_lines(list(r.iter_lines()))
    # the hook asked for the usage chunk; the agent, which did not, reads the stream it asked for
    assert len(chunks) == 2 and all("usage" not in c and c["choices"] for c in chunks)
    ids.append(chunks[0]["id"])
    with oc.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True},  # type: ignore[arg-type]
    ) as r:  # fmt: skip
        parsed = list(r.parse())
    assert parsed[-1].usage is not None  # asked for by the agent: kept
    ids.append(parsed[0].id)
    with oc.responses.with_streaming_response.create(model="gpt-4o", input="2 + 2?", stream=True) as r:
        events = data_lines(list(r.iter_lines()))
    ids.append(events[-1]["response"]["id"])
    with ac.messages.with_streaming_response.create(model=CLAUDE, max_tokens=16, messages=MSGS) as r:  # type: ignore[arg-type]
        ids.append(r.parse().id)
    with ac.messages.with_streaming_response.create(
        model=CLAUDE, max_tokens=16, messages=MSGS, stream=True
    ) as r:  # type: ignore[arg-type]
        events = data_lines(list(r.iter_lines()))
    ids.append(events[0]["message"]["id"])
    raw = oc.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
    ids.append(raw.parse().id)
    raw = ac.messages.with_raw_response.create(model=CLAUDE, max_tokens=16, messages=MSGS, stream=True)  # type: ignore[arg-type]
    events = list(raw.parse())  # read to the end, as an agent does
    ids.append(events[0].message.id)  # type: ignore[union-attr]
    return ids


async def async_calls(fake: FakeProvider) -> list[str]:
    ids = []
    async with (
        openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-fake") as oc,
        anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-fake") as ac,
    ):
        async with oc.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MSGS) as r:  # type: ignore[arg-type]
            ids.append((await r.parse()).id)
        async with oc.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=MSGS, stream=True
        ) as r:  # type: ignore[arg-type]
            chunks = data_lines([line async for line in r.iter_lines()])
        assert len(chunks) == 2 and all("usage" not in c for c in chunks)
        ids.append(chunks[0]["id"])
        async with ac.messages.with_streaming_response.create(
            model=CLAUDE, max_tokens=16, messages=MSGS, stream=True  # type: ignore[arg-type]
        ) as r:  # fmt: skip
            events = [e async for e in await r.parse()]
        ids.append(events[0].message.id)  # type: ignore[union-attr]
        raw = await oc.responses.with_raw_response.create(model="gpt-4o", input="2 + 2?")
        ids.append(raw.parse().id)  # openai's raw response parses synchronously
    return ids


def test_streaming_and_raw_response_calls_are_recorded_once(
    topics: Any, fake: FakeProvider, configured: Any
) -> None:
    al.instrument(enforce=False)
    with al.span("raw", kind="agent", agent="reader"):
        ids = sync_calls(fake)
        ids += asyncio.run(async_calls(fake))
    assert len(ids) == len(set(ids)) == 13 and len(fake.requests) == 14  # one answer the agent never read
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=14)
    assert len(events) == len({e.event_id for e in events}) == 14  # once each
    unread = {e.event_id for e in events} - {response_event_id(i) for i in ids}
    assert len(unread) == 1  # every id the agent saw, and the unread answer's
    for e in events:
        assert (e.input_tokens, e.output_tokens, e.cache_read_tokens) == (1000, 200, USAGE.cache_read_tokens)
        assert e.agent == "reader"
