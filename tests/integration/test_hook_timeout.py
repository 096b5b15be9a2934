"""The per-call timeout: ``al.configure(call_timeout_s=..., call_timeouts={agent: ...})``; the hook
gives it to the SDK as ``timeout=``, and a call that times out is recorded as an LLM span in
error with its cause. Real openai SDK, a slow local provider over HTTP, a real broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import pytest
from fakeprovider import FakeProvider
from test_hook_sdk import MSGS

from agentledger import collectors as al
from agentledger import wire
from agentledger.events import SpanEvent, UsageEvent

pytestmark = pytest.mark.integration


def events_of(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Any]:
    async def run() -> list[Any]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and len(out) < expect:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    for record in records:
                        out.extend(wire.decode_envelope(record.value).events)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


def test_a_call_past_its_agents_timeout_fails_and_is_recorded_as_an_error_span(topics: Any) -> None:
    al.configure(
        tenant="acme", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5,
        call_timeout_s=0.5, call_timeouts={"patient": 10},
    )  # fmt: skip
    al.instrument(enforce=False)
    try:
        with FakeProvider(delay_s=1.5) as fake:
            client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
            started = time.monotonic()
            with al.span("ask", kind="agent", agent="hasty"), pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="gpt-4o", messages=MSGS)
            assert time.monotonic() - started < 1.5  # it did not wait for the answer
            with al.span("ask", kind="agent", agent="patient"):
                reply = client.chat.completions.create(model="gpt-4o", messages=MSGS)
            assert reply.choices[0].message.content
        assert al.flush(10)
    finally:
        al.uninstrument()
        al.shutdown(5)
    events = events_of(topics.bootstrap, topics.events, expect=4)
    errors = [
        e for e in events if isinstance(e, SpanEvent) and e.status.value == "error" and e.kind.value == "llm"
    ]
    assert len(errors) == 1, events
    error = errors[0]
    assert (error.agent, error.provider, error.model, error.error_type) == (
        "hasty",
        "openai",
        "gpt-4o",
        "APITimeoutError",
    )
    assert error.attributes["agentledger.error.cause"] == "timeout"
    assert error.attributes["agentledger.call_timeout_s"] == 0.5
    agent_span = next(
        e for e in events if isinstance(e, SpanEvent) and e.kind.value == "agent" and e.agent == "hasty"
    )
    assert error.parent_span_id == agent_span.span_id and error.trace_id == agent_span.trace_id
    usage = [e for e in events if isinstance(e, UsageEvent)]
    assert [u.agent for u in usage] == ["patient"]  # its override let it wait for the answer


def test_bad_timeouts_are_refused_at_configure() -> None:
    with pytest.raises(ValueError, match="call_timeout_s must be a positive number"):
        al.Emitter(tenant="acme", call_timeout_s=0)
    with pytest.raises(ValueError, match="call_timeouts"):
        al.Emitter(tenant="acme", call_timeouts={"a": -1})
