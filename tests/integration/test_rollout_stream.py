"""A rollout as a user runs it: `agentledger rollout start`, a real `agentledger health` worker on
the real broker, and a real Guard picking each task's version from the route commands.

A version as good as the baseline goes 5 → 25 → 50 → 100 % by itself (the default steps), every
task keeps one version, and the shares seen at each step are within binomial error; a version
costing twice as much is rolled back at the 5 % step and the warehouse-style count of tasks that
saw it is reported; a controller restarted mid-rollout goes on at its step.
"""

from __future__ import annotations

import asyncio
import math
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from _health_harness import health_env, start_health, stop_health
from aiokafka import AIOKafkaProducer

from agentledger import topics as specs
from agentledger.collectors import Guard
from agentledger.events import (
    ControlCommand,
    PricedEvent,
    SpanEvent,
    SpanKind,
    SpanStatus,
    UsageEvent,
)
from agentledger.wire import encode_envelope, record_timestamp_ms

CONFIG = {"canary": {"task_idle_s": 1, "min_tasks": 30, "promote_min_tasks": 150, "eval_interval_s": 1}}


class Health:
    def __init__(self, bootstrap: str, prefix: str, tmp: Path) -> None:
        self.bootstrap, self.prefix, self.tmp = bootstrap, prefix, tmp
        self.env = health_env(bootstrap, prefix, tmp / "home")
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        config = self.tmp / "policy.yaml"
        config.write_text(yaml.safe_dump(CONFIG))
        self.runs += 1
        log = self.tmp / f"health-{self.runs}.log"
        self.proc = start_health(self.env, config, log, "--datadir", str(self.tmp / "faust"))

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None:
            stop_health(self.proc, kill)
            self.proc = None

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "agentledger", "rollout", *args], env=self.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout


@pytest.fixture(scope="module")
def health(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Health]:
    from agentledger.admin import create_topics

    prefix = f"r{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    h = Health(kafka_bootstrap, prefix, tmp_path_factory.mktemp("rollout"))
    h.start()
    try:
        yield h
    finally:
        h.stop()


def _task(agent: str, version: str, cost: Decimal, ts: datetime, trace: str) -> tuple[PricedEvent, SpanEvent]:
    span = uuid.uuid4().hex[:16]
    cost = cost.quantize(Decimal("0.000001"))
    common: dict[str, Any] = {"ts": ts, "tenant": "acme", "agent": agent, "agent_version": version,
                              "trace_id": trace, "span_id": span}  # fmt: skip
    usage = UsageEvent(event_id=f"ro-{uuid.uuid4().hex[:20]}", provider="openai", model="gpt-4o",
                       input_tokens=1000, output_tokens=100, **common)  # fmt: skip
    spanev = SpanEvent(event_id=f"ro-{uuid.uuid4().hex[:20]}", name="chat", kind=SpanKind.LLM,
                       start=ts - timedelta(milliseconds=300), end=ts, status=SpanStatus.OK, provider="openai",
                       model="gpt-4o", **common)  # fmt: skip
    return PricedEvent(event=usage, cost_usd=cost, priced=True, price_source="test"), spanev


class Traffic:
    """Tasks of one agent: each asks the Guard for its version, then reports its cost and span
    (priced envelopes and event envelopes, as the budget worker and the agents would)."""

    def __init__(self, h: Health, guard: Guard, agent: str, costs: dict[str, Decimal]) -> None:
        self.h, self.guard, self.agent, self.costs = h, guard, agent, costs
        self.rnd = random.Random(agent)
        self.seen: list[tuple[str, str, float]] = []  # (trace, version, weight in force)
        self.commands: list[ControlCommand] = []

    def weight(self) -> float:
        cmd = self.guard.rollout(self.agent, "acme")
        return cmd.params.weight or 0.0 if cmd else 0.0

    async def run(self, producer: AIOKafkaProducer, until: Any, timeout: float) -> None:
        key = f"acme/{self.agent}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until():
            now = datetime.now(UTC)
            priced, spans = [], []
            for _ in range(10):
                trace = uuid.UUID(int=self.rnd.getrandbits(128)).hex
                version = self.guard.version(self.agent, "acme", trace) or "v1"
                assert self.guard.version(self.agent, "acme", trace) in (version, None)  # sticky
                self.seen.append((trace, version, self.weight()))
                cost = self.costs[version] * Decimal(self.rnd.uniform(0.8, 1.2))
                p, s = _task(self.agent, version, cost, now, trace)
                priced.append(p)
                spans.append(s)
            ts_ms = record_timestamp_ms(int(now.timestamp() * 1000), int(time.time() * 1000))
            await producer.send_and_wait(self.h.prefix + specs.PRICED.name, encode_envelope(key, priced),
                                         key=key.encode(), timestamp_ms=ts_ms)  # fmt: skip
            await producer.send_and_wait(self.h.prefix + specs.EVENTS.name, encode_envelope(key, spans),
                                         key=key.encode(), timestamp_ms=ts_ms)  # fmt: skip
            await asyncio.sleep(0.25)


