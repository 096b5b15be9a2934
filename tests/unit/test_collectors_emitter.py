"""The emitter on the in-memory transport: events valid against the contract, nesting,
propagation across tasks and threads, drop-oldest, no exception into agent code."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading

import pytest

from agentledger import wire
from agentledger.collectors import Emitter, MemoryTransport, extract, hash_args, inject
from agentledger.collectors.transport import Batch, Outcome
from agentledger.events import SpanEvent, ToolCallEvent, UsageEvent


@pytest.fixture
def mem() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def em(mem: MemoryTransport):  # type: ignore[no-untyped-def]
    emitter = Emitter(tenant="acme", agent="planner", agent_version="v3", transport=mem, linger_ms=1)
    yield emitter
    emitter.shutdown(2.0)


def decoded(mem: MemoryTransport) -> list[wire.AnyEvent]:
    out: list[wire.AnyEvent] = []
    for raw in mem.envelopes():
        dec = wire.decode_envelope(raw)
        assert dec.rejected == []
        out.extend(dec.events)
    return out


def test_events_validate_and_nest(em: Emitter, mem: MemoryTransport) -> None:
    with em.span("answer", workflow="research") as root:
        em.record_usage("openai", "gpt-4o", 1200, 80, cache_read_tokens=1000, reasoning_tokens=20)
        with em.span("search", kind="tool", agent="researcher") as child:
            em.record_tool_call("web_search", {"q": "secret prompt"}, status="ok")
    assert em.flush(5)
    events = {type(e).__name__ + ":" + getattr(e, "name", ""): e for e in decoded(mem)}
    root_ev = events["SpanEvent:answer"]
    child_ev = events["SpanEvent:search"]
    usage = next(e for e in events.values() if isinstance(e, UsageEvent))
    tool = next(e for e in events.values() if isinstance(e, ToolCallEvent))
    assert isinstance(root_ev, SpanEvent) and isinstance(child_ev, SpanEvent)
    assert root_ev.parent_span_id is None and root_ev.span_id == root.span_id
    assert child_ev.parent_span_id == root.span_id and child_ev.trace_id == root.trace_id
    assert child_ev.agent == "researcher" and child_ev.workflow == "research" and child.agent == "researcher"
    assert usage.span_id == root.span_id and usage.agent_version == "v3" and usage.workflow == "research"
    assert tool.span_id == child.span_id and tool.args_hash == hash_args({"q": "secret prompt"})
    assert "secret" not in b"".join(mem.envelopes()).decode()
    assert {b.key for b in mem.batches} == {"acme/planner", "acme/researcher"}
    assert em.stats() == {"sent": 4, "dropped": 0, "failed": 0, "queued": 0, "rejected": 0}


def test_error_status_and_decorators(em: Emitter, mem: MemoryTransport) -> None:
    @em.span("sync-step", kind="tool")
    def step(x: int) -> int:
        if x < 0:
            raise KeyError(x)
        return x * 2

    @em.span("async-step", kind="llm")
    async def astep() -> str:
        return "ok"

    assert step(2) == 4
    with pytest.raises(KeyError):
        step(-1)
    assert asyncio.run(astep()) == "ok"
    assert em.flush(5)
    spans = [e for e in decoded(mem) if isinstance(e, SpanEvent)]
    assert sorted((s.name, s.status.value, s.error_type) for s in spans) == [
        ("async-step", "unset", None),
        ("sync-step", "error", "KeyError"),
        ("sync-step", "unset", None),
    ]
    assert len({s.span_id for s in spans}) == 3


def test_asyncio_tasks_and_threads_inherit_the_parent(em: Emitter, mem: MemoryTransport) -> None:
    async def child(i: int) -> None:
        async with em.span(f"task-{i}"):
            em.record_quality("relevance", 0.5 + i / 10, "judge")

    async def main() -> str:
        async with em.span("root") as root:
            await asyncio.gather(*(child(i) for i in range(3)))
            return str(root.span_id)

    root_id = asyncio.run(main())

    def worker(i: int) -> None:
        with em.span(f"thread-{i}"):
            em.record_tool_call("t", i)

    with em.span("troot") as troot:
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(worker, i)) for i in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert em.flush(5)
    spans = {e.name: e for e in decoded(mem) if isinstance(e, SpanEvent)}
    for i in range(3):
        assert spans[f"task-{i}"].parent_span_id == root_id
        assert spans[f"thread-{i}"].parent_span_id == troot.span_id
        assert spans[f"thread-{i}"].trace_id == troot.trace_id


def test_traceparent_joins_one_trace(em: Emitter, mem: MemoryTransport) -> None:
    headers: dict[str, str] = {}
    with em.span("caller") as caller:
        inject(headers)
        kafka_headers: list[tuple[str, bytes]] = inject([])
    remote = extract(headers)
    assert remote is not None and remote.trace_id == caller.trace_id
    assert extract(kafka_headers) is not None
    assert extract({"traceparent": "garbage"}) is None and extract({}) is None
    from agentledger.collectors import attach, detach

    token = attach(remote)
    try:
        with em.span("callee") as callee:
            pass
        em.record_usage("anthropic", "claude", 10, 1)
    finally:
        detach(token)
    assert callee.parent_span_id == caller.span_id and callee.trace_id == caller.trace_id
    assert em.flush(5)
    usage = next(e for e in decoded(mem) if isinstance(e, UsageEvent))
    assert usage.trace_id == caller.trace_id and usage.parent_span_id == caller.span_id


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_tokens": -1, "output_tokens": 1},
        {"input_tokens": 10, "output_tokens": 1, "cache_read_tokens": 8, "cache_write_tokens": 3},
        {"input_tokens": 10, "output_tokens": 1, "reasoning_tokens": 2},
    ],
)
def test_bad_usage_arguments_raise_value_error(em: Emitter, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="input_tokens must include"):
        em.record_usage("openai", "gpt-4o", **kwargs)


def test_bad_construction_arguments_raise_value_error(mem: MemoryTransport) -> None:
    with pytest.raises(ValueError, match="tenant"):
        Emitter(tenant="a/b", agent="x", transport=mem)
    with pytest.raises(ValueError):
        Emitter(tenant="a", agent="x", transport=mem, max_queue=0)


class StuckTransport:
    """Never finishes sending until released: the buffer must fill and drop, not block."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen = 0

    async def send(self, batches: list[Batch], outcome: Outcome) -> None:
        await self.release.wait()
        self.seen += sum(len(b.events) for b in batches)
        outcome.delivered(sum(len(b.events) for b in batches))
        batches.clear()

    async def flush(self, timeout: float) -> bool:
        return True

    async def close(self, timeout: float) -> None:
        self.release.set()

    def pending(self) -> int:
        return 0

    def after_fork(self) -> None:
        return None


