"""Issue #13 on a real broker: an oversize event cannot take its neighbours down, dedupe is per
tenant, back-dated events still count toward budgets, and deleting a policy clears its live
budget state."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from _streams_harness import Worker, consume, produce, start_worker, truth_cost

from agentledger.api.kafka import read_compacted
from agentledger.events import BudgetStatus, ControlCommand, DeadLetter, Policy, Selector, UsageEvent, Window
from agentledger.streams.policytopic import delete_policy, put_policies
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.sink import Sink, SinkConfig
from agentledger.wire import encode_envelope, encode_envelope_dicts


def usage(
    event_id: str, tenant: str = "acme", ts: datetime | None = None, tokens: int = 10_000
) -> UsageEvent:
    return UsageEvent(event_id=event_id, ts=ts or datetime.now(UTC) - timedelta(seconds=5), tenant=tenant,
                      agent="planner", trace_id="ab" * 16, span_id="cd" * 8, provider="openai", model="gpt-4o",
                      input_tokens=tokens, output_tokens=0)  # fmt: skip


def policy(policy_id: str, limit: str, window: Window = Window.CALENDAR_DAY, tenant: str = "*") -> Policy:
    return Policy(policy_id=policy_id, selector=Selector(tenant=tenant, per="tenant"), window=window,
                  limit=Decimal(limit), hard_action="kill")  # fmt: skip


def put(topics: Any, *policies: Policy) -> None:
    asyncio.run(put_policies(topics.bootstrap, topics.prefix, list(policies)))


def budgets(topics: Any) -> dict[str, BudgetStatus]:
    """The live budgets as ``GET /v1/budgets`` reads them (the API's compacted view: the latest
    value per key, a tombstone removes the key)."""
    return asyncio.run(read_compacted(topics.bootstrap, topics.budgets, BudgetStatus.model_validate_json))


def wait_budget(topics: Any, key: str, spend: Decimal, timeout: float = 20) -> dict[str, BudgetStatus]:
    deadline = time.monotonic() + timeout
    seen = budgets(topics)
    while time.monotonic() < deadline and (key not in seen or seen[key].spend != spend):
        time.sleep(0.5)
        seen = budgets(topics)
    return seen


def warehouse(topics: Any, tmp_path: Path) -> Catalog:
    root = str(tmp_path / "wh")
    config = SinkConfig(topics.bootstrap, root, prefix=topics.prefix, group_id="wh-hardening", batch_rows=100)
    asyncio.run(Sink(config).run(idle_seconds=3, max_seconds=60))
    return Catalog(root)


def stopped(worker: Worker) -> None:
    assert worker.proc.poll() is None, f"worker died:\n{worker.log.read_text()[-3000:]}"
    worker.kill()


def test_an_oversize_event_goes_to_the_dlq_and_its_neighbours_count(topics: Any, tmp_path: Path) -> None:
    put(topics, policy("acme-day", "100"))
    normal = [usage("big-nb-0001"), usage("big-nb-0003")]
    huge = usage("big-huge-002").model_dump(mode="json")
    huge["attributes"] = {"blob": "x" * 1_000_000}  # from an old client: the edge caps it today
    items = [normal[0].model_dump(mode="json"), huge, normal[1].model_dump(mode="json")]
    raw = encode_envelope_dicts("acme/planner", items)
    worker = start_worker(topics, tmp_path / "worker")
    try:
        produce(topics.bootstrap, topics.events, [(b"acme/planner", raw)])
        worker.wait_events(2)
        one = truth_cost(normal[0], "openai")
        status = wait_budget(topics, "acme-day|tenant/acme", 2 * one)["acme-day|tenant/acme"]
        assert status.spend == 2 * one  # the budget counts the two that were published
        time.sleep(1.0)
        assert worker.stats()["counters"]["events"] == 2
    finally:
        stopped(worker)
    letters = [
        DeadLetter.model_validate_json(r.value) for r in consume(topics.bootstrap, topics.dlq, until=1)
    ]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.reason and letter.index == 1  # why, and which event of the envelope
    assert (letter.source_topic, letter.source_offset) == (topics.events, 0)
    assert base64.b64decode(letter.raw_b64).startswith(b'{"v":1,"event_id":"big-huge-002"')
    cat = warehouse(topics, tmp_path)
    rows = cat.query("SELECT event_id, cost_usd FROM events ORDER BY event_id")
    assert rows == [
        {"event_id": "big-nb-0001", "cost_usd": one},
        {"event_id": "big-nb-0003", "cost_usd": one},
    ]


def test_two_tenants_may_use_the_same_event_id(topics: Any, tmp_path: Path) -> None:
    acme, globex = usage("shared-id-0001", "acme"), usage("shared-id-0001", "globex", tokens=20_000)
    worker = start_worker(topics, tmp_path / "worker")
    try:
        produce(topics.bootstrap, topics.events, [(b"acme/planner", encode_envelope("acme/planner", [acme]))])
        produce(
            topics.bootstrap,
            topics.events,
            [(b"globex/planner", encode_envelope("globex/planner", [globex]))],
        )
        produce(topics.bootstrap, topics.events, [(b"acme/planner", encode_envelope("acme/planner", [acme]))])
        worker.wait_events(2)
        time.sleep(1.5)
        stats = worker.stats()["counters"]
        assert (stats["events"], stats.get("duplicates", 0)) == (2, 1)  # acme's replay is still a duplicate
        assert Decimal(worker.rollup("tenant/acme")["calendar_day"]["cost_usd"]) == truth_cost(acme, "openai")
        assert Decimal(worker.rollup("tenant/globex")["calendar_day"]["cost_usd"]) == truth_cost(
            globex, "openai"
        )
    finally:
        stopped(worker)
    cat = warehouse(topics, tmp_path)
    rows = cat.query("SELECT tenant, event_id, cost_usd FROM events ORDER BY tenant")
    assert [(r["tenant"], r["event_id"]) for r in rows] == [
        ("acme", "shared-id-0001"),
        ("globex", "shared-id-0001"),
    ]
    assert rows[1]["cost_usd"] == truth_cost(globex, "openai")


def test_back_dated_events_count_at_arrival_and_the_warehouse_keeps_both_times(
    topics: Any, tmp_path: Path
) -> None:
    put(topics, policy("hourly", "5", window=Window.HOUR, tenant="acme"))
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    events = [
        usage(f"late-{i:04d}", ts=two_hours_ago + timedelta(seconds=i), tokens=1_000_000) for i in range(3)
    ]
    assert truth_cost(events[0], "openai") == Decimal("2.5")
    worker = start_worker(topics, tmp_path / "worker")
    try:
        before = datetime.now(UTC)
        produce(topics.bootstrap, topics.events, [(b"acme/planner", encode_envelope("acme/planner", events))])
        worker.wait_events(3)
        after = datetime.now(UTC)
        deadline = time.monotonic() + 15
        kills: list[ControlCommand] = []
        while time.monotonic() < deadline and not kills:
            kills = [c for c in (ControlCommand.model_validate_json(r.value) for r in
                                 consume(topics.bootstrap, topics.control, timeout=1)) if c.policy_id]  # fmt: skip
        assert [(c.action.value, c.scope.key, c.policy_id) for c in kills] == [
            ("kill", "tenant/acme", "hourly")
        ]
        assert budgets(topics)["hourly|tenant/acme"].spend == Decimal("7.5")
    finally:
        stopped(worker)
    rows = warehouse(topics, tmp_path).query(
        "SELECT event_id, ts, received_ts, time_flag FROM events ORDER BY event_id"
    )
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]
    for row, ev in zip(rows, events, strict=True):
        assert row["ts"] == ev.ts  # billed at its own time
        assert before - timedelta(seconds=1) <= row["received_ts"] <= after + timedelta(seconds=1)
        assert row["time_flag"] == "late"


def test_deleting_a_policy_clears_its_live_budgets(topics: Any, tmp_path: Path) -> None:
    put(topics, policy("gone", "100"), policy("kept", "100"))
    worker = start_worker(topics, tmp_path / "worker")
    try:
        events = [usage("del-0001", "acme"), usage("del-0002", "globex")]
        for ev in events:
            produce(topics.bootstrap, topics.events, [(ev.key.encode(), encode_envelope(ev.key, [ev]))])
        worker.wait_events(2)
        seen = wait_budget(topics, "gone|tenant/globex", truth_cost(events[1], "openai"))
        assert set(seen) == {
            "gone|tenant/acme",
            "gone|tenant/globex",
            "kept|tenant/acme",
            "kept|tenant/globex",
        }
        asyncio.run(delete_policy(topics.bootstrap, topics.prefix, "gone"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(seen) > 2:
            time.sleep(0.5)
            seen = budgets(topics)
        assert set(seen) == {"kept|tenant/acme", "kept|tenant/globex"}
        assert "gone" not in worker.stats()["policies"]
    finally:
        stopped(worker)
