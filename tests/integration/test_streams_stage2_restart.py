"""A budget worker SIGKILLed and restarted (real broker, worker subprocesses): its loop detector
picks a trace up where it was and kills the loop at the same call N, an event sent again after
the crash (its first copy committed before it) is counted once, and a screened trace kill is
not replaced by that trace's budget evaluated after the restart (docs/adr/0011, addendum)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from _streams_harness import Worker, consume, envelopes, produce, start_worker
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from agentledger import topics as topic_specs
from agentledger.events import ControlCommand, ScreenEvent, ToolCallEvent, UsageEvent

LOOPS = """
policies: []
loops:
  repeat_calls: 6
  repeat_window_s: 300
canary: {not: ours}
"""
TRACE = "d" * 31 + "1"


async def _lag(bootstrap: str, group: str, names: list[str]) -> dict[tuple[str, int], int]:
    """Per partition of ``names``: records past the group's committed offset."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await c.start()
    try:
        tps = [TopicPartition(n, p) for n in names for p in range(topic_specs.EVENTS.partitions)]
        ends = await c.end_offsets(tps)
    finally:
        await c.stop()
    done = {(tp.topic, tp.partition): m.offset for tp, m in committed.items()}
    return {
        (tp.topic, tp.partition): end - max(done.get((tp.topic, tp.partition), 0), 0)
        for tp, end in ends.items()
    }


