"""`agentledger health` as several processes, and across restarts, on real brokers.

Each worker is a subprocess started as a user starts it (`agentledger health --config ...`),
nothing else set but the partition count the topics already have. We write envelopes to the
events topic and read what the workers publish on the control and alerts topics:

* errors of one provider coming from agents on four different partitions fail it over once,
  with all of their calls in the circuit's figures (circuits meet on the providers topic);
* a drift is detected after exactly as many scores as a fresh detector fed the same scores
  needs, also when the baseline was learnt before a restart (state in the changelog table);
* fault variant (3-node cluster): SIGKILL one of two workers mid-stream and restart it; a drift
  that begins right after is detected with the usual delay, the open circuit stays open, and
  no command is published twice.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from _health_harness import Tail, health_env, start_health
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from agentledger import topics as specs
from agentledger.events import (
    Action,
    AlertEvent,
    AlertState,
    ControlCommand,
    QualityEvent,
    SpanEvent,
    SpanKind,
    SpanStatus,
)
from agentledger.streams.health.drift import DriftDetector
from agentledger.streams.healthconfig import parse_health_config
from agentledger.wire import encode_envelope, record_timestamp_ms

CONFIG: dict[str, Any] = {
    "providers": {
        "fallbacks": {"openai": "anthropic"},
        "window_s": 60,
        "min_volume": 20,
        "error_rate": 0.5,
        "half_open_after_s": 900,  # stays open for the whole test
        "probe_volume": 3,
    },
    "quality": {"defaults": {"action": "throttle"}},
}
# one agent per partition of the 4 (checked below with the producer's own partitioner)
AGENTS = ("a0", "a1", "a3", "a4")
BASELINE, DRIFTED = 300, 200


def partition_of(key: str, partitions: int = specs.PARTITIONS) -> int:
    every = list(range(partitions))
    return int(DefaultPartitioner()(key.encode(), every, every))


def scores_for(agent: str) -> list[float]:
    """300 scores around 0.8, then 200 around 0.7 (a 12.5 % drop), fixed per agent."""
    rng = random.Random(f"drift-{agent}")
    base = [rng.gauss(0.8, 0.1) for _ in range(BASELINE)]
    return [min(1.0, max(0.0, s)) for s in base + [rng.gauss(0.7, 0.1) for _ in range(DRIFTED)]]


def usual_delay(scores: list[float]) -> int:
    """How many scores a fresh detector with the same settings needs to flag the drift."""
    det = DriftDetector(parse_health_config(CONFIG).quality.for_key("acme", "x", "helpfulness"))
    for s in scores:
        if det.update(s) is not None:
            return det.seen
    raise AssertionError("the scores do not drift")


@dataclass
class Cluster:
    bootstrap: str
    prefix: str
    tmp: Path
    replication: int | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    starts: int = 0

    @property
    def group(self) -> str:
        return f"{self.prefix}agentledger-health"

    def topic(self, spec: specs.TopicSpec) -> str:
        return self.prefix + spec.name

    def start(self) -> subprocess.Popen[bytes]:
        """One more `agentledger health`, as a user runs it (same home, same config)."""
        config = self.tmp / "policy.yaml"
        config.write_text(yaml.safe_dump(CONFIG))
        env = health_env(self.bootstrap, self.prefix, self.tmp / "home")
        self.starts += 1
        extra = ["--replication", str(self.replication)] if self.replication else []
        proc = start_health(env, config, self.tmp / f"health-{self.starts}.log", *extra)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("health-*.log")))

    async def members(self) -> int | None:
        """Members of the health group when it is Stable, else None."""
        from aiokafka.errors import KafkaError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            (resp,) = await admin.describe_consumer_groups([self.group])
            _, _, state, _, _, members, *_ = resp.groups[0]
            return len(members) if state == "Stable" else None
        except KafkaError:  # no coordinator yet for a group that does not exist yet
            return None
        finally:
            await admin.close()

    async def wait_members(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                assert p.poll() is None or p.returncode == -signal.SIGKILL, self.logs()
            if await self.members() == n:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the health group never had {n} stable members\n{self.logs()}")

    async def wait_committed(self, timeout: float = 60) -> None:
        """Until the group's committed offsets on the events topic reach its end (every record
        processed, its state written, acked and committed)."""
        topic = self.topic(specs.EVENTS)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                done = {
                    tp.partition: m.offset
                    for tp, m in (await admin.list_consumer_group_offsets(self.group)).items()
                    if tp.topic == topic
                }
            finally:
                await admin.close()
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
            await consumer.start()
            try:
                tps = [TopicPartition(topic, p) for p in range(specs.EVENTS.partitions)]
                ends = await consumer.end_offsets(tps)
            finally:
                await consumer.stop()
            if all(done.get(tp.partition, 0) >= end for tp, end in ends.items()):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the health group never committed the events topic\n{self.logs()}")


@pytest.fixture
def cluster(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Cluster]:
    from agentledger.admin import create_topics

    prefix = f"hs{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    c = Cluster(kafka_bootstrap, prefix, tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


async def until(what: Callable[[], Awaitable[Any]], timeout: float, c: Cluster) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await what()
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"not seen in {timeout} s\n{c.logs()}")


_seq = 0


def _ids() -> dict[str, str]:
    global _seq
    _seq += 1
    return {"event_id": f"hs-{uuid.uuid4().hex[:20]}", "span_id": f"{_seq:016x}"}


async def send(producer: AIOKafkaProducer, c: Cluster, agent: str, events: list[Any]) -> None:
    key = f"acme/{agent}"
    now = datetime.now(UTC)
    await producer.send_and_wait(
        c.topic(specs.EVENTS),
        encode_envelope(key, events),
        key=key.encode(),
        timestamp_ms=record_timestamp_ms(int(now.timestamp() * 1000), int(time.time() * 1000)),
    )


def quality(agent: str, scores: list[float]) -> list[QualityEvent]:
    now = datetime.now(UTC)
    return [
        QualityEvent(
            **_ids(),
            ts=now,
            tenant="acme",
            agent=agent,
            agent_version="v1",
            trace_id=uuid.uuid4().hex,
            metric="helpfulness",
            score=s,
        )
        for s in scores
    ]


def failing_calls(agent: str, n: int) -> list[SpanEvent]:
    now = datetime.now(UTC)
    return [
        SpanEvent(
            **_ids(),
            ts=now,
            tenant="acme",
            agent=agent,
            agent_version="v1",
            trace_id=uuid.uuid4().hex,
            name="chat gpt-4o",
            kind=SpanKind.LLM,
            start=now - timedelta(milliseconds=300),
            end=now,
            status=SpanStatus.ERROR,
            error_type="RateLimitError",
            provider="openai",
            model="gpt-4o",
        )
        for _ in range(n)
    ]


async def send_scores(
    producer: AIOKafkaProducer, c: Cluster, agent: str, scores: list[float], per: int
) -> None:
    for i in range(0, len(scores), per):  # in order, on the agent's one partition
        await send(producer, c, agent, quality(agent, scores[i : i + per]))


def drift_alerts(values: list[bytes]) -> dict[str, AlertEvent]:
    out: dict[str, AlertEvent] = {}
    for v in values:
        a = AlertEvent.model_validate_json(v)
        if a.rule == "quality.drift" and a.state is AlertState.ALERT:
            out.setdefault(a.entity, a)
    return out


def commands(values: list[bytes]) -> list[ControlCommand]:
    return [ControlCommand.model_validate_json(v) for v in values]


def test_agents_sit_on_four_partitions() -> None:
    assert sorted(partition_of(f"acme/{a}") for a in AGENTS) == [0, 1, 2, 3]
    # and each one's scores drift: a fresh detector flags them within the 200 dropped scores
    assert all(BASELINE < usual_delay(scores_for(a)) <= BASELINE + DRIFTED for a in AGENTS)


async def _producer(c: Cluster) -> AIOKafkaProducer:
    p = AIOKafkaProducer(bootstrap_servers=c.bootstrap, acks="all", enable_idempotence=True)
    await p.start()
    return p


async def test_a_restarted_health_worker_keeps_its_baseline(cluster: Cluster) -> None:
    """The baseline is learnt, the worker is killed and started again, then the scores drop:
    the drift is flagged after as many scores as without the restart (no new warm-up)."""
    c = cluster
    scores = scores_for("a3")
    expected = usual_delay(scores)
    assert BASELINE < expected <= BASELINE + DRIFTED
    first = c.start()
    await c.wait_members(1)
    producer = await _producer(c)
    try:
        await send_scores(producer, c, "a3", scores[:BASELINE], 50)
        await c.wait_committed()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        c.start()
        await c.wait_members(1)
        await send_scores(producer, c, "a3", scores[BASELINE:], 50)
    finally:
        await producer.stop()
    async with Tail(c.bootstrap, c.topic(specs.ALERTS), specs.ALERTS.partitions) as alerts:

        async def found() -> dict[str, AlertEvent]:
            return drift_alerts(await alerts.poll())

        alert = (await until(found, 90, c))["acme/a3@v1:helpfulness"]
    assert int(alert.figures["scores_seen"]) == expected, (alert.figures, expected)
    assert float(alert.figures["change_pct"]) < -3


async def test_two_health_workers_fail_over_a_provider_failing_on_every_partition(cluster: Cluster) -> None:
    """Each partition alone sees 6 failing calls, under `min_volume` (20): only circuits that
    see all four partitions' calls open. And a drift of one agent is still flagged on time."""
    c = cluster
    c.start()
    c.start()
    await c.wait_members(2)
    scores = scores_for("a1")
    producer = await _producer(c)
    try:
        for agent in AGENTS:
            await send(producer, c, agent, failing_calls(agent, 6))
        await send_scores(producer, c, "a1", scores, 50)
    finally:
        await producer.stop()
    async with (
        Tail(c.bootstrap, c.topic(specs.CONTROL), 1) as control,
        Tail(c.bootstrap, c.topic(specs.ALERTS), specs.ALERTS.partitions) as alerts,
    ):

        async def failed_over() -> list[ControlCommand]:
            return [x for x in commands(await control.poll()) if x.action is Action.FAILOVER]

        async def drifted() -> dict[str, AlertEvent]:
            return drift_alerts(await alerts.poll())

        await until(failed_over, 90, c)
        drift = (await until(drifted, 90, c))["acme/a1@v1:helpfulness"]
        await control.drain()
        await alerts.drain()
        (failover,) = [x for x in commands(control.values) if x.action is Action.FAILOVER]
        circuit = [
            a
            for a in (AlertEvent.model_validate_json(v) for v in alerts.values)
            if a.rule == "provider.circuit"
        ]
    assert failover.scope.key == "provider/openai/*" and failover.params.fallback_provider == "anthropic"
    assert [a.state for a in circuit] == [AlertState.ALERT]
    assert circuit[0].figures["calls"] == 24 and circuit[0].figures["errors"] == 24
    assert circuit[0].command_id == failover.command_id
    assert int(drift.figures["scores_seen"]) == usual_delay(scores)


