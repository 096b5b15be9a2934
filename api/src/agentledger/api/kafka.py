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

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from agentledger.admin import KAFKA_DEFAULT_MAX_MESSAGE_BYTES, RECORD_OVERHEAD_BYTES, record_value_limit
from agentledger.compacted import CompactedReader, read_to_end
from agentledger.errors import TransientError
from agentledger.settings import Settings

log = logging.getLogger("agentledger.api.kafka")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce: key, value (None = tombstone), timestamp in ms (None = now)."""

    topic: str
    key: str
    value: bytes | None
    timestamp_ms: int | None = None


class WriteOutcome:
    """What happened to each record of one ``send``: acknowledged, refused, or unknown."""

    __slots__ = ("acked", "refused", "unknown")

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.refused: list[int] = []
        self.unknown: list[int] = []


class WriteFailedError(TransientError):
    """Not every record was acknowledged. ``outcome`` says, by record index, which ones the
    broker acknowledged (written), refused (not written) and which are unknown (a timeout:
    they may still land). Every write is idempotent by its id, so retrying all is safe."""

    def __init__(self, summary: str, advice: str, outcome: WriteOutcome) -> None:
        super().__init__(f"{summary}: {advice}")
        self.summary = summary
        self.outcome = outcome


class Publisher:
    """Sends records and waits for the broker's acknowledgement (acks=all, idempotent).

    An idempotent producer that got an error back from the broker (a record too large, a
    fenced or unknown producer id) keeps failing every later write to that partition with
    ``OutOfOrderSequenceNumber``: such a producer is replaced by a fresh one at once, so one
    bad write never breaks ingest for everyone else on its partition.
    """

    def __init__(
        self,
        bootstrap: str,
        client_options: dict[str, object],
        timeout_s: float = 10.0,
        max_value_bytes: int = KAFKA_DEFAULT_MAX_MESSAGE_BYTES - RECORD_OVERHEAD_BYTES,
    ) -> None:
        self._bootstrap = bootstrap
        self._options = client_options
        self._producer: AIOKafkaProducer | None = None
        self._lock: asyncio.Lock | None = None
        self.timeout_s = timeout_s
        self.max_value_bytes = max_value_bytes
        self.replaced = 0

    async def read_record_limit(self, topic: str, settings: Settings | None = None) -> int:
        """Size records to the broker's real limit for ``topic`` (call before ``start``).
        Keeps Kafka's default when the broker will not describe its configs."""
        try:
            async with asyncio.timeout(self.timeout_s):
                self.max_value_bytes = await record_value_limit(self._bootstrap, topic, settings)
        except (KafkaError, TimeoutError) as exc:
            log.warning("cannot read max.message.bytes of %s (%s); assuming Kafka's default", topic, exc)
        return self.max_value_bytes

    def _new(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            # Room for the key and record overhead above the value limit (admin.py).
            max_request_size=self.max_value_bytes + RECORD_OVERHEAD_BYTES,
            **self._options,
        )

    async def start(self) -> None:
        # aiokafka clients bind to the running loop: create them here, not in __init__.
        self._lock = asyncio.Lock()
        producer = self._new()
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def _current(self) -> AIOKafkaProducer:
        """The live producer; one that was dropped is restarted here (503 if Kafka is down)."""
        if self._producer is not None:
            return self._producer
        if self._lock is None:
            raise TransientError("the Kafka producer is not started; nothing was written")
        async with self._lock:
            if self._producer is None:
                producer = self._new()
                try:
                    async with asyncio.timeout(self.timeout_s):
                        await producer.start()
                except (KafkaError, TimeoutError) as exc:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise TransientError(
                        f"Kafka is not reachable ({type(exc).__name__}); nothing was written"
                    ) from None
                self._producer = producer
            return self._producer

    async def problems(self, topics: Sequence[str], timeout_s: float = 2.0) -> dict[str, str]:
        """What keeps writes from working now, by part (empty when ready): fresh metadata
        from the cluster, and a leader for every partition of ``topics``."""
        try:
            async with asyncio.timeout(timeout_s):
                producer = await self._current()
                cluster = await producer.client.fetch_all_metadata()
        except (KafkaError, TimeoutError, TransientError) as exc:
            return {"kafka": f"no answer from the brokers at {self._bootstrap} ({type(exc).__name__})"}
        out: dict[str, str] = {}
        for topic in topics:
            parts = cluster.partitions_for_topic(topic)
            if not parts:
                out[topic] = "topic does not exist (run `agentledger topics create`)"
                continue
            leaderless = sorted(
                p for p in parts if (cluster.leader_for_partition(TopicPartition(topic, p)) or -1) < 0
            )
            if leaderless:
                out[topic] = f"partitions without a leader: {leaderless}"
        return out

    async def _replace(self, broken: AIOKafkaProducer) -> None:
        old: AIOKafkaProducer = broken
        if self._producer is not None and self._producer is broken:
            self._producer = None  # the next send starts a fresh one (new producer id)
            self.replaced += 1
            log.warning("Kafka producer hit a broker error; replacing it")
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout_s):
                    await old.stop()

    async def send(self, records: Sequence[Record]) -> None:
        """Produce all records; raise ``WriteFailedError`` (a ``TransientError``) naming which
        were written when any is not acknowledged within ``timeout_s``."""
        producer = await self._current()
        outcome = WriteOutcome()
        futures: list[asyncio.Future[object]] = []
        failed: BaseException | None = None
        for r in records:
            try:
                futures.append(
                    await producer.send(r.topic, r.value, key=r.key.encode(), timestamp_ms=r.timestamp_ms)
                )
            except KafkaError as exc:  # refused before sending (e.g. larger than max_request_size)
                failed = exc
                break
        if futures:
            done, pending = await asyncio.wait(futures, timeout=self.timeout_s)
            for index, future in enumerate(futures):
                if future not in done:
                    outcome.unknown.append(index)
                elif future.exception() is not None:
                    failed = failed or future.exception()
                    outcome.refused.append(index)
                else:
                    outcome.acked.append(index)
            for future in pending:  # nobody waits for them any more; keep their errors quiet
                future.add_done_callback(_consume)
        outcome.refused.extend(range(len(futures), len(records)))
        if len(outcome.acked) == len(records):
            return
        if isinstance(failed, KafkaError):
            await self._replace(producer)
        cause = type(failed).__name__ if failed is not None else "no answer in time"
        if outcome.unknown:
            what = "the outcome is unknown (it may still be written)"
        else:
            what = f"{len(outcome.refused)} not written"
        raise WriteFailedError(
            f"Kafka did not acknowledge {len(records) - len(outcome.acked)} of {len(records)} "
            f"record(s) ({cause})",
            f"{what}. Retry with the same id: every write is idempotent by its id",
            outcome,
        )


