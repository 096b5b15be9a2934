"""Shared backoff: a 429 with ``Retry-After: 2`` that one hooked call sees pauses that provider key
for every task and thread of the process; the SDK's own retry loop stays the only one. Real
openai / anthropic SDKs, the local provider over HTTP in its rate-limit mode, a real broker for
the usage events that count the retries and waits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from fakeprovider import FakeProvider
from test_hook_sdk import CLAUDE, MSGS, usage_events

from agentledger import collectors as al
from agentledger.collectors import _backoff

pytestmark = pytest.mark.integration
WINDOW = 2.0


@pytest.fixture
def configured(topics: Any) -> Iterator[Any]:
    em = al.configure(tenant="acme", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5)
    al.instrument(enforce=False)
    yield em
    al.uninstrument()
    al.shutdown(5)


def first_429(fake: FakeProvider, timeout: float = 30) -> float:
    """When the provider answered its first 429 (the request's arrival, by its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        limited = [at for at, _, status in fake.log if status == 429]
        if limited:
            return limited[0]
        time.sleep(0.005)
    raise AssertionError("the provider never answered 429")


def test_twenty_async_tasks_on_one_rate_limited_key_send_nothing_until_retry_after(
    topics: Any, configured: Any
) -> None:
    with FakeProvider(rate_limit_s=WINDOW) as fake:

        async def run() -> list[str]:
            client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-one-key", max_retries=3)
            other_key = openai.AsyncOpenAI(
                base_url=fake.openai_base_url, api_key="sk-other-key", max_retries=0
            )

            async def ask(n: int) -> str:
                async with al.span("ask", kind="agent", agent=f"worker-{n}"):
                    reply = await client.chat.completions.create(model="gpt-4o", messages=MSGS)
                return reply.id

            first = asyncio.create_task(ask(0))  # its request opens the provider's 429 window
            deadline = time.monotonic() + 30
            while not _backoff.pauses():  # until the hook has seen that 429
                assert time.monotonic() < deadline, "the hook opened no pause on the 429"
                await asyncio.sleep(0.005)
            others = [asyncio.create_task(ask(n)) for n in range(1, 20)]
            await asyncio.sleep(0.2)
            # another key of the same provider is not paused: the provider answers it (429 too)
            with pytest.raises(openai.RateLimitError):
                await other_key.chat.completions.create(model="gpt-4o", messages=MSGS)
            ids = await asyncio.gather(first, *others)
            await client.close()
            await other_key.close()
            return ids

        ids = asyncio.run(run())
        log = fake.log
    assert len(set(ids)) == 20
    seen = first_429(fake)
    # one key: the first call's 429, then nothing to that key until the Retry-After ran out;
    # the request with the other key is the only one inside the window
    inside = [(round(at - seen, 3), status) for at, _, status in log if seen < at < seen + WINDOW]
    assert len(inside) == 1 and inside[0][1] == 429, inside
    after = [status for at, _, status in log if at >= seen + WINDOW]
    assert after == [200] * 20  # the first call's own SDK retry and the nineteen others, once each
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=20)
    assert len(events) == 20
    by_agent = {e.agent: e.attributes for e in events}
    assert by_agent["worker-0"].get("agentledger.retries") == 1  # the SDK's retry, counted
    waited = [by_agent[f"worker-{n}"].get("agentledger.backoff_wait_ms", 0) for n in range(1, 20)]
    assert all(ms > 0 for ms in waited), waited  # each of the others waited on the pause


def test_threads_on_an_anthropic_key_wait_for_a_429_the_sdk_gave_up_on(configured: Any) -> None:
    """``max_retries=0``: the SDK raises the 429 to the agent, and the pause still holds every
    other thread's call to that key (sync ``time.sleep``) until the time given."""
    with FakeProvider(rate_limit_s=WINDOW) as fake:
        client = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-key", max_retries=0)

        def ask() -> None:
            client.messages.create(model=CLAUDE, max_tokens=10, messages=MSGS)

        with pytest.raises(anthropic.RateLimitError):
            ask()
        threads = [threading.Thread(target=ask) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        log = fake.log
    seen = log[0][0]
    assert [status for _, _, status in log] == [429] + [200] * 5
    assert all(at >= seen + WINDOW for at, _, _ in log[1:]), [round(at - seen, 3) for at, _, _ in log]


def test_anthropic_beta_messages_stream_is_hooked_and_recorded_once(topics: Any, configured: Any) -> None:
    """``client.beta.messages.stream()`` (sync and async) goes through the hook: one usage event
    per call, under the caller's agent, with the provider's usage."""
    with FakeProvider() as fake:
        client = anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-key")
        span = al.span("ask", kind="agent", agent="beta-sync")
        with span, client.beta.messages.stream(model=CLAUDE, max_tokens=16, messages=MSGS) as stream:
            sync_id = stream.get_final_message().id

        async def run() -> str:
            aclient = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-key")
            aspan, beta = al.span("ask", kind="agent", agent="beta-async"), aclient.beta.messages
            # the manager is made inside the span (the hook resolves the caller when it is made)
            async with aspan, beta.stream(model=CLAUDE, max_tokens=16, messages=MSGS) as astream:
                return (await astream.get_final_message()).id

        async_id = asyncio.run(run())
        sent = len(fake.requests)
    assert sent == 2
    assert al.flush(10)
    events = usage_events(topics.bootstrap, topics.events, expect=2)
    got = sorted(
        (e.agent, e.attributes["gen_ai.response.id"], e.provider, e.input_tokens > 0) for e in events
    )
    assert got == sorted(
        [("beta-sync", sync_id, "anthropic", True), ("beta-async", async_id, "anthropic", True)]
    )
