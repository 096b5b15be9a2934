"""Issue #15 on real brokers: ``agentledger worker`` as several processes (the two-stage worker,
docs/adr/0011). Every scope's live total equals the seeded generator's truth to the cent
whichever process holds it; a tenant budget fed by agents on different partitions kills the
tenant; a loop in a trace whose calls come from agents on different partitions is killed after
N calls."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from _streams_harness import Worker, consume, envelopes, generate, produce, start_worker
from aiokafka.partitioner import DefaultPartitioner
from test_streams_budgets import apply, calls, commands

from agentledger import topics as topic_specs
from agentledger.events import Action, AlertEvent, ScreenEvent, ToolCallEvent
from agentledger.streams.worker.deltas import partition_for
from agentledger.wire import encode_envelope


def partition_of(key: str, partitions: int) -> int:
    """The events partition the producer's default partitioner gives a record key."""
    parts = list(range(partitions))
    return int(DefaultPartitioner()(key.encode(), parts, parts))


def start_workers(topics: Any, tmp: Path, n: int, *args: str) -> list[Worker]:
    workers: list[Worker] = []
    try:
        for i in range(n):
            workers.append(start_worker(topics, tmp / f"w{i}", *args, timeout=90))
    except BaseException:
        for w in workers:
            w.kill()
        raise
    return workers


def settle(workers: list[Worker], partitions: int, timeout: float = 90.0) -> None:
    """Until every scope-deltas partition is held by exactly one process."""
    deadline = time.monotonic() + timeout
    held: list[list[int]] = []
    while time.monotonic() < deadline:
        held = [w.stats()["held"] for w in workers]
        flat = [p for h in held for p in h]
        if sorted(flat) == list(range(partitions)) and all(held):
            return
        time.sleep(0.3)
    raise AssertionError(f"partitions never settled: {held}")


