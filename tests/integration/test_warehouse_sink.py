"""The sink on a real broker: exact totals, commands and alerts, bad records to the DLQ,
and SIGKILL mid-batch followed by a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from agentledger.events import (
    Action,
    AlertEvent,
    AlertState,
    ControlCommand,
    DeadLetter,
    PricedEvent,
    Scope,
    ScopeKind,
)
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.sink import Sink, SinkConfig
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import T0, traces
from agentledger.wire import dump, encode_envelope, record_timestamp_ms


async def _produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        futures = [
            await producer.send(topic, value, key=key, timestamp_ms=record_timestamp_ms(now_ms, now_ms))
            for key, value in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _priced_records(n_traces: int, seed: int) -> tuple[list[tuple[bytes | None, bytes]], list[PricedEvent]]:
    records, events = [], []
    for trace in traces(n_traces, seed=seed):
        key = trace[0].event.key
        records.append((key.encode(), encode_envelope(key, trace)))
        events.extend(trace)
    return records, events


def _totals(root: str) -> dict[str, Any]:
    return Catalog(root).query(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS ids, sum(cost_usd) AS cost FROM events"
    )[0]


def test_sink_lands_everything_exactly_and_dead_letters_bad_records(topics: Any, tmp_path: Path) -> None:
    records, events = _priced_records(400, seed=31)
    bad = (b"acme/planner", b'{"v":1,"key":"acme/planner","events":[{"event":{"event_id":"nope"}}]}')
    command = ControlCommand(
        command_id="cmd-sink-0001",
        ts=T0,
        scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent="planner"),
        action=Action.KILL,
        reason="budget exhausted",
    )
    alert = AlertEvent(
        alert_id="alert-sink-01", dedup_key="budget/acme", ts=T0, rule="budget", entity="acme/planner",
        tenant="acme", state=AlertState.ALERT, summary="100% of budget", command_id=command.command_id,
    )  # fmt: skip
    asyncio.run(_produce(topics.bootstrap, topics.priced, [*records[:200], bad, *records[200:]]))
    asyncio.run(_produce(topics.bootstrap, topics.control, [(command.scope.key.encode(), dump(command))]))
    asyncio.run(_produce(topics.bootstrap, topics.alerts, [(alert.dedup_key.encode(), dump(alert))]))
    root = str(tmp_path / "wh")
    config = SinkConfig(topics.bootstrap, root, prefix=topics.prefix, group_id="wh-test", batch_rows=700)
    stats = asyncio.run(Sink(config).run(idle_seconds=3, max_seconds=90))
    assert stats.rejected == 1
    got = _totals(root)
    assert (got["n"], got["ids"]) == (len(events), len(events))
    assert got["cost"] == sum((e.cost_usd for e in events), Decimal(0))  # to the cent, and beyond
    assert stats.files > 4  # batches by size: several files per partition
    cat = Catalog(root)
    assert [r["command_id"] for r in cat.query("SELECT command_id FROM commands")] == [command.command_id]
    assert cat.query("SELECT alert_id, state FROM alerts") == [{"alert_id": alert.alert_id, "state": "alert"}]
    letter = asyncio.run(_first_dead_letter(topics.bootstrap, topics.dlq))
    assert letter.source_topic == topics.priced and "event" in letter.reason
    # a second run finds the offsets committed: nothing new, nothing written twice
    again = asyncio.run(Sink(config).run(idle_seconds=2, max_seconds=60))
    assert (again.rows, again.files) == (0, 0)
    assert Catalog(root).query("SELECT count(*) AS n FROM raw_events")[0]["n"] == len(events)


async def _first_dead_letter(bootstrap: str, topic: str) -> DeadLetter:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=20)
        return DeadLetter.model_validate_json(record.value)
    finally:
        await consumer.stop()


def _start_sink(topics: Any, root: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AGENTLEDGER_KAFKA_BOOTSTRAP": topics.bootstrap,
        "AGENTLEDGER_TOPIC_PREFIX": topics.prefix,
        "AGENTLEDGER_WAREHOUSE_URI": root,
    }
    cmd = [
        sys.executable,
        "-m",
        "agentledger",
        "sink",
        "--batch-rows",
        "400",
        "--batch-seconds",
        "0.5",
        *extra,
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_files(root: str, more_than: int, timeout: float) -> int:
    store, deadline = Store(root), time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = len(store.files("events"))
        if count > more_than:
            return count
        time.sleep(0.05)
    raise AssertionError(f"no more than {more_than} files after {timeout}s")


def _visible_files_are_whole(root: str) -> None:
    for f in Store(root).files("events"):
        meta = pq.read_metadata(f.path)  # raises on a truncated file (no footer)
        assert pq.read_table(f.path).num_rows == meta.num_rows > 0


def test_sigkill_mid_batch_then_restart_keeps_every_event_once(topics: Any, tmp_path: Path) -> None:
    # enough that the sink cannot finish between two polls (it writes ~200k events/s)
    records, events = _priced_records(6000, seed=47)  # about 42k events
    asyncio.run(_produce(topics.bootstrap, topics.priced, records))
    root = str(tmp_path / "wh")
    seen = 0
    for _ in range(2):  # kill it twice, each time while it is writing
        proc = _start_sink(topics, root)
        try:
            seen = _wait_for_files(root, seen, timeout=60)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        _visible_files_are_whole(root)
    got = _totals(root)
    assert got["n"] < len(events)  # it really was stopped half way
    proc = _start_sink(topics, root, "--once", "--idle", "3")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    _visible_files_are_whole(root)
    got = _totals(root)
    assert (got["n"], got["ids"]) == (len(events), len(events))
    assert got["cost"] == sum((e.cost_usd for e in events), Decimal(0))