def _consume(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


class CompactedView(Generic[T]):
    """The latest value per key of a compacted topic, read from the start in the background.

    A tombstone (value None) removes the key; a record that does not parse is logged and
    skipped (it cannot stop the view). ``put``/``remove`` apply our own writes at once, so a
    client reads its write back without waiting for the consumer. With ``id_of``, the view
    also remembers the last ``remember`` values it saw by that id, superseded ones included
    (idempotent retries: a command is found by its id after a later one replaced it).
    """

    def __init__(
        self,
        topic: str,
        bootstrap: str,
        client_options: dict[str, object],
        parse: Callable[[bytes], T],
        id_of: Callable[[T], str] | None = None,
        remember: int = 100_000,
    ) -> None:
        self.topic = topic
        self._parse = parse
        self._items: dict[str, T] = {}
        self._id_of = id_of
        self._remember = remember
        self._by_id: dict[str, T] = {}  # insertion order: the oldest is dropped first
        self._bootstrap = bootstrap
        self._options = client_options
        self._reader: CompactedReader | None = None
        self._task: asyncio.Task[None] | None = None

    def items(self) -> dict[str, T]:
        return dict(self._items)

    @property
    def running(self) -> bool:
        """Whether the background reader is alive."""
        return self._task is not None and not self._task.done()

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def by_id(self, item_id: str) -> T | None:
        """The value last seen with this id (needs ``id_of``), current or superseded."""
        return self._by_id.get(item_id)

    def _note(self, value: T) -> None:
        if self._id_of is None:
            return
        item_id = self._id_of(value)
        self._by_id.pop(item_id, None)
        self._by_id[item_id] = value
        if len(self._by_id) > self._remember:
            del self._by_id[next(iter(self._by_id))]

    def put(self, key: str, value: T) -> None:
        self._items[key] = value
        self._note(value)

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
            parsed = self._parse(value)
        except Exception as exc:  # noqa: BLE001 - a bad record must not stop the view
            log.warning("skipping unreadable record on %s key %r: %s", self.topic, k, exc)
            return
        self._items[k] = parsed
        self._note(parsed)

    async def start(self) -> None:
        reader = CompactedReader(self._bootstrap, [self.topic], self._options, poll_ms=500, max_records=1000)
        await reader.start()
        self._reader = reader
        self._task = asyncio.create_task(self._run(), name=f"view:{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    async def _run(self) -> None:
        assert self._reader is not None
        assigned = False
        while True:
            try:
                if not assigned:
                    assigned = any((await self._reader.assign()).values())
                    if not assigned:  # the topic does not exist yet: look again
                        await asyncio.sleep(1)
                        continue
                records = await self._reader.poll()
            except KafkaError as exc:
                log.warning("view of %s: %s; retrying", self.topic, exc)
                await asyncio.sleep(1)
                continue
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
    for rec in await read_to_end(bootstrap, [topic], client_options, timeout_s=timeout_s):
        view.apply(rec.key, rec.value)
    return view.items()