def test_full_buffer_drops_oldest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    stuck = StuckTransport()
    em = Emitter(tenant="acme", agent="a", transport=stuck, max_queue=100, batch_size=10, linger_ms=1)
    em.record_usage("openai", "m", 1, 1)
    assert not em.flush(0.3)  # the worker holds the first batch, stuck
    for _ in range(1000):
        em.record_usage("openai", "m", 1, 1)
    stats = em.stats()
    assert stats["dropped"] == 900 and stats["queued"] == 101
    assert sum("buffer full" in r.message for r in caplog.records) == 1
    em.shutdown(0.5)


class ExplodingTransport(StuckTransport):
    async def send(self, batches: list[Batch], outcome: Outcome) -> None:
        raise RuntimeError("boom")


def test_transport_errors_are_counted_never_raised() -> None:
    em = Emitter(tenant="acme", agent="a", transport=ExplodingTransport(), linger_ms=1)
    for _ in range(5):
        em.record_usage("openai", "m", 1, 1)
    assert em.flush(5)
    assert em.stats()["failed"] == 5
    em.shutdown(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process.*fork:DeprecationWarning")
def test_child_after_fork_sends_only_its_own_events() -> None:
    mem = MemoryTransport()
    em = Emitter(tenant="acme", agent="a", transport=mem, linger_ms=1)
    stuck = [em.record_usage("openai", "m", 1, 1) for _ in range(3)]
    assert em.flush(5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: record, flush, report what was delivered
        try:
            em.record_usage("openai", "m", 2, 2)
            ok = em.flush(5)
            ids = [e["event_id"] for e in mem.events]
            os.write(write, f"{ok}|{','.join(ids)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    ok, ids = os.read(read, 65536).decode().split("|")
    os.close(read)
    child_ids = ids.split(",")[3:]  # the child's copy of the transport keeps the parent's three
    assert ok == "True" and len(child_ids) == 1 and child_ids[0] not in stuck
    em.shutdown(1)


def test_oversized_batches_are_split_for_kafka() -> None:
    import asyncio as aio

    from agentledger.collectors.kafka import KafkaTransport

    sent: list[bytes] = []

    class FakeProducer:  # stands in for aiokafka: records what would be produced
        async def send(self, topic: str, value: bytes, key: bytes, timestamp_ms: int) -> aio.Future[None]:
            sent.append(value)
            fut: aio.Future[None] = aio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

    async def run() -> list[int]:
        transport = KafkaTransport("127.0.0.1:1", "t", max_request_size=20_000)
        transport._producer = FakeProducer()
        transport._space = aio.Event()
        delivered: list[int] = []
        events = [{"event_id": f"e{i}", "pad": "x" * 100} for i in range(1000)]
        await transport.send([Batch("acme/a", events, 0)], Outcome(delivered.append, lambda n, r: None))
        await aio.sleep(0)
        return delivered

    delivered = asyncio.run(run())
    assert sum(delivered) == 1000 and all(len(v) <= 20_000 for v in sent) and len(sent) > 1
    ids = [e["event_id"] for v in sent for e in __import__("json").loads(v)["events"]]
    assert ids == [f"e{i}" for i in range(1000)]  # order kept


def test_repeat_filter_lets_each_message_through_once_per_period() -> None:
    import logging

    from agentledger.collectors.kafka import RepeatFilter

    filt = RepeatFilter(every_s=60)

    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, msg, None, None)

    assert [filt.filter(rec(m)) for m in ("a %s", "a %s", "b", "a %s")] == [True, False, True, False]
    assert filt.suppressed == 2
