"""The worker's measurement probe (``AGENTLEDGER_WORKER_PROBE``, off by default): a callback
that holds the event loop shows up as loop lag with its wall time, the runtime's record steps
are measured, and the file is written for the benchmark to read."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from agentledger.streams.worker.runtime import PROBE_BUCKETS_MS, PROBE_ENV, LoopProbe
from tests.unit.test_streams_runtime import envelope, make, usage


def test_the_probe_is_off_unless_its_environment_variable_names_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(PROBE_ENV, raising=False)
    assert LoopProbe.from_env() is None
    monkeypatch.setenv(PROBE_ENV, str(tmp_path / "p.json"))
    probe = LoopProbe.from_env()
    assert probe is not None and probe.path == str(tmp_path / "p.json")


async def test_a_callback_that_blocks_the_loop_is_recorded_as_lag_at_its_time(tmp_path: Path) -> None:
    probe = LoopProbe(str(tmp_path / "probe.json"), period_s=0.005, spike_ms=20)
    task = asyncio.ensure_future(probe.run(write_every_s=0.05))
    await asyncio.sleep(0.05)
    before = time.time()
    time.sleep(0.12)  # noqa: ASYNC251 - holds the loop 120 ms, on purpose
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    doc = json.loads((tmp_path / "probe.json").read_text())  # written when it stops
    assert doc["buckets_ms"] == list(PROBE_BUCKETS_MS)
    assert doc["max_ms"]["loop_lag"] >= 100
    lag = doc["hist"]["loop_lag"]
    assert sum(lag) >= 10 and sum(lag[PROBE_BUCKETS_MS.index(100.0) + 1 :]) >= 1  # one wake-up > 100 ms
    spikes = [(at, ms) for at, what, ms in doc["spikes"] if what == "loop_lag"]
    assert any(ms >= 100 and before + 0.1 <= at <= before + 0.3 for at, ms in spikes)
    # time.sleep holds the loop without running: the thread's CPU in that lag stays small
    assert doc["max_ms"]["loop_lag_thread_cpu"] < 60
    assert sum(doc["hist"]["loop_lag_thread_cpu"]) == sum(doc["hist"]["loop_lag_process_cpu"]) >= 1


async def test_a_callback_that_computes_shows_its_cpu_in_the_lag(tmp_path: Path) -> None:
    probe = LoopProbe(None, period_s=0.005, spike_ms=50)
    task = asyncio.ensure_future(probe.run(write=False))
    await asyncio.sleep(0.02)
    end = time.thread_time() + 0.1
    while time.thread_time() < end:  # 100 ms of CPU on the loop
        pass
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.max_ms["loop_lag"] >= 90
    assert probe.max_ms["loop_lag_thread_cpu"] >= 80


def test_garbage_collections_are_timed() -> None:
    import gc

    probe = LoopProbe(None)
    before = list(gc.callbacks)
    probe.watch_gc()
    try:
        gc.collect()
    finally:
        gc.callbacks[:] = before
    assert sum(probe.hist["gc2"]) == 1


async def test_the_runtime_reports_how_long_its_steps_and_flushes_held_the_loop() -> None:
    rt, broker, _clock, _ = make()
    rt.probe = probe = LoopProbe(None, spike_ms=0.0)
    assert await rt.on_record(("tok", 0, 0), b"acme/planner", envelope(usage()), 0, 0)
    await rt.flush()
    counts = {what: sum(h) for what, h in probe.hist.items()}
    assert counts == {"events:step": 1, "events:publish": 1, "events:flush": 1}
    assert broker.acked() == [("tok", 0, 0)]  # measured, and the record still acked after its flush
    assert {what for _, what, _ in probe.spikes} == {"events:step", "events:publish", "events:flush"}