def wait_committed(topics, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Until the worker committed everything on the events and scope-deltas topics (so
    nothing before the crash is replayed: the state must come from the changelog)."""
    names = [topics.events, topics.prefix + topic_specs.SCOPE_DELTAS.name]
    deadline = time.monotonic() + timeout
    lag: dict[tuple[str, int], int] = {}
    while time.monotonic() < deadline:
        lag = asyncio.run(_lag(topics.bootstrap, topics.prefix + "agentledger-worker", names))
        if lag and not any(lag.values()):
            return
        time.sleep(0.3)
    raise AssertionError(f"not committed after {timeout}s: {lag}")


def call(i: int, t0: datetime) -> ToolCallEvent:
    return ToolCallEvent(event_id=f"call-{i:04d}", ts=t0 + timedelta(seconds=i), tenant="acme", agent="planner",
                         trace_id=TRACE, span_id=f"{i + 1:016x}", tool="search", args_hash="f" * 16)  # fmt: skip


def wait_drained(worker: Worker, records: int, timeout: float = 60.0) -> dict[str, int]:
    """Until the restarted worker took ``records`` events records and applied every delta."""
    deadline = time.monotonic() + timeout
    c: dict[str, int] = {}
    while time.monotonic() < deadline:
        c = worker.stats()["counters"]
        if c.get("records", 0) >= records and c.get("deltas_in", 0) >= c.get("deltas_out", 0):
            return c
        time.sleep(0.2)
    raise AssertionError(f"worker saw {c} after {timeout}s")


def test_a_worker_killed_mid_loop_kills_the_loop_at_the_same_call_after_restart(
    topics, tmp_path: Path
) -> None:
    cfg = tmp_path / "policies.yaml"
    cfg.write_text(LOOPS)
    t0 = datetime.now(UTC) - timedelta(seconds=60)
    worker = start_worker(topics, tmp_path, "--config", str(cfg))
    try:
        produce(topics.bootstrap, topics.events, envelopes([call(i, t0) for i in range(3)], size=1))
        worker.wait_events(3)
        wait_committed(topics)
        worker.kill(signal.SIGKILL)  # three of six identical calls in, mid-loop
        worker = start_worker(topics, tmp_path, "--config", str(cfg))
        produce(topics.bootstrap, topics.events, envelopes([call(i, t0) for i in range(3, 9)], size=1))
        wait_drained(worker, 6)
    finally:
        worker.kill()
    cmds = [ControlCommand.model_validate_json(r.value) for r in consume(topics.bootstrap, topics.control)]
    assert [(c.scope.key, c.action.value, c.params.kill_reason, c.cause_event_id) for c in cmds] == [
        (f"trace/acme/{TRACE}", "kill", "loop", "call-0005")  # the 6th call, as with no crash
    ]


def usage(i: int) -> UsageEvent:
    # gpt-4o: $2.50 per million input tokens -> $2.50 each
    return UsageEvent(event_id=f"usage-{i:04d}", ts=datetime.now(UTC) - timedelta(seconds=5), tenant="acme",
                      agent="writer", trace_id="e" * 32, span_id=f"{i + 1:016x}", provider="openai",
                      model="gpt-4o", input_tokens=1_000_000, output_tokens=0)  # fmt: skip


def test_a_duplicate_whose_copies_straddle_a_crash_is_counted_once(topics, tmp_path: Path) -> None:
    first, second, third = usage(1), usage(2), usage(3)
    worker = start_worker(topics, tmp_path)
    try:
        produce(topics.bootstrap, topics.events, envelopes([first, second]))
        worker.wait_events(2)
        wait_committed(topics)
        worker.kill(signal.SIGKILL)
        worker = start_worker(topics, tmp_path)
        # the client's retry of the first event, after the crash, beside a new one
        produce(topics.bootstrap, topics.events, envelopes([first, third]))
        counters = wait_drained(worker, 1)
        day = worker.rollup("agent/acme/writer")["calendar_day"]
    finally:
        worker.kill()
    assert (day["calls"], Decimal(day["cost_usd"])) == (3, Decimal("7.5")), str(counters)
    assert counters.get("duplicates") == 1
    priced = [r for r in consume(topics.bootstrap, topics.prefix + topic_specs.PRICED.name)]
    ids = [e["event"]["event_id"] for r in priced for e in __import__("orjson").loads(r.value)["events"]]
    assert sorted(ids) == ["usage-0001", "usage-0002", "usage-0003"]  # the warehouse gets it once too


TRACE_BUDGET = """
policies:
  - policy_id: per-trace
    selector: {per: trace}
    window: calendar_day
    limit: 20
    thresholds:
      - {at: 0.25, action: throttle, rate_per_s: 1}
    hard_action: kill
"""
SCREENED = "5" * 32


def test_a_screened_kill_holds_when_the_traces_budget_throttles_after_a_restart(
    topics, tmp_path: Path
) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text(TRACE_BUDGET)
    env = dict(
        os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=topics.bootstrap, AGENTLEDGER_TOPIC_PREFIX=topics.prefix
    )
    subprocess.run([sys.executable, "-m", "agentledger", "policies", "apply", str(policies)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    key = f"admission.budget:trace/acme/{SCREENED}"
    t0 = datetime.now(UTC) - timedelta(seconds=10)
    verdict = ScreenEvent(event_id="screen-0001", ts=t0, tenant="acme", agent="writer", trace_id=SCREENED,
                          span_id="b" * 16, channel="tool", source="fetch", detector="rules+linear-v1",
                          score=0.93, flagged=True, action="kill")  # fmt: skip
    spend = [
        UsageEvent(
            event_id=f"usage-{i:04d}",
            ts=t0 + timedelta(seconds=1),
            tenant="acme",
            agent="writer",
            trace_id=SCREENED,
            span_id=f"{i + 1:016x}",
            provider="openai",
            model="gpt-4o",
            input_tokens=1_000_000,
            output_tokens=0,
        )
        for i in range(3)
    ]  # $7.50 of the trace's $20: past its 25 % throttle
    worker = start_worker(topics, tmp_path)
    try:
        produce(topics.bootstrap, topics.events, envelopes([verdict]))
        worker.wait_events(1)
        wait_committed(topics)
        worker.kill(signal.SIGKILL)
        worker = start_worker(topics, tmp_path)
        produce(topics.bootstrap, topics.events, envelopes(spend, size=1))
        wait_drained(worker, 3)
        day = worker.rollup(f"trace/acme/{SCREENED}")["calendar_day"]
    finally:
        worker.kill()
    assert Decimal(day["cost_usd"]) == Decimal("7.5")  # the budget was evaluated on that spend
    cmds = [ControlCommand.model_validate_json(r.value) for r in consume(topics.bootstrap, topics.control)
            if r.key.decode() == key]  # fmt: skip
    assert [(c.action.value, c.params.kill_reason, c.cause_event_id) for c in cmds] == [
        ("kill", "other", "screen-0001")  # the throttle never replaced it
    ]


def test_start_offsets_name_every_partition_with_where_the_group_resumes(topics) -> None:  # type: ignore[no-untyped-def]
    """What a worker reads at each assignment (the dedupe read-back and the refetch of records
    Faust drops start from it); it used to come back empty."""
    from agentledger.streams.worker.app import WorkerConfig, start_offsets

    records = [(b"acme/writer", b"x"), (b"acme/writer", b"y"), (b"acme/writer", b"z")]
    produce(topics.bootstrap, topics.events, records)
    part = next(r.partition for r in consume(topics.bootstrap, topics.events, until=3))
    group = topics.prefix + "someone"

    async def commit() -> None:
        c = AIOKafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            tp = TopicPartition(topics.events, part)
            c.assign([tp])
            await c.commit({tp: 2})
        finally:
            await c.stop()

    asyncio.run(commit())
    cfg = WorkerConfig(bootstrap=topics.bootstrap, prefix=topics.prefix)
    got = asyncio.run(start_offsets(cfg, group, topics.events))
    want = dict.fromkeys(range(topic_specs.EVENTS.partitions), 0) | {part: 2}
    assert got == want
