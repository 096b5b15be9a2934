"""Read compacted topics to their end, then follow them: the one reader every layer uses.

A compacted topic (policies, control commands, budget statuses) is state: the latest value
per key, a tombstone (value None) for a deleted key. A reader has no consumer group and
commits nothing: it reads every partition from the beginning, knows it is caught up once each
position reaches the end offset seen when it started, and may keep polling to follow new
records. aiokafka is imported only when a reader starts, so the client stays light to import.

    async with CompactedReader(bootstrap, [topic], client_options) as reader:
        await reader.assign()                  # every partition, from the beginning
        state = await reader.read_to_end()     # or: poll() / caught_up() in a loop, to follow

The one-off forms: ``read_to_end`` (the records), ``read_latest`` (the state, parsed), and
``publish`` (write values and tombstones, each acknowledged by every in-sync replica).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

log = logging.getLogger("agentledger.compacted")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CompactedRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    """None is a tombstone: the key was deleted."""

    @property
    def text_key(self) -> str:
        """The key as text ("" when there is none; undecodable bytes replaced)."""
        return self.key.decode(errors="replace") if self.key else ""


class CompactedReader:
    """One consumer, no group, over some compacted topics. ``start`` then ``assign``; then
    ``read_to_end``, or ``poll`` and ``caught_up`` to follow. ``consumer_options`` go to
    aiokafka's consumer as they are (e.g. ``fetch_max_wait_ms``)."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        client_options: Mapping[str, Any] | None = None,
        *,
        poll_ms: int = 200,
        max_records: int = 5000,
        **consumer_options: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.poll_ms = poll_ms
        self.max_records = max_records
        self._options = {**(client_options or {}), **consumer_options}
        self._consumer: Any = None
        self._tps: list[Any] = []
        self._ends: dict[Any, int] | None = {}

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._options,
        )
        await consumer.start()
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def __aenter__(self) -> CompactedReader:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def partitions(self) -> dict[str, set[int]]:
        """The partitions of each topic the cluster knows now (empty: the topic does not exist)."""
        # consumer.topics() fetches metadata into a throwaway copy, so ask the client for the
        # full metadata and read the partitions from it.
        metadata = await self._consumer._client.fetch_all_metadata()
        return {t: set(metadata.partitions_for_topic(t) or ()) for t in self.topics}

    async def assign(self, partitions: Mapping[str, Iterable[int]] | None = None) -> dict[str, set[int]]:
        """Read these partitions (default: every partition the cluster knows) from the
        beginning; the end offsets seen now are what ``caught_up`` compares with. Returns
        what was assigned."""
        from aiokafka import TopicPartition

        chosen = (
            {t: set(p) for t, p in partitions.items()} if partitions is not None else await self.partitions()
        )
        self._tps = [TopicPartition(t, p) for t in self.topics for p in sorted(chosen.get(t, ()))]
        self._consumer.assign(self._tps)
        if self._tps:
            await self._consumer.seek_to_beginning(*self._tps)
        self._ends = await self.end_offsets() if self._tps else {}
        return chosen

    async def caught_up(self) -> bool:
        """Whether every partition has been read up to the end seen at ``assign`` (or the one
        given to ``expect``; never while that is None)."""
        if self._ends is None:
            return False
        ends = self._ends
        return all([await self._consumer.position(tp) >= ends[tp] for tp in self._tps])

    async def end_offsets(self) -> dict[Any, int]:
        """Ask the broker for the end of every assigned partition now (raises when no broker
        answers: a fetch from a broker that is gone just returns nothing)."""
        ends: dict[Any, int] = await self._consumer.end_offsets(self._tps)
        return ends

    def expect(self, ends: dict[Any, int] | None) -> None:
        """From now on ``caught_up`` compares with ``ends``; None: not caught up until set."""
        self._ends = ends

    async def poll(self) -> list[CompactedRecord]:
        """The next records (possibly none, after waiting up to ``poll_ms``)."""
        batch = await self._consumer.getmany(timeout_ms=self.poll_ms, max_records=self.max_records)
        return [CompactedRecord(tp.topic, m.key, m.value) for tp, msgs in batch.items() for m in msgs]

    async def read_to_end(self, timeout_s: float | None = None) -> list[CompactedRecord]:
        """Every record up to the end seen at ``assign``, in order per partition. With
        ``timeout_s``, what was read by then (logged) when the end is not reached."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        out: list[CompactedRecord] = []
        while not await self.caught_up():
            if deadline is not None and loop.time() >= deadline:
                log.warning(
                    "read of %s stopped after %.0fs before its end", ", ".join(self.topics), timeout_s
                )
                break
            out += await self.poll()
        return out


async def read_to_end(
    bootstrap: str,
    topics: Sequence[str],
    client_options: Mapping[str, Any] | None = None,
    *,
    partitions: Mapping[str, Iterable[int]] | None = None,
    timeout_s: float | None = None,
) -> list[CompactedRecord]:
    """A one-off read of compacted topics from their start to their current end."""
    async with CompactedReader(bootstrap, topics, client_options) as reader:
        await reader.assign(partitions)
        return await reader.read_to_end(timeout_s)


def latest(records: Iterable[CompactedRecord], parse: Callable[[bytes], T | None]) -> dict[str, T]:
    """The state the records leave: the latest value per key, a tombstone removing its key.
    A value ``parse`` rejects (returns None) changes nothing, as the workers ignore it."""
    out: dict[str, T] = {}
    for r in records:
        if r.value is None:
            out.pop(r.text_key, None)
            continue
        parsed = parse(r.value)
        if parsed is not None:
            out[r.text_key] = parsed
    return out


async def read_latest(
    bootstrap: str,
    topic: str,
    partitions: int,
    parse: Callable[[bytes], T | None],
    client_options: Mapping[str, Any] | None = None,
) -> dict[str, T]:
    """A compacted topic's current state (``latest`` over its records up to its end now),
    reading its ``partitions`` partitions (the contract's count)."""
    records = await read_to_end(bootstrap, [topic], client_options, partitions={topic: range(partitions)})
    return latest(records, parse)


async def publish(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[str, bytes | None]],
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Write (key, value) records to a compacted topic, in order (value None: a tombstone);
    returns once the broker acknowledged every one (acks=all, idempotent)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **(client_options or {})
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, key=key.encode(), value=value)
    finally:
        await producer.stop()
