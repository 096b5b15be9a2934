"""The sending side: a bounded deque drained by one daemon thread running an asyncio loop.

Modelled on OpenTelemetry's BatchProcessor: recording only appends to the deque; when it is
full the oldest event is dropped and counted (one warning, not a flood). While the deque holds
events the thread wakes every ``linger`` (or at once on ``flush``), cuts batches per key and
hands them to the transport. Once nothing has been sent for ``IDLE_AFTER_S`` the thread sleeps
without a timeout (an idle client costs no CPU); the first event recorded after that wakes it
(one wake-up per idle period, none while busy) and goes out at once (ADR 0024).
A batch the transport cannot take yet (``NotReady``) is kept and retried with backoff while the
deque keeps absorbing new events, so what was buffered is never lost to a short outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

from agentledger.events import record_key

from ._timefmt import iso
from .transport import Batch, EventDict, NotReady, Outcome, Transport

log = logging.getLogger("agentledger.collectors")

_SENDERS: weakref.WeakSet[BatchSender] = weakref.WeakSet()

# After this long with nothing sent the thread stops waking every linger and sleeps until the
# next event wakes it (ADR 0024).
IDLE_AFTER_S = 1.0

# Fields recorded as UNIX nanoseconds on the hot path, formatted here, off it.
_TIME_FIELDS = ("ts", "start", "end")

# An event to build here, off the hot path: what the provider hook enqueues (the usage read
# from the response and the event's dict cost an agent thread several times more inside a real
# call than here, in a batch). None: nothing to send after all (a response without usage).
Deferred = Callable[[], "EventDict | None"]


def _finalize(event: EventDict) -> None:
    for name in _TIME_FIELDS:
        value = event.get(name)
        if type(value) is int:
            event[name] = iso(value)


class BatchSender:
    """Owns the buffer, the sending thread and the counters that ``stats()`` reports."""

    def __init__(
        self,
        transport: Transport,
        *,
        max_queue: int,
        batch_size: int,
        linger_ms: float,
        name: str = "agentledger",
    ) -> None:
        if max_queue < 1 or batch_size < 1 or linger_ms < 0:
            raise ValueError("max_queue and batch_size must be >= 1, linger_ms >= 0")
        self.transport = transport
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.linger = linger_ms / 1000.0
        self.name = name
        self.queue: deque[EventDict | Deferred] = deque(maxlen=max_queue)
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._warned = False
        self._drop_lock = threading.Lock()
        self._pending: list[Batch] = []
        self._last_error: str | None = None
        self._outcome = Outcome(self._delivered, self._failed)
        self._stopping = False
        self._start()
        _SENDERS.add(self)

    # -- hot path ----------------------------------------------------------------------

    def put(self, event: EventDict | Deferred) -> None:
        """Enqueue one event (or a ``Deferred`` that builds it); never blocks. A full deque
        drops its oldest event.

        The drop is counted before the append; two threads racing exactly at the full mark can
        let the deque drop one event uncounted (no lock on the hot path is worth that). Waking
        the sending thread costs only the first event after an idle period (``_idle``).
        """
        queue = self.queue
        if len(queue) == self.max_queue:
            self._drop()
        queue.append(event)
        if self._idle:
            self._wake_from_idle()

    def _wake_from_idle(self) -> None:
        # ``_idle`` is set by the sending thread before it looks at the deque a last time and
        # sleeps without a timeout: an event appended before that look is seen by it, one appended
        # after it sees ``_idle`` here (two threads may both wake it; a spare wake only ends
        # one linger early).
        self._idle = False
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except Exception:  # noqa: BLE001 - a closed loop (after shutdown): never raise into agent code
            pass

    def _drop(self) -> None:
        with self._drop_lock:  # only the (rare) drop path pays for exact counts across threads
            self.dropped += 1
        if not self._warned:
            self._warned = True
            log.warning(
                "agentledger buffer full (%d events): dropping the oldest events; "
                "see stats()['dropped'] (this warning is shown once)",
                self.max_queue,
            )

    # -- counters ----------------------------------------------------------------------

    def _delivered(self, n: int) -> None:
        self.sent += n

    def _failed(self, n: int, reason: str) -> None:
        self.failed += n
        log.warning("agentledger could not deliver %d events: %s", n, reason)

    def stats(self) -> dict[str, int]:
        pending = sum(len(b.events) for b in self._pending)
        try:
            in_transport = self.transport.pending()
        except Exception:  # noqa: BLE001 - stats must never raise
            in_transport = 0
        return {
            "sent": self.sent,
            "dropped": self.dropped,
            "failed": self.failed,
            "queued": len(self.queue) + pending + in_transport,
        }

    # -- thread and loop ---------------------------------------------------------------

    def _start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._idle = False  # True while the thread waits for put() to wake it
        self._sent_at = -1e9  # time.monotonic() of the last send
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name=f"{self.name}-worker", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            self._task = loop.create_task(self._run())
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass  # shutdown gave up on a transport that could not deliver
        except Exception:
            log.exception("agentledger worker stopped unexpectedly")
        finally:
            try:  # leave no half-done aiokafka tasks behind to warn at exit
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            except Exception:  # noqa: BLE001 - best effort
                pass
            loop.close()

    def _take(self) -> None:
        """Move up to a few batches' worth of events from the deque into per-key batches."""
        queue = self.queue
        by_key: dict[str, Batch] = {}
        limit = self.batch_size * 8
        out: list[Batch] = []
        while queue and limit:
            try:
                event = queue.popleft()
            except IndexError:
                break
            limit -= 1
            if not isinstance(event, dict):
                built = self._build(event)
                if built is None:
                    continue
                event = built
            ts = event["ts"]
            ms = ts // 1_000_000 if type(ts) is int else 0
            _finalize(event)
            key = record_key(event["tenant"], event["agent"])
            batch = by_key.get(key)
            if batch is None or len(batch.events) >= self.batch_size:
                batch = by_key[key] = Batch(key, [], 0)
                out.append(batch)
            batch.events.append(event)
            if ms > batch.newest_ms:
                batch.newest_ms = ms
        self._pending = out

    def _build(self, deferred: Deferred) -> EventDict | None:
        try:
            return deferred()
        except Exception:  # a builder's bug loses its event, never the worker
            self.failed += 1
            log.exception("agentledger could not build a recorded event")
            return None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self._pending:
                self._take()
            if self._pending:
                try:
                    await self.transport.send(self._pending, self._outcome)
                    self._pending = []
                    self._last_error = None
                    backoff = 0.1
                except NotReady as exc:
                    self._last_error = str(exc)
                    log.debug("transport not ready (%s); retrying in %.1fs", exc, backoff)
                    # not woken by flush: a flush must not turn the backoff into a busy loop
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                except Exception as exc:  # noqa: BLE001 - never let a transport bug kill the worker
                    self._failed(sum(len(b.events) for b in self._pending), repr(exc))
                    self._pending = []
                self._sent_at = time.monotonic()
                if len(self.queue) >= self.batch_size:
                    continue
            if self._stopping and not self.queue:
                return
            if self.queue or time.monotonic() - self._sent_at < IDLE_AFTER_S:
                # busy, or was within the last IDLE_AFTER_S: the linger timer, and put() never
                # wakes the thread (a wake-up per event costs a busy agent's thread the GIL
                # hand-offs of a second thread running at once: +60-70 us a hooked call)
                await self._sleep(self.linger)
                continue
            # nothing sent for IDLE_AFTER_S: sleep until an event (or flush, close) wakes it
            await self._idle_wait()
            # at once if the last send was a linger ago or more (ADR 0024: not Kafka's linger
            # counted from the first event); else at most one send per linger, as while busy
            wait = self.linger - (time.monotonic() - self._sent_at)
            if wait > 0 and not self._stopping:
                await self._sleep(wait)

    async def _idle_wait(self) -> None:
        self._idle = True
        if self.queue or self._stopping:  # put() appended before it could see the flag
            self._idle = False
            return
        await self._wake.wait()
        self._wake.clear()
        self._idle = False

    async def _sleep(self, seconds: float) -> None:
        if self._wake.is_set():
            self._wake.clear()
            return
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    # -- flush and shutdown (called from agent threads) --------------------------------

    async def _drain(self, deadline: float) -> bool:
        while self.queue or self._pending:
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.002)
        return await self.transport.flush(max(0.0, deadline - time.monotonic()))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is acknowledged; False on timeout."""
        if not self._thread.is_alive() or threading.current_thread() is self._thread:
            return False
        deadline = time.monotonic() + timeout
        try:
            fut = asyncio.run_coroutine_threadsafe(self._drain(deadline), self._loop)
            return bool(fut.result(timeout + 0.5))
        except Exception:  # noqa: BLE001 - timeouts, closed loop: flush never raises
            return False

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush what can be flushed in ``timeout``, then stop the thread and the transport.

        Events still undelivered then are lost: they are counted as failed and reported in
        one WARNING with their number and the last transport error."""
        if not self._thread.is_alive():
            return True
        ok = self.flush(timeout)

        async def _close() -> None:
            self._stopping = True
            self._wake.set()
            await self.transport.close(1.0)
            if not ok and self._task is not None:  # stuck on an unreachable destination
                self._task.cancel()

        try:
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(2.0)
        except Exception:  # noqa: BLE001 - shutdown never raises
            pass
        self._thread.join(2.0)
        if not ok:
            self._report_lost()
        return ok

    def _report_lost(self) -> None:
        lost = len(self.queue) + sum(len(b.events) for b in self._pending)
        try:
            lost += self.transport.pending()
        except Exception:  # noqa: BLE001
            pass
        self.queue.clear()
        self._pending = []
        if lost:
            self.failed += lost
            log.warning(
                "agentledger lost %d recorded events at shutdown: not delivered within the timeout (%s)",
                lost,
                self._last_error or "destination did not acknowledge in time",
            )

    # -- fork --------------------------------------------------------------------------

    def _after_fork(self) -> None:
        # The child inherits a copy of the parent's queue: sending it would duplicate the
        # parent's events, so start empty, with a new thread and the transport's own state.
        self.queue = deque(maxlen=self.max_queue)
        self._pending = []
        self._last_error = None
        self.sent = self.dropped = self.failed = 0
        self._warned = False
        self._drop_lock = threading.Lock()
        self._stopping = False
        self.transport.after_fork()
        self._start()


def _reinit_after_fork() -> None:
    for sender in list(_SENDERS):
        sender._after_fork()


os.register_at_fork(after_in_child=_reinit_after_fork)