async def saved_state(c: Cluster) -> dict[str, Any]:
    """What the changelog holds per agent: scores seen, offsets applied (for a failure message)."""
    import json

    name = f"{c.group}-state-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=c.bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: dict[str, Any] = {}
    try:
        tps = [TopicPartition(name, p) for p in range(specs.PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for _ in range(10):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    doc = json.loads(r.value)
                    key = json.loads(r.key)
                    out[key] = {"o": doc.get("o"), "seen": [d[2]["n"] for d in doc.get("drift", [])]}
    finally:
        await consumer.stop()
    return out


def step(what: str, t0: float = time.monotonic()) -> None:
    print(f"[{time.monotonic() - t0:7.1f}s] {what}", file=sys.stderr, flush=True)


@pytest.mark.faults
@pytest.mark.timeout(900)
async def test_one_of_two_health_workers_killed_mid_stream(kafka_cluster3: Any, tmp_path: Path) -> None:
    """SIGKILL one of two workers while baselines stream in, restart it: a drift that begins
    right after is flagged with the usual delay on every partition, the open circuit stays
    open (more failing calls fail nothing over again), and no command is published twice."""
    from agentledger.admin import create_topics

    _, state = kafka_cluster3
    prefix = f"hf{uuid.uuid4().hex[:10]}."
    await create_topics(state.bootstrap, prefix=prefix, replication=3)
    c = Cluster(state.bootstrap, prefix, tmp_path, replication=3)
    try:
        victim = c.start()
        await c.wait_members(1, timeout=180)
        step("first worker in the group")
        producer = await _producer(c)
        try:
            for agent in AGENTS:
                await send(producer, c, agent, failing_calls(agent, 6))
            c.start()
            await c.wait_members(2, timeout=180)
            step("second worker in the group")
            for agent in AGENTS:  # the first half of each baseline, in envelopes of 10
                await send_scores(producer, c, agent, scores_for(agent)[: BASELINE // 2], 10)
            await c.wait_committed(120)
            step("first half of the baselines committed")
            # mid-stream: the second half goes out while the victim dies
            sending = [
                asyncio.create_task(
                    send_scores(producer, c, agent, scores_for(agent)[BASELINE // 2 : BASELINE], 10)
                )
                for agent in AGENTS
            ]
            await asyncio.sleep(0.3)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            await asyncio.gather(*sending)
            step("killed one, baselines sent")
            await c.wait_members(1, timeout=180)  # the survivor took every partition
            step("the survivor holds every partition")
            await c.wait_committed(120)
            step("baselines committed")
            c.start()
            await c.wait_members(2, timeout=180)
            step("restarted worker in the group")
            # right after the restart: the drift begins, and the provider keeps failing
            for agent in AGENTS:
                await send(producer, c, agent, failing_calls(agent, 6))
                await send_scores(producer, c, agent, scores_for(agent)[BASELINE:], 50)
        finally:
            await producer.stop()
        async with (
            Tail(c.bootstrap, c.topic(specs.CONTROL), 1) as control,
            Tail(c.bootstrap, c.topic(specs.ALERTS), specs.ALERTS.partitions) as alerts,
        ):

            async def all_drifted() -> dict[str, AlertEvent]:
                found = drift_alerts(await alerts.poll())
                return found if len(found) == len(AGENTS) else {}

            try:
                found = await until(all_drifted, 180, c)
            except AssertionError:
                seen = {k: v.figures.get("scores_seen") for k, v in drift_alerts(alerts.values).items()}
                raise AssertionError(f"drift alerts {seen}; saved state {await saved_state(c)}") from None
            step("drift flagged for every agent")
            await c.wait_committed(60)
            await asyncio.sleep(3)  # anything more would be a duplicate
            await control.drain()
            await alerts.drain()
            cmds = commands(control.values)
        for agent in AGENTS:
            alert = found[f"acme/{agent}@v1:helpfulness"]
            assert int(alert.figures["scores_seen"]) == usual_delay(scores_for(agent)), (agent, alert.figures)
        by_action = {
            a: [x.scope.key for x in cmds if x.action is a]
            for a in (Action.FAILOVER, Action.RESUME, Action.THROTTLE)
        }
        assert by_action[Action.FAILOVER] == ["provider/openai/*"]  # still open: not failed over again
        assert by_action[Action.RESUME] == []
        assert sorted(by_action[Action.THROTTLE]) == sorted(f"agent/acme/{a}" for a in AGENTS)
        opened = [
            a
            for a in (AlertEvent.model_validate_json(v) for v in alerts.values)
            if a.rule == "provider.circuit"
        ]
        assert [a.state for a in opened] == [AlertState.ALERT]
    finally:
        c.stop_all()
