"""Bounded dedupe by ``event_id``."""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_DEDUPE_SIZE = 500_000
"""Ids remembered per worker process (~60 MB). A duplicate is caught when fewer than this many
distinct events arrived between the two copies; the memory is not durable, so duplicates
replayed after a crash are counted again (bounded by one commit interval: docs/streams.md)."""


class Dedupe:
    """Remembers the last ``size`` event ids (oldest forgotten first)."""

    def __init__(self, size: int = DEFAULT_DEDUPE_SIZE) -> None:
        if size < 1:
            raise ValueError("dedupe size must be >= 1")
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0

    def first_time(self, event_id: str) -> bool:
        """True the first time an id is seen (and remembers it); False for a duplicate."""
        seen = self._seen
        if event_id in seen:
            self.duplicates += 1
            return False
        seen[event_id] = None
        if len(seen) > self.size:
            seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)
