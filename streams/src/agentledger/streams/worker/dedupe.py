"""Bounded dedupe by (``tenant``, ``event_id``), warmed from the events topic itself.

The seen-set is memory, per process, over the events partitions it holds. It is made
crash-safe without writing anything more: the events topic is its changelog. When stage one
is given an events partition it did not hold (a start, a restart after a crash, a rebalance),
``warm_from_topic`` reads back the ``DEFAULT_WARM_RECORDS`` records of that partition just
before the group's committed offset and remembers the ids of their valid events, the ids the
previous owner had seen when it committed, before the first record of the partition is
processed. A duplicate whose two copies straddle a crash or a partition move is then caught
when fewer than that many records of its partition lie between the copies (a client's retry
of an envelope comes right after it) and fewer than ``size`` distinct ids reached the process
since the first copy. docs/adr/0011-two-stage-worker.md, addendum.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from agentledger.errors import ContractError
from agentledger.wire import decode_envelope

log = logging.getLogger("agentledger.streams")

DEFAULT_DEDUPE_SIZE = 500_000
"""Ids remembered per worker process (~60 MB). A duplicate is caught when fewer than this many
distinct events arrived between the two copies."""
DEFAULT_WARM_RECORDS = 1_000
"""Records read back per newly held events partition, before its committed offset (0: none)."""


def seen_ids(records: Iterable[bytes]) -> list[str]:
    """The dedupe keys of the valid events of events records, in order. An invalid event was
    never marked seen (it went to the DLQ), so its valid copy later must still count."""
    keys: list[str] = []
    for raw in records:
        try:
            events = decode_envelope(raw).events
        except ContractError:
            continue  # went to the DLQ whole: nothing of it was seen
        keys += [f"{ev.tenant}/{ev.event_id}" for ev in events]
    return keys


class Dedupe:
    """Remembers the last ``size`` (tenant, event id) pairs (oldest forgotten first).

    An id is unique within its tenant only: ids from OTLP derive from trace and span ids, so
    another tenant can send the same one, and it must not hide the first tenant's event.
    """

    def __init__(self, size: int = DEFAULT_DEDUPE_SIZE) -> None:
        if size < 1:
            raise ValueError("dedupe size must be >= 1")
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0

    def first_time(self, tenant: str, event_id: str) -> bool:
        """True the first time a tenant's id is seen (and remembers it); False for a duplicate."""
        seen = self._seen
        key = f"{tenant}/{event_id}"  # a tenant name has no "/" (agentledger.events.Name)
        if key in seen:
            self.duplicates += 1
            return False
        seen[key] = None
        if len(seen) > self.size:
            seen.popitem(last=False)
        return True

    def warm(self, records: Iterable[bytes]) -> int:
        """Remember the ids of the valid events of already processed events records, in order
        (the ids stage one marked seen when it processed them). Returns how many were read."""
        return self.remember(seen_ids(records))

    def remember(self, keys: list[str]) -> int:
        """Mark ``seen_ids`` keys as seen, newest last (no duplicate is counted)."""
        seen = self._seen
        for key in keys:
            seen[key] = None
            seen.move_to_end(key)
        while len(seen) > self.size:
            seen.popitem(last=False)
        return len(keys)

    def __len__(self) -> int:
        return len(self._seen)


async def read_before(
    bootstrap: str, topic: str, starts: dict[int, int], records: int, options: dict[str, Any] | None = None,
    timeout_s: float = 20.0,
) -> list[bytes]:  # fmt: skip
    """The values of the last ``records`` records before ``starts[p]`` of each partition ``p``
    (fewer where retention or the partition's start cuts them), partition by partition in order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    if records <= 0 or not any(start > 0 for start in starts.values()):
        return []  # nothing before any of them (a first start): no consumer to open
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **(options or {})
    )
    await consumer.start()
    out: dict[int, list[bytes]] = {p: [] for p in starts}
    try:
        tps = [TopicPartition(topic, p) for p in starts]
        consumer.assign(tps)
        firsts = await consumer.beginning_offsets(tps)
        left: dict[TopicPartition, int] = {}
        for tp in tps:
            if max(firsts.get(tp, 0), starts[tp.partition] - records) < starts[tp.partition]:
                left[tp] = starts[tp.partition]
        if not left:
            return []
        consumer.assign(list(left))  # only the partitions with something to read
        for tp in left:
            consumer.seek(tp, max(firsts.get(tp, 0), starts[tp.partition] - records))
        deadline = time.monotonic() + timeout_s
        while left and time.monotonic() < deadline:
            batch = await consumer.getmany(*left, timeout_ms=500)
            for tp, msgs in batch.items():
                end = left.get(tp)
                if end is None:
                    continue
                out[tp.partition] += [m.value for m in msgs if m.offset < end and m.value is not None]
                if msgs and msgs[-1].offset >= end - 1:
                    del left[tp]
            for tp in list(left):  # compacted-away or transactional gaps: the position tells
                if await consumer.position(tp) >= left[tp]:
                    del left[tp]
        if left:
            log.warning(
                "dedupe warm-up: %s not read to the committed offset in %.0fs", sorted(left), timeout_s
            )
    finally:
        await consumer.stop()
    return [v for p in sorted(out) for v in out[p]]


async def warm_from_topic(
    dedupe: Dedupe, bootstrap: str, topic: str, starts: dict[int, int], records: int = DEFAULT_WARM_RECORDS,
    options: dict[str, Any] | None = None,
) -> int:  # fmt: skip
    """Warm ``dedupe`` with the records before ``starts`` (see the module doc). The decode runs
    in a thread (a few hundred ms per thousand records), off the event loop; the ids are
    remembered on the loop."""
    values = await read_before(bootstrap, topic, starts, records, options)
    return dedupe.remember(await asyncio.to_thread(seen_ids, values)) if values else 0
