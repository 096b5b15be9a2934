"""Kafka -> Parquet: the priced events, control commands and alerts, landed durably.

One buffer per topic-partition. A buffer is flushed when it holds ``batch_rows`` rows or
has waited ``batch_seconds``: its rows are split by UTC date, each part written atomically
(temporary name, fsync, rename; see ``storage``) and only then is the partition's offset
committed. A crash at any point leaves either no file or a whole one; the records after the
last commit are read again on restart, and a second copy of a row is removed by the
catalog's dedupe on the row id. File names say which records they hold
(``p<partition>-<first offset>-<last offset>``), so a replay of the same batch rewrites the
same file instead of adding one.

The control topic is compacted; this sink reads it with its own consumer group from the
earliest offset, so the commands dataset holds every command still on the topic.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentledger import topics
from agentledger.errors import ContractError
from agentledger.warehouse.rows import ColumnBuffer, EventBuffer, ModelBuffer
from agentledger.warehouse.storage import Store, split_by_day

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SinkConfig:
    bootstrap: str
    root: str
    prefix: str = ""
    group_id: str = "agentledger-warehouse"
    batch_rows: int = 250_000
    batch_seconds: float = 30.0
    client_options: dict[str, Any] = field(default_factory=dict)
    on_ready: Callable[[set[Any]], None] | None = None
    """Called once with the first non-empty assignment (the command line's ready line)."""


@dataclass(slots=True)
class SinkStats:
    records: int = 0
    rows: int = 0
    files: int = 0
    rejected: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class _Pending:
    buffer: ColumnBuffer | EventBuffer
    first: int = -1
    last: int = -1
    opened: float = 0.0
    records: int = 0


class Sink:
    """Consumes the three topics and writes the three datasets (see the module docstring)."""

    def __init__(self, config: SinkConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or Store(config.root)
        p = config.prefix
        self.datasets = {
            p + topics.PRICED.name: "events",
            p + topics.CONTROL.name: "commands",
            p + topics.ALERTS.name: "alerts",
        }
        self.dlq_topic = p + topics.DLQ.name
        self.stats = SinkStats()
        self._pending: dict[Any, _Pending] = {}
        self._consumer: Any = None
        self._producer: Any = None

    def _new_buffer(self, dataset: str) -> ColumnBuffer | EventBuffer:
        return EventBuffer() if dataset == "events" else ModelBuffer(dataset)

    async def run(
        self,
        max_seconds: float | None = None,
        idle_seconds: float | None = None,
        stop: asyncio.Event | None = None,
    ) -> SinkStats:
        """Run until ``stop`` is set, ``max_seconds`` pass, or nothing arrived for
        ``idle_seconds`` (then every buffer is flushed and committed)."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.abc import ConsumerRebalanceListener

        sink = self

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                # Uncommitted rows of a partition we lose are re-read by its next owner.
                for tp in revoked:
                    sink._pending.pop(tp, None)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                return None

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            group_id=self.config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **self.config.client_options,
        )
        consumer.subscribe(list(self.datasets), listener=_Listener())
        self._consumer = consumer
        await asyncio.to_thread(self.store.remove_stale_temps)
        await consumer.start()
        started = time.monotonic()
        last_data = started
        announce = self.config.on_ready
        try:
            while not (stop and stop.is_set()):
                now = time.monotonic()
                if max_seconds is not None and now - started >= max_seconds:
                    break
                if not consumer.assignment():
                    last_data = now  # joining the group is not being idle
                elif idle_seconds is not None and now - last_data >= idle_seconds:
                    break
                batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
                if announce is not None and consumer.assignment():
                    announce(consumer.assignment())
                    announce = None
                for tp, records in batches.items():
                    if records:
                        last_data = time.monotonic()
                        await self._take(tp, records)
                await self._flush_due()
            await self.flush_all()
        finally:
            self.stats.seconds = time.monotonic() - started
            await consumer.stop()
            if self._producer is not None:
                await self._producer.stop()
        return self.stats

    async def _take(self, tp: Any, records: list[Any]) -> None:
        pending = self._pending.get(tp)
        if pending is None:
            pending = _Pending(self._new_buffer(self.datasets[tp.topic]), opened=time.monotonic())
            self._pending[tp] = pending
        buffer = pending.buffer
        if pending.first < 0:
            pending.first = records[0].offset
        pending.last = records[-1].offset
        pending.records += len(records)
        careful = [rec for rec in records if rec.value is not None]  # None: a tombstone
        if isinstance(buffer, EventBuffer) and careful:
            left = {o for _, o in buffer.add_many([(r.value, r.offset) for r in careful], tp.partition)}
            careful = [rec for rec in careful if rec.offset in left]
        for rec in careful:
            try:
                if isinstance(buffer, EventBuffer):
                    buffer.add_priced(rec.value, tp.partition, rec.offset)
                elif isinstance(buffer, ModelBuffer):
                    buffer.add_record(rec.value, tp.partition, rec.offset)
            except ContractError as exc:
                await self._dead_letter(tp, rec, str(exc))
        self.stats.records += len(records)

    async def _flush_due(self) -> None:
        now = time.monotonic()
        for tp, pending in list(self._pending.items()):
            full = pending.buffer.rows >= self.config.batch_rows
            if full or now - pending.opened >= self.config.batch_seconds:
                await self._flush(tp, pending)

    async def flush_all(self) -> None:
        for tp, pending in list(self._pending.items()):
            await self._flush(tp, pending)

    async def _flush(self, tp: Any, pending: _Pending) -> None:
        from aiokafka.errors import CommitFailedError, IllegalStateError
        from aiokafka.structs import OffsetAndMetadata

        del self._pending[tp]
        if pending.records == 0:
            return
        dataset = self.datasets[tp.topic]
        if pending.buffer.rows:
            table = pending.buffer.to_table()
            name = f"p{tp.partition}-{pending.first:012d}-{pending.last:012d}"
            for day, part in split_by_day(table):
                # Blocking file I/O off the event loop, so fetching goes on meanwhile.
                await asyncio.to_thread(self.store.write, dataset, day, name, part)
                self.stats.files += 1
            self.stats.rows += table.num_rows
        # Only now is every row up to `last` durable: commit past it.
        try:
            await self._consumer.commit({tp: OffsetAndMetadata(pending.last + 1, "")})
        except (CommitFailedError, IllegalStateError) as exc:
            # The partition moved to another member while we wrote: it reads these records
            # again and its copy of the rows is hidden by the views' dedupe.
            log.warning("warehouse sink: commit of %s after a rebalance failed: %s", tp, exc)

    async def _dead_letter(self, tp: Any, rec: Any, reason: str) -> None:
        """Keep a record we cannot land: raw bytes and reason on the DLQ (never dropped)."""
        from aiokafka import AIOKafkaProducer

        from agentledger.events import DeadLetter
        from agentledger.wire import dump

        self.stats.rejected += 1
        log.warning("warehouse sink: %s[%s]@%s rejected: %s", tp.topic, tp.partition, rec.offset, reason)
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.config.bootstrap,
                acks="all",
                enable_idempotence=True,
                **self.config.client_options,
            )
            await self._producer.start()
        letter = DeadLetter(
            reason=f"warehouse sink: {reason}"[:4096],
            raw_b64=base64.b64encode(rec.value).decode(),
            source_topic=tp.topic,
            source_partition=tp.partition,
            source_offset=rec.offset,
        )
        await self._producer.send_and_wait(self.dlq_topic, dump(letter), key=rec.key)


def run_sink(
    config: SinkConfig,
    max_seconds: float | None = None,
    idle_seconds: float | None = None,
) -> SinkStats:
    """Run the sink in its own event loop; SIGINT/SIGTERM flush, commit and stop it."""
    import signal

    async def main() -> SinkStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await Sink(config).run(max_seconds=max_seconds, idle_seconds=idle_seconds, stop=stop)

    return asyncio.run(main())
