"""The hook hands the sender thread what a usage event is built from; the event is built there,
not on the agent's thread (inside a real call, building it cost the agent's thread several
times its tight-loop time: docs/hook.md, "Cost"). No network here: the SDK method is replaced
by one that answers at once."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest

from agentledger import collectors as al
from agentledger.collectors import MemoryTransport, hook
from agentledger.collectors.sender import BatchSender


class _Usage:
    """An openai usage object that notes the thread reading it."""

    def __init__(self, seen: list[str]) -> None:
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        self._seen.append(threading.current_thread().name)
        return {"prompt_tokens": 120, "completion_tokens": 30}.get(name)


class _Response:
    def __init__(self, seen: list[str]) -> None:
        self.id = "chatcmpl-deferredrecord000000001"
        self.model = "gpt-4o"
        self.usage = _Usage(seen)


def test_the_usage_is_read_and_the_event_built_on_the_senders_thread() -> None:
    seen: list[str] = []
    response = _Response(seen)
    em = al.configure(tenant="acme", agent="planner", transport=MemoryTransport())
    try:
        al.instrument(enforce=False)
        wrapped = hook._wrap(hook.TARGETS[0], lambda self, *args, **kwargs: response)
        resource = type("Resource", (), {"_client": None})()
        assert wrapped(resource, model="gpt-4o", messages=[]) is response
        # nothing read on the agent's thread (the sender may already have read it on its own)
        assert all(name.endswith("-worker") for name in seen), seen
        installed = hook.installed()
        assert installed is not None
        assert al.flush(10)
        [event] = [e for e in em.transport.events if e["type"] == "usage"]  # type: ignore[attr-defined]
        assert (event["input_tokens"], event["output_tokens"], event["agent"]) == (120, 30, "planner")
        assert event["attributes"]["gen_ai.response.id"] == response.id
        assert seen and all(name.endswith("-worker") for name in seen), seen
        assert (installed.recorded, installed.failed) == (1, 0)
    finally:
        al.uninstrument()
        al.shutdown(1)


def test_a_response_without_usage_records_nothing() -> None:
    em = al.configure(tenant="acme", agent="planner", transport=MemoryTransport())
    try:
        al.instrument(enforce=False)
        bare = type("Bare", (), {"id": "chatcmpl-x", "usage": None})()
        wrapped = hook._wrap(hook.TARGETS[0], lambda self, *args, **kwargs: bare)
        wrapped(type("Resource", (), {"_client": None})(), model="gpt-4o", messages=[])
        assert al.flush(10)
        assert [e for e in em.transport.events if e["type"] == "usage"] == []  # type: ignore[attr-defined]
        installed = hook.installed()
        assert installed is not None and (installed.recorded, installed.failed) == (0, 0)
    finally:
        al.uninstrument()
        al.shutdown(1)


def test_the_sender_builds_deferred_events_in_order_and_survives_a_broken_builder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = MemoryTransport()
    sender = BatchSender(transport, max_queue=100, batch_size=10, linger_ms=5)
    try:

        def event(n: int) -> dict[str, Any]:
            return {"event_id": f"e{n}", "type": "usage", "ts": 1_700_000_000_000_000_000 + n,
                    "tenant": "acme", "agent": "a"}  # fmt: skip

        def broken() -> dict[str, Any]:
            raise RuntimeError("builder bug")

        sender.put(event(1))
        sender.put(lambda: event(2))
        sender.put(lambda: None)  # nothing to send after all
        sender.put(broken)
        sender.put(lambda: event(3))
        assert sender.flush(10)
        assert [e["event_id"] for e in transport.events] == ["e1", "e2", "e3"]
        assert transport.events[1]["ts"].startswith("2023-11-14T")  # formatted like any event
        assert sender.stats()["failed"] == 1
        assert "could not build a recorded event" in caplog.text
    finally:
        sender.shutdown(1)


def test_the_queue_keeps_the_usage_not_the_response() -> None:
    """In an outage the sender's queue holds up to max_queue records: each must not keep the
    whole response (its content) alive, only what the usage event is built from."""
    em = al.configure(tenant="acme", agent="planner", transport=MemoryTransport())
    held: list[Any] = []
    em._worker.put = held.append  # type: ignore[method-assign]  # keep what is enqueued, unsent
    try:
        al.instrument(enforce=False)
        response = _Response([])
        ref = weakref.ref(response)
        wrapped = hook._wrap(hook.TARGETS[0], lambda self, *args, **kwargs: ref())
        wrapped(type("Resource", (), {"_client": None})(), model="gpt-4o", messages=[])
        del response
        gc.collect()
        [record] = held
        assert ref() is None  # what the queue holds does not keep the response alive
        event = record()  # what the sender does when it takes it
        assert (event["input_tokens"], event["output_tokens"]) == (120, 30)
        assert event["attributes"]["gen_ai.response.id"] == "chatcmpl-deferredrecord000000001"
    finally:
        al.uninstrument()
        al.shutdown(1)
