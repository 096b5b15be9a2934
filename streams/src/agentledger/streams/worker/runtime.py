"""The budget worker's runtime, free of Faust and Kafka: what happens around ``Processor``.

* each record goes through ``DeliveryTracker`` first (a record ahead of the expected offset
  means Faust dropped the ones before it: skip it, fetch again from the hole; ADR 0006);
* its output is published (control first), and the record waits in ``pending``;
* every ``state_flush_s`` (from the agent as it goes, and from an idle flusher when the
  stream goes quiet) each changed rollup is sent to the changelog once, and only then are the
  pending records acked (ADR 0005). A failed flush acks nothing and keeps the keys changed;
* with the agent idle for ``refetch_after_s``, a partition whose fetch position is past what
  reached the agent is fetched again (a lost tail);
* a revoked partition's live rollups, unflushed changes and pending records are dropped (the
  next owner replays them from the committed offset); an assignment re-reads where each
  partition resumes.

``agentledger.streams.worker.app`` wires it to Faust through the two ports below, twice: stage
one on the events topic (``Processor.stage_one``, no state of its own: records are acked at the
next flush, after their scope deltas were sent) and stage two on the scope-deltas topic
(``Processor.stage_two`` with the rollups table). Tests drive ``Processor.process``, both
stages in one step.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agentledger.streams.worker.offsets import DeliveryTracker
from agentledger.streams.worker.processor import Output, Processor
from agentledger.streams.worker.tablestore import TableStore

log = logging.getLogger("agentledger.streams")
EVICT_EVERY_S = 300.0
PROBE_ENV = "AGENTLEDGER_WORKER_PROBE"
"""Measurement only (benchmarks/pipeline.py sets it; default off): a path where the worker
writes its ``LoopProbe`` (event-loop lag, the length of its record steps, flushes and ticks)."""
PROBE_BUCKETS_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)


class LoopProbe:
    """Event-loop lag and run lengths, for measurement: a task sleeps ``period_s`` and records
    how late it wakes (the longest callback run in that time, plus the wait for a CPU); the
    runtime reports how long its steps held the loop (``observe``). Histograms in ms (buckets
    ``PROBE_BUCKETS_MS``, the last one open) and every lag over ``spike_ms`` with its wall time,
    so a slow enforcement trial can be matched to what the loop was doing then."""

    def __init__(self, path: str | None = None, period_s: float = 0.005, spike_ms: float = 10.0) -> None:
        self.path = path
        self.period_s = period_s
        self.spike_ms = spike_ms
        self.hist: dict[str, list[int]] = {}
        self.max_ms: dict[str, float] = {}
        self.spikes: list[tuple[float, str, float]] = []
        """(wall time at the end, what, ms) for runs over ``spike_ms`` (at most 200,000)."""

    def watch_gc(self) -> None:
        """Record each garbage collection's length as ``gc<generation>`` (it holds the GIL)."""
        import gc

        started: list[float] = []

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[:] = [time.perf_counter()]
            elif started:
                self.observe(f"gc{info.get('generation', 0)}", (time.perf_counter() - started[0]) * 1000)

        gc.callbacks.append(on_gc)

    @classmethod
    def from_env(cls) -> LoopProbe | None:
        path = os.environ.get(PROBE_ENV)
        return cls(path) if path else None

    def observe(self, what: str, ms: float, at: float | None = None, keep: bool = False) -> None:
        """One measurement of ``what``; kept in ``spikes`` when over ``spike_ms`` or ``keep``."""
        h = self.hist.get(what)
        if h is None:
            h = self.hist[what] = [0] * (len(PROBE_BUCKETS_MS) + 1)
        h[bisect.bisect_left(PROBE_BUCKETS_MS, ms)] += 1
        if ms > self.max_ms.get(what, 0.0):
            self.max_ms[what] = ms
        if (keep or ms > self.spike_ms) and len(self.spikes) < 200_000:
            self.spikes.append((time.time() if at is None else at, what, round(ms, 2)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "buckets_ms": list(PROBE_BUCKETS_MS),
            "hist": self.hist,
            "max_ms": {k: round(v, 2) for k, v in self.max_ms.items()},
            "spikes": self.spikes,
        }

    def write(self) -> None:
        if self.path:
            tmp = Path(self.path + ".tmp")
            tmp.write_text(json.dumps(self.as_dict()))
            tmp.replace(self.path)

    async def run(self, write_every_s: float = 1.0, what: str = "loop_lag", write: bool = True) -> None:
        """The lag task: sleeps ``period_s``, records the overshoot as ``what``; writes the file
        every ``write_every_s`` (a terminated worker keeps its last second). One per event loop
        (the worker's, Faust's consumer thread's with ``write=False``). For a wake-up later than
        ``spike_ms`` it also records the CPU this thread (``<what>_thread_cpu``) and the whole
        process (``<what>_process_cpu``) spent meanwhile: a thread that ran little while the
        process ran little was waiting for a CPU (the neighbours); one that ran held the loop
        (a callback, the garbage collector); another thread that ran held the GIL."""
        loop = asyncio.get_running_loop()
        next_write = loop.time() + write_every_s
        thread_cpu, process_cpu = time.thread_time, time.process_time
        try:
            while True:
                t0, c0, p0 = loop.time(), thread_cpu(), process_cpu()
                await asyncio.sleep(self.period_s)
                t1 = loop.time()
                lag = (t1 - t0 - self.period_s) * 1000
                self.observe(what, lag)
                if lag > self.spike_ms:
                    self.observe(f"{what}_thread_cpu", (thread_cpu() - c0) * 1000, keep=True)
                    self.observe(f"{what}_process_cpu", (process_cpu() - p0) * 1000, keep=True)
                if write and t1 >= next_write:
                    self.write()
                    next_write = t1 + write_every_s
        finally:
            if write:
                self.write()


Step = Callable[[bytes, bytes | None, int, int, float], Output]
"""One record in (value, key, partition, offset, wall-clock now), its effects out."""
Ack = Callable[[Any], Awaitable[None]]
"""Acks one record (Faust's ``stream.ack(event)``)."""


class Outputs(Protocol):
    """Where the worker writes: its output topics and the rollups changelog."""

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """``topic`` is one of ``control``, ``dlq``, ``priced``, ``alerts``, ``budgets``."""

    async def send_delta(self, partition: int, key: bytes, value: bytes) -> None:
        """A scope-deltas record, to the partition we computed (``deltas.partition_for``)."""

    async def send_changelog(self, partition: int, key: str, value: bytes | None) -> None: ...


class EventsSource(Protocol):
    """The worker's view of its consumer of the events topic."""

    def settled(self) -> bool:
        """No rebalance in progress, the table recovered, the flow running."""

    async def positions(self) -> dict[int, int]:
        """partition -> fetch position, for the events partitions this worker holds."""

    async def start_offsets(self) -> dict[int, int]:
        """partition -> where the group resumes it (committed offset, or the first one)."""

    async def seek(self, offsets: dict[int, int]) -> None:
        """Fetch these partitions again from these offsets."""


@dataclass(slots=True)
class PendingRecord:
    """A record processed whose rollups are not yet in the changelog: acked after the flush."""

    partition: int
    token: Any
    """What ``Ack`` takes (the Faust event)."""


class WorkerRuntime:
    """Flush, ack, refetch and rebalance handling around one ``Processor`` (see module doc).

    ``transient`` are the errors of an unavailable broker: logged and retried later, never
    raised out of a timer (an exception in a Faust timer stops the worker)."""

    def __init__(
        self,
        processor: Processor,
        store: TableStore | None,
        outputs: Outputs,
        source: EventsSource,
        *,
        step: Step | None = None,
        state_flush_s: float = 0.2,
        refetch_after_s: float = 5.0,
        evict_every_s: float = EVICT_EVERY_S,
        transient: tuple[type[BaseException], ...] = (OSError, TimeoutError),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        source_topic: str = "events",
        probe: LoopProbe | None = None,
    ) -> None:
        self.processor = processor
        self.probe = probe
        self.store = store
        self.step: Step = step or processor.process
        self.outputs = outputs
        self.source = source
        self.state_flush_s = state_flush_s
        self.refetch_after_s = refetch_after_s
        self.evict_every_s = evict_every_s
        self.transient = transient
        self.clock = clock
        self.wall_clock = wall_clock
        self.source_topic = source_topic
        self.ready = asyncio.Event()
        self.tracker = DeliveryTracker(refetch_after_s)
        self.pending: list[PendingRecord] = []
        self.ack: Ack | None = None
        self.busy = False
        now = clock()
        self.last_event = now
        self.last_flush = now
        self.next_eviction = now + evict_every_s
        self._flush_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def attached(self, ack: Ack) -> AsyncIterator[None]:
        """While the agent runs: records are acked with ``ack``, and the idle flusher runs."""
        self.ack = ack
        flusher = asyncio.ensure_future(self.flush_when_idle())
        try:
            yield
        finally:
            flusher.cancel()

    # -- records ---------------------------------------------------------------------------------

    async def on_record(self, token: Any, key: bytes | None, value: Any, partition: int, offset: int) -> bool:
        """One record of the events topic; ``token`` is what ``ack`` takes once its state is in
        the changelog. Returns whether it was processed (False: Faust dropped records before
        it; it comes again after the refetch)."""
        self.busy, self.last_event = True, self.clock()
        try:
            take, refetch = self.tracker.arrived(partition, offset, self.clock())
            if refetch is not None:
                await self.fetch_again({partition: refetch}, f"got offset {offset} before {refetch}")
            if not take:
                return False  # not processed, not acked: it comes again after the hole
            raw = value if isinstance(value, bytes) else b""
            proc = self.processor
            probe = self.probe
            t0 = time.perf_counter() if probe is not None else 0.0
            try:
                out = self.step(raw, key, partition, offset, self.wall_clock())
            except Exception as exc:
                log.exception("processing failed at %s[%s]@%s", self.source_topic, partition, offset)
                why = f"worker error: {exc!r}"
                out = Output(dlq=[proc.dead_letter(key, raw, why, partition, offset, None)])
            if probe is not None:
                t1 = time.perf_counter()
                probe.observe(f"{self.source_topic}:step", (t1 - t0) * 1000)
                await self.publish(out)
                probe.observe(f"{self.source_topic}:publish", (time.perf_counter() - t1) * 1000)
            else:
                await self.publish(out)
            self.pending.append(PendingRecord(partition, token))
            if self.store is not None and self.clock() >= self.next_eviction:
                proc.evict_idle_traces(self.wall_clock())
                self.next_eviction = self.clock() + self.evict_every_s
            if self.clock() - self.last_flush >= self.state_flush_s:
                await self.flush()
            return True
        finally:
            self.busy = False

    async def publish(self, out: Output) -> None:
        # control first: it is the latency-critical one
        send = self.outputs.send
        for k, v in out.control:
            await send("control", k, v)
        for k, v in out.dlq:
            await send("dlq", k, v)
        for k, v in out.priced:
            await send("priced", k, v)
        for p, k, v in out.deltas:
            await self.outputs.send_delta(p, k, v)
        for k, v in out.alerts:
            await send("alerts", k, v)
        for k, row in out.budgets:  # a None value is a tombstone
            await send("budgets", k, row)
        for k, v in out.tools:
            await send("tools", k, v)

    # -- state flush and acks --------------------------------------------------------------------

    async def flush(self) -> None:
        """Send every changed rollup once, then ack the records behind them (Faust commits
        only acked offsets, after flushing the producer). On a failed send nothing is acked:
        the records stay pending and their keys stay changed."""
        if self.probe is None:
            await self._flush()
            return
        t0 = time.perf_counter()
        try:
            await self._flush()
        finally:
            self.probe.observe(f"{self.source_topic}:flush", (time.perf_counter() - t0) * 1000)

    async def _flush(self) -> None:
        async with self._flush_lock:
            self.last_flush = self.clock()
            store = self.store
            changes, records = store.take_changes() if store is not None else [], self.pending[:]
            self.pending.clear()
            try:
                for part, key, value in changes:
                    await self.outputs.send_changelog(part, key, value)
            except BaseException:
                if store is not None:
                    store.mark_changed(changes)
                self.pending[:0] = records
                raise
            if self.ack is None:  # no agent attached yet: acked by the first flush after
                self.pending[:0] = records
                return
            for rec in records:
                await self.ack(rec.token)

    async def flush_if_quiet(self) -> bool:
        """The idle flusher's step: flush records left pending for ``state_flush_s``. A broker
        error is logged (the next flush retries). Returns whether it flushed."""
        if not self.pending or self.clock() - self.last_flush < self.state_flush_s:
            return False
        try:
            await self.flush()
        except self.transient as exc:
            log.warning("state flush failed, retrying: %r", exc)
            return False
        return True

    async def flush_when_idle(self) -> None:
        """Runs beside the agent: the agent flushes as it goes; this covers the last records
        before a quiet spell."""
        while True:
            await asyncio.sleep(self.state_flush_s)
            await self.flush_if_quiet()

    # -- records Faust drops (ADR 0006) ----------------------------------------------------------

    async def fetch_again(self, offsets: dict[int, int], why: str) -> None:
        log.warning("%s: fetching %s again from %s", why, self.source_topic, offsets)
        self.processor.counters["refetches"] += len(offsets)
        try:
            await self.source.seek(offsets)
        except self.transient as exc:  # broker away: asked again later
            log.warning("could not seek %s: %r", self.source_topic, exc)

    async def refetch_dropped(self) -> None:
        """The timer's step. With the agent idle: a partition fetched past what reached the
        agent lost its tail in a rebalance; fetch it again. Never raises."""
        try:
            await self.check_tails()
        except self.transient as exc:
            log.info("tail check skipped, broker unavailable: %r", exc)
        except Exception:  # a safety net must not take the worker down
            log.exception("tail check failed")

    async def check_tails(self) -> None:
        if self.busy or self.clock() - self.last_event < self.refetch_after_s:
            return
        if not self.source.settled():
            return
        positions = await self.source.positions()
        unknown = set(positions) - set(self.tracker.expected)
        starts = await self.source.start_offsets() if unknown else None
        behind = self.tracker.behind(positions, starts)
        if behind:
            self.last_event = self.clock()
            await self.fetch_again(behind, "fetched but never delivered")

    # -- rebalances ------------------------------------------------------------------------------

    async def on_assigned(self, partitions: set[int]) -> None:
        """A new assignment (``partitions`` of the events topic) resumes at the committed
        offsets: holes are measured from there."""
        starts: dict[int, int] = {}
        if partitions:
            try:
                starts = await asyncio.wait_for(self.source.start_offsets(), 10)
            except self.transient as exc:  # then the first record sets the start
                log.warning("could not read the committed offsets on assignment: %r", exc)
        self.tracker.reset(starts)

    def on_revoked(self, partitions: set[int]) -> None:
        """Partitions of the events topic this worker lost: their state and pending records
        are dropped, unacked (the next owner replays them from the committed offset)."""
        if partitions:
            if self.store is not None:
                self.store.drop_partitions(partitions)
            self.tracker.forget(partitions)
            self.pending[:] = [r for r in self.pending if r.partition not in partitions]

    # -- timer -----------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Windows rolling over, throttled budget statuses: once the compacted topics are read."""
        if not self.ready.is_set():
            return
        t0 = time.perf_counter()
        await self.publish(self.processor.tick(self.wall_clock()))
        if self.probe is not None:
            self.probe.observe("tick", (time.perf_counter() - t0) * 1000)
