"""The API's Kafka clients: one idempotent producer, and in-memory views of compacted topics.

The producer uses ``acks=all`` and idempotence (DESIGN.md guarantees); a 202 is answered only
after the broker acknowledged every envelope of the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from agentledger.errors import TransientError

log = logging.getLogger("agentledger.api.kafka")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce: key, value (None = tombstone), timestamp in ms (None = now)."""

    topic: str
    key: str
    value: bytes | None
    timestamp_ms: int | None = None


class Publisher:
    """Sends records and waits for the broker's acknowledgement (acks=all, idempotent)."""

    def __init__(self, bootstrap: str, client_options: dict[str, object], timeout_s: float = 10.0) -> None:
        self._bootstrap = bootstrap
        self._options = client_options
        self._producer: AIOKafkaProducer | None = None
        self.timeout_s = timeout_s

    async def start(self) -> None:
        # aiokafka clients bind to the running loop: create them here, not in __init__.
        producer = self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_request_size=8 * 1024 * 1024,
            **self._options,
        )
        await producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, records: Sequence[Record]) -> None:
        """Produce all records; raise ``TransientError`` if any is not acknowledged in time."""
        if self._producer is None:
            raise TransientError("the Kafka producer is not started")
        try:
            futures = [
                await self._producer.send(r.topic, r.value, key=r.key.encode(), timestamp_ms=r.timestamp_ms)
                for r in records
            ]
            async with asyncio.timeout(self.timeout_s):
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            raise TransientError(f"Kafka did not acknowledge the write: {type(exc).__name__}") from None


class CompactedView(Generic[T]):
    """The latest value per key of a compacted topic, read from the start in the background.

    A tombstone (value None) removes the key; a record that does not parse is logged and
    skipped (it cannot stop the view). ``put``/``remove`` apply our own writes at once, so a
    client reads its write back without waiting for the consumer.
    """

    def __init__(
        self,
        topic: str,
        bootstrap: str,
        client_options: dict[str, object],
        parse: Callable[[bytes], T],
    ) -> None:
        self.topic = topic
        self._parse = parse
        self._items: dict[str, T] = {}
        self._bootstrap = bootstrap
        self._options = client_options
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def items(self) -> dict[str, T]:
        return dict(self._items)

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def put(self, key: str, value: T) -> None:
        self._items[key] = value

    def remove(self, key: str) -> None:
        self._items.pop(key, None)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        k = key.decode(errors="replace")
        if value is None:
            self._items.pop(k, None)
            return
        try:
            self._items[k] = self._parse(value)
        except Exception as exc:  # noqa: BLE001 - a bad record must not stop the view
            log.warning("skipping unreadable record on %s key %r: %s", self.topic, k, exc)

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._options,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"view:{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=1000)
            except KafkaError as exc:
                log.warning("view of %s: %s; retrying", self.topic, exc)
                await asyncio.sleep(1)
                continue
            for records in batches.values():
                for rec in records:
                    self.apply(rec.key, rec.value)


async def read_compacted(
    bootstrap: str,
    topic: str,
    parse: Callable[[bytes], T],
    client_options: dict[str, object] | None = None,
    timeout_s: float = 10.0,
) -> dict[str, T]:
    """A one-off read of a compacted topic up to its current end: latest value per key
    (for ``agentledger report``, which runs without the API). Returns what it has read if the
    end is not reached within ``timeout_s`` (and logs it)."""
    view: CompactedView[T] = CompactedView(topic, bootstrap, client_options or {}, parse)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(client_options or {}),
    )
    await consumer.start()
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for rec in records:
                    view.apply(rec.key, rec.value)
            parts = list(consumer.assignment())
            if parts:
                end = await consumer.end_offsets(parts)
                if all([await consumer.position(tp) >= end[tp] for tp in parts]):
                    return view.items()
        log.warning("read of %s stopped after %.0fs before its end", topic, timeout_s)
        return view.items()
    finally:
        await consumer.stop()