async def _drive(
    h: Health, guard: Guard, agent: str, costs: dict[str, Decimal], done: Any, timeout: float
) -> Traffic:
    traffic = Traffic(h, guard, agent, costs)
    producer = AIOKafkaProducer(bootstrap_servers=h.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await traffic.run(producer, lambda: done(traffic), timeout)
    finally:
        await producer.stop()
    return traffic


def _guard(h: Health) -> Guard:
    guard = Guard(h.bootstrap, h.prefix + specs.CONTROL.name)
    assert guard.wait_ready(30)
    return guard


def _route(guard: Guard, agent: str) -> ControlCommand | None:
    cmd: ControlCommand | None = guard.rollout(agent, "acme")
    return cmd


def test_a_good_version_goes_to_everyone_step_by_step(health: Health) -> None:
    out = health.cli("start", "acme/writer", "--baseline", "v1", "--candidate", "v2", "--min-tasks", "30",
                     "--min-s", "3")  # fmt: skip
    assert "5% -> 25% -> 50% -> 100%" in out
    guard = _guard(health)
    try:
        steps: list[float] = []

        def done(t: Traffic) -> bool:
            cmd = _route(guard, "writer")
            if cmd is not None and (not steps or steps[-1] != cmd.params.weight):
                steps.append(cmd.params.weight or 0.0)
            return cmd is not None and cmd.params.weight == 1.0

        traffic = asyncio.run(
            _drive(health, guard, "writer", {"v1": Decimal("0.01"), "v2": Decimal("0.01")}, done, 240)
        )
        assert steps[-1] == 1.0, f"not promoted in time; steps seen {steps}"
        assert steps == [0.05, 0.25, 0.5, 1.0]
        # every task kept its version (the Guard was asked twice per task: same answer)
        by_trace: dict[str, set[str]] = {}
        for trace, version, _ in traffic.seen:
            by_trace.setdefault(trace, set()).add(version)
        assert all(len(v) == 1 for v in by_trace.values())
        # the share of tasks on v2 at each step is within binomial error of its weight
        for w in (0.05, 0.25, 0.5):
            at = [v for _, v, weight in traffic.seen if weight == w]
            assert len(at) >= 30
            share = sum(v == "v2" for v in at) / len(at)
            assert abs(share - w) <= 4 * math.sqrt(w * (1 - w) / len(at)), (w, share, len(at))
        assert "promoted" in (_route(guard, "writer") or ControlCommand).reason  # type: ignore[union-attr]
        status = health.cli("status")
        assert "acme/writer" in status and "100%" in status
    finally:
        guard.close()


def test_a_version_costing_twice_as_much_is_rolled_back_at_the_first_step(health: Health) -> None:
    health.cli("start", "acme/editor", "--baseline", "v1", "--candidate", "v2", "--min-tasks", "200",
               "--min-s", "3")  # fmt: skip
    guard = _guard(health)
    try:

        def done(t: Traffic) -> bool:
            cmd = _route(guard, "editor")
            return cmd is not None and cmd.params.weight == 0.0

        traffic = asyncio.run(
            _drive(health, guard, "editor", {"v1": Decimal("0.01"), "v2": Decimal("0.02")}, done, 240)
        )
        cmd = _route(guard, "editor")
        assert cmd is not None and cmd.params.weight == 0.0, "not rolled back in time"
        assert cmd.params.step == 0 and "cost per task" in cmd.reason
        exposed = sum(v == "v2" for _, v, _ in traffic.seen)
        assert 30 <= exposed < 0.12 * len(traffic.seen)  # the gate's minimum, and about 5 % of tasks
        # after the rollback every new task goes to v1
        assert all(guard.version("editor", "acme", uuid.uuid4().hex) == "v1" for _ in range(50))
    finally:
        guard.close()


def test_a_restarted_controller_goes_on_at_its_step(health: Health) -> None:
    health.cli("start", "acme/critic", "--baseline", "v1", "--candidate", "v2", "--steps", "20,50,100",
               "--min-tasks", "40", "--min-s", "3")  # fmt: skip
    guard = _guard(health)
    try:
        costs = {"v1": Decimal("0.01"), "v2": Decimal("0.01")}

        def at_second_step(t: Traffic) -> bool:
            cmd = _route(guard, "critic")
            return cmd is not None and cmd.params.step == 1

        asyncio.run(_drive(health, guard, "critic", costs, at_second_step, 240))
        before = _route(guard, "critic")
        assert before is not None and before.params.step == 1
        health.stop(kill=True)
        health.start()

        def promoted(t: Traffic) -> bool:
            cmd = _route(guard, "critic")
            return cmd is not None and cmd.params.weight == 1.0

        asyncio.run(_drive(health, guard, "critic", costs, promoted, 240))
        after = _route(guard, "critic")
        assert after is not None and after.params.weight == 1.0 and after.params.step == 2
        # it went on from the second step: no route of this rollout back at the first step after the restart
        assert after.ts > before.ts
    finally:
        guard.close()
