"""Land priced events without Kafka: the same rows and files the sink writes.

Used by tests, the benchmark's direct-write anchor, and back-fills.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from agentledger.events import PricedEvent
from agentledger.warehouse.rows import EventBuffer
from agentledger.warehouse.storage import Store, split_by_day
from agentledger.wire import encode_envelope


def priced_table(events: Sequence[PricedEvent], partition: int = 0, offset: int = 0) -> pa.Table:
    """The ``events`` rows of ``events`` (one envelope per run of equal keys)."""
    buffer = EventBuffer()
    start = 0
    for i in range(1, len(events) + 1):
        if i == len(events) or events[i].event.key != events[start].event.key:
            chunk = events[start:i]
            buffer.add_priced(encode_envelope(chunk[0].event.key, chunk), partition, offset)
            start = i
    return buffer.to_table()


def land_priced(store: Store, events: Sequence[PricedEvent], name: str) -> list[str]:
    """Write ``events`` as ``events/date=*/<name>.parquet`` files; returns their paths."""
    table = priced_table(events)
    return [store.write("events", day, name, part) for day, part in split_by_day(table)]
