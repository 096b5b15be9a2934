"""A ready worker freezes its start-up objects out of the garbage collector's full passes
(issue #15: a full pass over them held a busy worker's GIL for 100-440 ms)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from agentledger.streams.worker.app import freeze_when_ready


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the session collects as before


async def test_nothing_is_frozen_before_the_worker_is_ready(unfrozen: None) -> None:
    ready = asyncio.Event()
    task = asyncio.ensure_future(freeze_when_ready(ready, settle_s=0))
    await asyncio.sleep(0.05)
    assert not task.done() and gc.get_freeze_count() == 0
    task.cancel()


async def test_once_ready_the_objects_alive_leave_the_full_passes_and_later_ones_do_not(
    unfrozen: None,
) -> None:
    ready = asyncio.Event()
    ready.set()
    before = len(gc.get_objects())
    frozen = await freeze_when_ready(ready, settle_s=0)
    assert frozen >= before // 2 and gc.get_freeze_count() >= before // 2
    later = [[i] for i in range(1000)]  # made after the freeze: still collected as usual
    tracked = gc.get_objects()
    assert len(tracked) < before // 2
    assert any(x is later[0] for x in tracked)
