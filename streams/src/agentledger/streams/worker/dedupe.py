"""Bounded dedupe by (``tenant``, ``event_id``)."""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_DEDUPE_SIZE = 500_000
"""Ids remembered per worker process (~60 MB). A duplicate is caught when fewer than this many
distinct events arrived between the two copies; the memory is not durable, so duplicates
replayed after a crash are counted again (bounded by one commit interval: docs/streams.md)."""


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

    def __len__(self) -> int:
        return len(self._seen)
