"""Kafka transport: an aiokafka producer (acks=all, idempotent, compressed, short linger) on
the worker thread's loop. One record per batch, key ``tenant/agent``, record time = newest
event time (clamped by ``wire.record_timestamp_ms``).

Exactly once per ``event_id`` through a broker outage: the idempotent producer retries
in-flight batches itself with the same sequence numbers (so the broker drops duplicates), and
``request_timeout_ms`` (also aiokafka's batch time-to-live) is long enough to ride out a
minute-long outage. A batch aiokafka still gives up on with a retriable error is produced
again. In-flight events are bounded (``max_inflight_events``): when reached, ``send`` waits,
so the worker's deque absorbs the backlog and drops its oldest events, never memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from agentledger import wire

from .transport import Batch, NotReady, Outcome

log = logging.getLogger("agentledger.collectors")


class RepeatFilter(logging.Filter):
    """Lets each distinct aiokafka message template through once per ``every_s``.

    While a broker is down aiokafka logs every reconnect attempt at ERROR (several a second);
    the promise is one warning, not a flood. Installed once on the ``aiokafka`` logger by the
    first KafkaTransport (``quiet_aiokafka=False`` to keep aiokafka's logging untouched).
    """

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self.last: dict[tuple[str, object], float] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        if now - self.last.get(key, -1e18) < self.every_s:
            self.suppressed += 1
            return False
        self.last[key] = now
        return True


_AIOKAFKA_FILTER: RepeatFilter | None = None


def install_aiokafka_filter() -> RepeatFilter:
    """Install (once) the repeat filter on every aiokafka logger (filters do not inherit)."""
    global _AIOKAFKA_FILTER
    if _AIOKAFKA_FILTER is None:
        import aiokafka  # noqa: F401 - registers its module loggers

        _AIOKAFKA_FILTER = RepeatFilter()
        names = [n for n in logging.root.manager.loggerDict if n == "aiokafka" or n.startswith("aiokafka.")]
        for name in {"aiokafka", *names}:
            logging.getLogger(name).addFilter(_AIOKAFKA_FILTER)
    return _AIOKAFKA_FILTER


def best_compression() -> str:
    """zstd, else lz4, else gzip: the best codec aiokafka can use with the installed libraries."""
    from aiokafka import codec

    if codec.has_zstd():
        return "zstd"
    if codec.has_lz4():
        return "lz4"
    return "gzip"


def _retriable(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    return bool(getattr(exc, "retriable", False)) or isinstance(exc, KafkaTimeoutError | KafkaConnectionError)


class KafkaTransport:
    """Produce envelopes to ``topic`` on ``bootstrap``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        client_options: Mapping[str, Any] | None = None,
        compression: str | None = None,
        linger_ms: int = 5,
        request_timeout_ms: int = 120_000,
        max_inflight_events: int = 16_384,
        max_request_size: int = 1_000_000,
        quiet_aiokafka: bool = True,
    ) -> None:
        if not bootstrap or not topic:
            raise ValueError("KafkaTransport needs a bootstrap address and a topic")
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_options = dict(client_options or {})
        self.compression = compression
        self.linger_ms = linger_ms
        self.request_timeout_ms = request_timeout_ms
        self.max_inflight_events = max_inflight_events
        self.max_request_size = max_request_size
        self._producer: Any = None
        self._inflight = 0
        self._space: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        if quiet_aiokafka:
            install_aiokafka_filter()

    async def _ensure(self) -> Any:
        if self._producer is not None:
            return self._producer
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type=self.compression or best_compression(),
            linger_ms=self.linger_ms,
            request_timeout_ms=self.request_timeout_ms,
            max_batch_size=self.max_request_size,
            max_request_size=self.max_request_size,
            retry_backoff_ms=200,
            **self.client_options,
        )
        try:
            await producer.start()
        except Exception as exc:  # noqa: BLE001 - broker unreachable: the worker keeps the batch
            try:
                await producer.stop()
            except Exception:  # noqa: BLE001
                pass
            raise NotReady(f"cannot connect to Kafka at {self.bootstrap}: {exc!r}") from None
        self._producer = producer
        self._space = asyncio.Event()
        return producer

    async def send(self, batches: list[Batch], outcome: Outcome) -> None:
        """Hand batches to the producer; removes each accepted batch from ``batches``."""
        await self._ensure()
        while batches:
            await self._produce(batches[0], outcome)
            del batches[0]

    async def _produce(self, batch: Batch, outcome: Outcome, value: bytes | None = None) -> None:
        assert self._space is not None
        while self._inflight >= self.max_inflight_events:
            self._space.clear()
            await self._space.wait()
        if value is None:
            value = batch.envelope()
        if len(value) > self.max_request_size - 4096 and len(batch.events) > 1:
            # too big for one record (a large batch_size, fat attributes): split, keep order
            half = len(batch.events) // 2
            for part in (batch.events[:half], batch.events[half:]):
                await self._produce(Batch(batch.key, part, batch.newest_ms), outcome)
            return
        ts = wire.record_timestamp_ms(batch.newest_ms, time.time_ns() // 1_000_000)
        try:
            fut = await self._producer.send(self.topic, value, key=batch.key.encode(), timestamp_ms=ts)
        except Exception as exc:  # noqa: BLE001
            if _retriable(exc):
                raise NotReady(repr(exc)) from None
            outcome.failed(len(batch.events), repr(exc))
            return
        n = len(batch.events)
        self._inflight += n
        fut.add_done_callback(lambda f: self._settled(f, batch, value, outcome))

    def _settled(self, fut: asyncio.Future[Any], batch: Batch, value: bytes, outcome: Outcome) -> None:
        n = len(batch.events)
        self._inflight -= n
        if self._space is not None:
            self._space.set()
        exc: BaseException | None = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is None:
            outcome.delivered(n)
        elif _retriable(exc) and self._producer is not None:
            log.info("re-sending %d events after %r", n, exc)
            task = asyncio.get_running_loop().create_task(self._resend(batch, outcome, value))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            outcome.failed(n, repr(exc))

    async def _resend(self, batch: Batch, outcome: Outcome, value: bytes) -> None:
        try:
            await self._produce(batch, outcome, value)
        except NotReady as exc:
            outcome.failed(len(batch.events), str(exc))

    def pending(self) -> int:
        return self._inflight

    async def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._inflight or self._tasks:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def close(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout)
            except Exception:  # noqa: BLE001 - closing never raises
                pass

    def after_fork(self) -> None:
        self._producer = None
        self._inflight = 0
        self._space = None
        self._tasks = set()
