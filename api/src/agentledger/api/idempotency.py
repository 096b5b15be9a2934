"""One write per client-supplied id within this process.

A client that times out retries with the same id, and the retry can arrive while the first
request is still producing (before the view has read its write back). The id is claimed
before the produce: a request that finds it claimed waits for that write's outcome and
answers it, or, if that write failed, makes its own attempt. Several API processes
(``--workers``) each keep their own claims.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class IdClaims(Generic[T]):
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Future[T | None]] = {}

    async def once(
        self, item_id: str, known: Callable[[str], T | None], write: Callable[[], Awaitable[T]]
    ) -> tuple[T, bool]:
        """``(value, written)``: the value held under ``item_id``, written by this call
        (``written``) or by an earlier or concurrent one. ``write`` must make the value
        ``known`` before it returns."""
        while True:
            async with self._lock:
                held = known(item_id)
                if held is not None:
                    return held, False
                pending = self._pending.get(item_id)
                if pending is None:
                    mine: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
                    self._pending[item_id] = mine
                    break
            outcome = await asyncio.shield(pending)
            if outcome is not None:
                return outcome, False
            # that write failed (its client got the error): this request tries in turn
        value: T | None = None
        try:
            value = await write()
            return value, True
        finally:
            del self._pending[item_id]
            mine.set_result(value)