def drain(workers: list[Worker], events: int, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Until stage one counted ``events`` over all processes and stage two applied every
    scope-deltas record sent, with nothing left pending."""
    deadline = time.monotonic() + timeout
    stats: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        for w in workers:
            assert w.proc.poll() is None, f"worker died:\n{w.log.read_text()[-3000:]}"
        stats = [w.stats() for w in workers]
        c = [s["counters"] for s in stats]
        done = sum(x.get("events", 0) for x in c) >= events
        applied = sum(x.get("deltas_in", 0) for x in c) >= sum(x.get("deltas_out", 0) for x in c)
        if done and applied and not any(s["pending"] for s in stats):
            time.sleep(1.0)  # one more flush interval, then check again
            again = [w.stats()["counters"] for w in workers]
            if sum(x.get("deltas_in", 0) for x in again) == sum(x.get("deltas_in", 0) for x in c):
                return stats
        time.sleep(0.3)
    raise AssertionError(f"never drained: {[s.get('counters') for s in stats]}")


def owner_answer(workers: list[Worker], scope: str, client: httpx.Client | None = None) -> dict[str, Any]:
    """The /rollups/ answer of the one process that holds the scope."""
    get = client.get if client is not None else httpx.get
    answers = [get(w.url("/rollups/"), params={"scope": scope}, timeout=10).json() for w in workers]
    held = [a for a in answers if a["held"]]
    assert len(held) == 1, (scope, [(a["partition"], a["held"]) for a in answers])
    return dict(held[0])


def check_truth(workers: list[Worker], truth: Any) -> set[int]:
    """Every scope against the truth; returns the partitions the scopes were found on."""
    kinds = {k.split("/")[0] for k in truth.cost}
    assert {"tenant", "agent", "trace", "user", "conversation", "workflow", "provider"} <= kinds
    found: set[int] = set()
    with httpx.Client() as client:
        for scope, cost in truth.cost.items():
            got = owner_answer(workers, scope, client)
            found.add(got["partition"])
            check_scope(scope, cost, got, truth)
    return found


def check_scope(scope: str, cost: Decimal, got: dict[str, Any], truth: Any) -> None:
    for w in ("1h", "24h", "calendar_day", "calendar_month"):
        assert Decimal(got["windows"][w]["cost_usd"]) == cost, (scope, w)
        assert got["windows"][w]["tokens"] == truth.tokens[scope], (scope, w)
        assert got["windows"][w]["calls"] == truth.calls[scope], (scope, w)


def run_truth(topics: Any, tmp: Path, processes: int, partitions: int, *args: str) -> None:
    truth = generate(seed=15, traces=60, people=True)
    keys = {e.key for e in truth.events}
    assert len({partition_of(k, partitions) for k in keys}) >= min(3, partitions)
    # traces whose agents sit on different events partitions
    spread = {}
    for e in truth.events:
        spread.setdefault((e.tenant, e.trace_id), set()).add(partition_of(e.key, partitions))
    assert sum(len(p) > 1 for p in spread.values()) >= 5
    workers = start_workers(topics, tmp, processes, *args)
    try:
        settle(workers, partitions)
        records = envelopes(truth.events, size=20)
        produce(topics.bootstrap, topics.events, records + records[:4])  # 4 envelopes sent twice
        stats = drain(workers, len(truth.events))
        counted = sum(s["counters"].get("events", 0) for s in stats)
        assert counted == len(truth.events)  # the copies were not counted
        # the scopes are spread over every partition, each answered by the process holding it
        assert check_truth(workers, truth) == set(range(partitions))
    finally:
        for w in workers:
            w.kill()


def test_truth_at_two_worker_processes(topics, tmp_path: Path) -> None:
    run_truth(topics, tmp_path, 2, topic_specs.EVENTS.partitions)


def test_a_tenant_budget_over_agents_on_different_partitions_kills_the_tenant(topics, tmp_path: Path) -> None:
    parts = topic_specs.EVENTS.partitions
    agents = ["planner", "coder", "critic", "writer", "tester"]
    a = "planner"
    b = next(x for x in agents if partition_of(f"globex/{x}", parts) != partition_of(f"globex/{a}", parts))
    apply(topics, tmp_path, agent_limit="100")  # globex-cap: $0.30 per tenant and calendar day
    workers = start_workers(topics, tmp_path, 2)
    try:
        settle(workers, parts)
        first, second = calls("globex", a, 5, 0), calls("globex", b, 5, 100)  # $0.035 each: $0.175 apiece
        produce(topics.bootstrap, topics.events, envelopes(first, size=1) + envelopes(second, size=1))
        drain(workers, 10)
        got = commands(topics)
        kills = [c for c in got.get("admission.budget:tenant/globex", []) if c.action is Action.KILL]
        assert len(kills) == 1, got
        assert kills[0].policy_id == "globex-cap"
        assert not any(k.startswith("agent/globex") for k in got)  # neither agent alone is near its cap
        owner = owner_answer(workers, "tenant/globex")
        assert Decimal(owner["windows"]["calendar_day"]["cost_usd"]) == Decimal("0.35")
    finally:
        for w in workers:
            w.kill()


def test_a_loop_in_a_trace_spanning_partitions_is_killed_after_n_calls(topics, tmp_path: Path) -> None:
    parts = topic_specs.EVENTS.partitions
    a, b = (
        "planner",
        next(
            x
            for x in ("coder", "critic", "writer")
            if partition_of(f"acme/{x}", parts) != partition_of("acme/planner", parts)
        ),
    )
    trace = "7" * 32
    t0 = datetime.now(UTC) - timedelta(seconds=5)

    def call(i: int) -> tuple[bytes | None, bytes | None]:
        agent = a if i % 2 == 0 else b
        ev = ToolCallEvent(event_id=f"loop-call-{i:04d}", ts=t0 + timedelta(milliseconds=100 * i), tenant="acme",
                           agent=agent, trace_id=trace, span_id=f"{i + 1:016x}", tool="search", args_hash="e" * 16)  # fmt: skip
        return (f"acme/{agent}".encode(), encode_envelope(f"acme/{agent}", [ev]))

    workers = start_workers(topics, tmp_path, 2)
    try:
        settle(workers, parts)
        produce(topics.bootstrap, topics.events, [call(i) for i in range(4)])  # repeat_calls is 5
        drain(workers, 4)
        assert f"admission.budget:trace/acme/{trace}" not in commands(topics)
        produce(topics.bootstrap, topics.events, [call(4)])
        drain(workers, 5)
        deadline = time.monotonic() + 10
        while (
            f"admission.budget:trace/acme/{trace}" not in (got := commands(topics))
            and time.monotonic() < deadline
        ):
            time.sleep(0.3)
        (kill,) = got[f"admission.budget:trace/acme/{trace}"]
        assert kill.action is Action.KILL and kill.params.kill_reason == "loop"
        assert kill.cause_event_id == "loop-call-0004"
    finally:
        for w in workers:
            w.kill()


def test_a_tool_flagged_by_agents_on_different_partitions_raises_one_quarantine_alert(
    topics, tmp_path: Path
) -> None:
    """Three traces' tool results flagged as injections, from two agents whose records sit on
    different events partitions (which two processes usually split): the source key's owner
    sees all three. Before, each process counted the verdicts of its own partitions in stage
    one, and neither reached 3 (this test failed on that code)."""
    parts = topic_specs.EVENTS.partitions
    a = "planner"
    b = next(
        x
        for x in ("coder", "critic", "writer")
        if partition_of(f"acme/{x}", parts) != partition_of(f"acme/{a}", parts)
    )
    t0 = datetime.now(UTC) - timedelta(seconds=5)

    def verdict(i: int, agent: str) -> tuple[bytes | None, bytes | None]:
        ev = ScreenEvent(event_id=f"scr-{i:04d}", ts=t0 + timedelta(seconds=i), tenant="acme", agent=agent,
                         trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", channel="tool", source="fetch",
                         detector="rules+linear-v2", score=0.9, flagged=True, action="record")  # fmt: skip
        return (f"acme/{agent}".encode(), encode_envelope(f"acme/{agent}", [ev]))

    workers = start_workers(topics, tmp_path, 2)
    try:
        settle(workers, parts)
        produce(topics.bootstrap, topics.events, [verdict(0, a), verdict(1, b), verdict(2, a)])
        drain(workers, 3)
        deadline = time.monotonic() + 10
        while not (
            alerts := [
                AlertEvent.model_validate_json(r.value) for r in consume(topics.bootstrap, topics.alerts)
            ]
        ):
            assert time.monotonic() < deadline, "no quarantine alert"
            time.sleep(0.3)
        assert [(x.rule, x.entity, x.figures["traces"]) for x in alerts] == [
            ("injection_source", "tool/fetch", 3)
        ]
    finally:
        for w in workers:
            w.kill()


# -- 1, 2 and 3 processes on the 3-node cluster, 6 partitions --------------------------------


@dataclasses.dataclass(frozen=True)
class WideTopics:
    bootstrap: str
    prefix: str

    @property
    def events(self) -> str:
        return self.prefix + topic_specs.EVENTS.name


@pytest.mark.faults
@pytest.mark.timeout(900)
@pytest.mark.parametrize("processes", [1, 2, 3])
def test_truth_at_any_count_on_the_3_node_cluster(kafka_cluster3, topic_prefix: str, tmp_path: Path,
                                                  processes: int) -> None:  # fmt: skip
    from agentledger.admin import create_topics

    _, state = kafka_cluster3
    wide = tuple(
        dataclasses.replace(s, partitions=6) if s.partitions == topic_specs.PARTITIONS else s
        for s in topic_specs.ALL
    )
    asyncio.run(create_topics(state.bootstrap, wide, prefix=topic_prefix))
    run_truth(WideTopics(state.bootstrap, topic_prefix), tmp_path, processes, 6, "--replication", "3")


def test_scope_keys_spread_over_partitions() -> None:
    """The hash the worker routes scopes with is stable and uses every partition."""
    keys = [f"agent/acme/a{i}" for i in range(200)]
    assert {partition_for(k, 6) for k in keys} == set(range(6))
    assert partition_for("policy/cap|tenant/acme", 6) == partition_for("tenant/acme", 6)


def test_sigkill_mid_stream_then_restart_totals_equal_the_truth_exactly(topics, tmp_path: Path) -> None:
    """Both stages replay after a SIGKILL; every delta carries its origin, so what a scope
    already holds is dropped: the totals come back to the truth, not above it (no duplicate
    events in the input, so stage one's memory dedupe plays no part)."""
    import signal
    import threading

    from aiokafka import AIOKafkaProducer

    truth = generate(seed=11, traces=200, people=True)
    records = envelopes(truth.events, size=8)

    async def produce_slowly() -> None:
        p = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, acks="all", enable_idempotence=True)
        await p.start()
        try:
            for i, (key, value) in enumerate(records):
                await (await p.send(topics.events, value=value, key=key))
                if i % 10 == 9:
                    await asyncio.sleep(0.05)
        finally:
            await p.stop()

    worker = start_worker(topics, tmp_path / "a")
    producer = threading.Thread(target=lambda: asyncio.run(produce_slowly()))
    producer.start()
    try:
        worker.wait_events(len(truth.events) // 3, timeout=90)
        worker.kill(signal.SIGKILL)
        producer.join(60)
        worker = start_worker(topics, tmp_path / "b")
        deadline = time.monotonic() + 240
        tenants = [k for k in truth.cost if k.startswith("tenant/")]
        progress = (-1, time.monotonic())
        while time.monotonic() < deadline:
            got = {t: Decimal(worker.rollup(t)["calendar_day"]["cost_usd"]) for t in tenants}
            if all(got[t] >= truth.cost[t] for t in tenants):
                break
            seen = worker.stats()["counters"].get("records", 0)
            if seen != progress[0]:
                progress = (seen, time.monotonic())
            elif time.monotonic() - progress[1] > 12:  # the supervisor's restart (docs/streams.md)
                worker.kill()
                worker = start_worker(topics, tmp_path / "c")
                progress = (-1, time.monotonic())
            time.sleep(0.5)
        drain([worker], 0)
        time.sleep(1.0)  # any replayed tail lands (and must be dropped)
        check_truth([worker], truth)  # every scope to the cent: nothing replayed counted twice
    finally:
        worker.kill()
        producer.join(10)
