"""The rollups table seen by the worker: live rollups, written to the changelog in batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentledger import topics
from agentledger.streams.worker.deltas import partition_for
from agentledger.streams.worker.rollups import Rollup

Change = tuple[int, str, bytes | None]
"""(changelog partition, table key, value or None for a tombstone)."""


class TableStore:
    """Rollups decoded once and kept live; the table (and its changelog) is written in batches.

    ``put``/``delete`` only mark a key; ``take_changes`` hands over each marked key once, with
    the partition its changelog record belongs to (``deltas.partition_for``: the scope-deltas
    partition whose stage two owns the scope, ADR 0011), however
    many records touched it since the last call. The worker acks the records behind a batch
    only after its changelog records are sent, so a committed offset never runs ahead of the
    state it implies (docs/streams.md, crash bounds).
    """

    def __init__(self, table: Any, partitions: int = topics.EVENTS.partitions) -> None:
        self.table = table
        self.partitions = partitions
        self.live: dict[str, Rollup] = {}
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()

    def partition_of(self, key: str) -> int:
        return partition_for(key, self.partitions)

    def get(self, key: str) -> Rollup | None:
        r = self.live.get(key)
        if r is None:
            raw = self.table.get(key)
            if raw is not None:
                r = self.live[key] = Rollup.loads(raw)
        return r

    def put(self, key: str, rollup: Rollup) -> None:
        self.live[key] = rollup
        self.dirty.add(key)
        self.deleted.discard(key)

    def delete(self, key: str) -> None:
        self.live.pop(key, None)
        self.dirty.discard(key)
        self.deleted.add(key)

    def all_keys(self) -> Iterator[str]:
        return iter((set(self.live) | set(self.table.keys())) - self.deleted)

    def take_changes(self) -> list[Change]:
        """(partition, key, value or None for a tombstone) per key changed since the last call;
        the table's own store is updated here, the changelog is the caller's to write."""
        out: list[Change] = []
        data = self.table.data
        for key in self.dirty:
            value = self.live[key].dumps()
            data[key] = value
            out.append((self.partition_of(key), key, value))
        for key in self.deleted:
            if key in data:
                del data[key]
            out.append((self.partition_of(key), key, None))
        self.dirty.clear()
        self.deleted.clear()
        return out

    def mark_changed(self, changes: list[Change]) -> None:
        """Give back changes whose changelog write failed: the next ``take_changes`` has them."""
        for _, key, value in changes:
            if value is None:
                if key not in self.live:
                    self.deleted.add(key)
            elif key in self.live:
                self.dirty.add(key)

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget live state of partitions this worker lost: their next owner has the changelog,
        and if they come back the table is recovered from it again."""
        for key in [k for k in self.live if self.partition_of(k) in partitions]:
            del self.live[key]
        self.dirty = {k for k in self.dirty if self.partition_of(k) not in partitions}
        self.deleted = {k for k in self.deleted if self.partition_of(k) not in partitions}
