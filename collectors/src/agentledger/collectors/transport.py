"""What the worker hands a transport, and the two transports that need no network.

A transport runs on the worker thread's asyncio loop. ``send`` may wait (that is the worker's
time, never the agent's) and reports every event exactly once through ``Outcome``: delivered
or failed. Transports never raise into the worker except ``NotReady`` (try again later, keep
the batch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentledger import wire

EventDict = dict[str, Any]


@dataclass(slots=True)
class Batch:
    """Events of one key (``tenant/agent``), JSON-ready, with the newest event time."""

    key: str
    events: list[EventDict]
    newest_ms: int

    def envelope(self) -> bytes:
        return wire.encode_envelope_dicts(self.key, self.events)


@dataclass(slots=True)
class Outcome:
    """Callbacks the worker gives a transport to count delivered and failed events."""

    delivered: Callable[[int], None]
    failed: Callable[[int, str], None]


class NotReady(Exception):
    """The transport cannot take the batch now (e.g. broker unreachable at start): keep it."""


class Transport(Protocol):
    async def send(self, batches: list[Batch], outcome: Outcome) -> None: ...

    async def flush(self, timeout: float) -> bool: ...

    async def close(self, timeout: float) -> None: ...

    def pending(self) -> int:
        """Events accepted but not yet acknowledged."""
        ...

    def after_fork(self) -> None:
        """Forget connections inherited from the parent (never close them: they are shared)."""
        ...


@dataclass
class MemoryTransport:
    """Keeps every batch in memory (tests, notebooks). Thread-safe to read."""

    batches: list[Batch] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    async def send(self, batches: list[Batch], outcome: Outcome) -> None:
        with self._lock:
            self.batches.extend(batches)
        outcome.delivered(sum(len(b.events) for b in batches))

    async def flush(self, timeout: float) -> bool:
        return True

    async def close(self, timeout: float) -> None:
        return None

    def pending(self) -> int:
        return 0

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    @property
    def events(self) -> list[EventDict]:
        """Every event delivered so far, in order."""
        with self._lock:
            return [e for b in self.batches for e in b.events]

    def envelopes(self) -> list[bytes]:
        with self._lock:
            return [b.envelope() for b in self.batches]


class NoOpTransport:
    """Discards events (nothing configured). Counted as delivered so ``flush`` returns."""

    async def send(self, batches: list[Batch], outcome: Outcome) -> None:
        outcome.delivered(sum(len(b.events) for b in batches))

    async def flush(self, timeout: float) -> bool:
        return True

    async def close(self, timeout: float) -> None:
        return None

    def pending(self) -> int:
        return 0

    def after_fork(self) -> None:
        return None
