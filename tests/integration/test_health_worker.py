"""`agentledger health` as a real Faust worker (subprocess) on the real broker.

Events go in as envelopes; we read what the worker publishes on the control and alerts
topics: a provider outage gives `failover` then `resume`; a clearly costlier canary gets a
`rollback` naming the baseline; an equal canary is promoted, never rolled back.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from _health_harness import Tail, health_env, start_health, stop_health
from aiokafka import AIOKafkaProducer

from agentledger import topics as specs
from agentledger.events import (
    Action,
    AlertEvent,
    AlertState,
    ControlCommand,
    PricedEvent,
    QualityEvent,
    SpanEvent,
    SpanKind,
    SpanStatus,
    UsageEvent,
)
from agentledger.wire import encode_envelope, record_timestamp_ms

CONFIG = {
    "policies": [],  # the budget worker's key: ignored by the health worker
    "providers": {
        "fallbacks": {"openai": "anthropic"},
        "window_s": 10,
        "min_volume": 10,
        "error_rate": 0.5,
        "half_open_after_s": 3,
        "probe_volume": 3,
    },
    "canary": {"task_idle_s": 1, "min_tasks": 30, "promote_min_tasks": 150, "eval_interval_s": 1},
}


class Worker:
    def __init__(self, bootstrap: str, prefix: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.bootstrap, self.prefix, self.proc, self.log = bootstrap, prefix, proc, log

    def topic(self, spec: specs.TopicSpec) -> str:
        return self.prefix + spec.name


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    from agentledger.admin import create_topics

    prefix = f"h{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    tmp = tmp_path_factory.mktemp("health")
    config = tmp / "policy.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = health_env(kafka_bootstrap, prefix, tmp / "home")
    log = tmp / "worker.log"
    proc = start_health(env, config, log, "--datadir", str(tmp / "faust"))
    try:
        yield Worker(kafka_bootstrap, prefix, proc, log)
    finally:
        stop_health(proc)


_seq = 0


def _ids() -> dict[str, str]:
    global _seq
    _seq += 1
    return {"event_id": f"hw-{uuid.uuid4().hex[:20]}", "span_id": f"{_seq:016x}"}


def _llm(ok: bool, ts: datetime) -> SpanEvent:
    return SpanEvent(
        **_ids(), ts=ts, tenant="acme", agent="planner", agent_version="v1", trace_id=uuid.uuid4().hex,
        name="chat gpt-4o", kind=SpanKind.LLM, start=ts - timedelta(milliseconds=400), end=ts,
        status=SpanStatus.OK if ok else SpanStatus.ERROR, error_type=None if ok else "RateLimitError",
        provider="openai", model="gpt-4o",
    )  # fmt: skip


async def _send(
    producer: AIOKafkaProducer, topic: str, key: str, events: list[Any], newest: datetime
) -> None:
    now_ms = int(time.time() * 1000)
    await producer.send_and_wait(
        topic,
        encode_envelope(key, events),
        key=key.encode(),
        timestamp_ms=record_timestamp_ms(int(newest.timestamp() * 1000), now_ms),
    )


async def _until(what: Callable[[], Any], tick: Callable[[], Any], timeout: float, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await tick()
        found = await what()
        if found:
            return found
        await asyncio.sleep(every)
    raise AssertionError("not seen in time")


def _commands(values: list[bytes]) -> list[ControlCommand]:
    return [ControlCommand.model_validate_json(v) for v in values]


async def test_provider_outage_publishes_failover_then_resume(worker: Worker) -> None:
    events_topic = worker.topic(specs.EVENTS)
    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        async with (
            Tail(worker.bootstrap, worker.topic(specs.CONTROL), 1) as control,
            Tail(worker.bootstrap, worker.topic(specs.ALERTS), specs.ALERTS.partitions) as alerts,
        ):

            def spans(ok: bool) -> Callable[[], Any]:
                async def go() -> None:
                    now = datetime.now(UTC)
                    await _send(
                        producer, events_topic, "acme/planner", [_llm(ok, now) for _ in range(5)], now
                    )

                return go

            async def with_action(action: Action, n: int) -> Callable[[], Any]:
                async def check() -> bool:
                    return sum(c.action is action for c in _commands(await control.poll())) >= n

                return check

            def closed(n: int) -> Callable[[], Any]:
                async def check() -> bool:
                    found = (AlertEvent.model_validate_json(v) for v in await alerts.poll())
                    return (
                        sum(a.rule == "provider.circuit" and a.state is AlertState.RESOLVED for a in found)
                        >= n
                    )

                return check

            for cycle in (1, 2):
                t0 = time.monotonic()
                # the first cycle includes the Faust worker's start-up
                await _until(
                    await with_action(Action.FAILOVER, cycle), spans(ok=False), 120 if cycle == 1 else 30
                )
                detect_s = time.monotonic() - t0
                # after half_open_after_s: `resume` (live traffic is the probe), then healthy
                # probes close the circuit (a RESOLVED alert)
                await _until(await with_action(Action.RESUME, cycle), spans(ok=True), 30)
                await _until(closed(cycle), spans(ok=True), 30)
                if cycle == 2:
                    # a running worker notices an outage within seconds (generous bound: shared CI)
                    assert detect_s < 10, detect_s
            cmds = _commands(await control.drain(1.5))
            assert [c.action for c in cmds] == [Action.FAILOVER, Action.RESUME] * 2
            for c in cmds:
                assert c.scope.key == "provider/openai/*" and c.issued_by == "agentledger-health"
            assert cmds[0].params.fallback_provider == "anthropic"
            circuit = [
                a
                for a in (AlertEvent.model_validate_json(v) for v in await alerts.drain(1.5))
                if a.rule == "provider.circuit"
            ]
            assert [a.state for a in circuit] == [AlertState.ALERT, AlertState.RESOLVED] * 2
            assert circuit[0].dedup_key == "provider.circuit|openai/gpt-4o"
            assert circuit[0].command_id == cmds[0].command_id
            assert int(circuit[0].figures["errors"]) >= 5
    finally:
        await producer.stop()


async def _priced_tasks(producer: AIOKafkaProducer, topic: str, agent: str, cost_v2: float) -> None:
    """200 finished tasks (one trace each) per version; v1 is older, so it is the baseline."""
    import random

    rng = random.Random(agent)
    now = datetime.now(UTC)
    for version, cost, ts in (("v1", 0.01, now - timedelta(seconds=60)), ("v2", cost_v2, now)):
        batch = []
        for _ in range(200):
            usage = UsageEvent(
                **_ids(), ts=ts, tenant="acme", agent=agent, agent_version=version, trace_id=uuid.uuid4().hex,
                provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=100,
            )  # fmt: skip
            c = Decimal(str(round(max(0.0, rng.gauss(cost, cost * 0.2)), 8)))
            batch.append(PricedEvent(event=usage, cost_usd=c, priced=True, price_source="test"))
        await _send(producer, topic, f"acme/{agent}", batch, ts)


async def test_worse_canary_is_rolled_back_equal_one_is_promoted(worker: Worker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await _priced_tasks(producer, worker.topic(specs.PRICED), "costly", cost_v2=0.02)
        await _priced_tasks(producer, worker.topic(specs.PRICED), "steady", cost_v2=0.01)
    finally:
        await producer.stop()
    async with (
        Tail(worker.bootstrap, worker.topic(specs.CONTROL), 1) as control,
        Tail(worker.bootstrap, worker.topic(specs.ALERTS), specs.ALERTS.partitions) as alerts,
    ):

        async def nothing() -> None:
            return None

        async def verdicts() -> dict[str, AlertEvent]:
            out = {}
            for v in await alerts.poll():
                a = AlertEvent.model_validate_json(v)
                if a.rule == "canary.verdict" and a.figures["verdict"] != "undecided":
                    out[a.entity] = a
            return out if len(out) == 2 else {}

        found = await _until(verdicts, nothing, 120)
        costly, steady = found["acme/costly@v2"], found["acme/steady@v2"]
        assert costly.figures["verdict"] == "rollback" and costly.state is AlertState.ALERT
        assert float(costly.figures["cost_per_task_canary"]) > 1.5 * float(
            costly.figures["cost_per_task_baseline"]
        )
        assert float(costly.figures["cost_p"]) < 0.001
        assert steady.figures["verdict"] == "promote" and steady.state is AlertState.WARN
        assert int(steady.figures["tasks_canary"]) == 200
        rollbacks = [c for c in _commands(await control.drain(1.5)) if c.action is Action.ROLLBACK]
        assert [(c.scope.key, c.params.target_version) for c in rollbacks] == [("agent/acme/costly", "v1")]
        assert costly.command_id == rollbacks[0].command_id


async def test_quality_drop_of_ten_percent_raises_a_drift_alert(worker: Worker) -> None:
    import random

    rng = random.Random(12)
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        scores = [rng.gauss(0.8, 0.1) for _ in range(300)] + [rng.gauss(0.72, 0.1) for _ in range(500)]
        events = [
            QualityEvent(
                **_ids(),
                ts=now,
                tenant="acme",
                agent="writer",
                agent_version="v1",
                trace_id=uuid.uuid4().hex,
                metric="helpfulness",
                score=min(1.0, max(0.0, s)),
            )
            for s in scores
        ]
        for i in range(0, len(events), 100):  # envelopes of 100, in order on one partition
            await _send(producer, worker.topic(specs.EVENTS), "acme/writer", events[i : i + 100], now)
    finally:
        await producer.stop()
    async with Tail(worker.bootstrap, worker.topic(specs.ALERTS), specs.ALERTS.partitions) as alerts:

        async def nothing() -> None:
            return None

        async def drift() -> list[AlertEvent]:
            found = (AlertEvent.model_validate_json(v) for v in await alerts.poll())
            return [a for a in found if a.rule == "quality.drift"]

        found = await _until(drift, nothing, 60)
    a = found[0]
    assert a.dedup_key == "quality.drift|acme/writer@v1:helpfulness" and a.state is AlertState.ALERT
    assert a.tenant == "acme" and -20 < float(a.figures["change_pct"]) < -3
    assert float(a.figures["p_value"]) < 1e-4
    # detected after the change, within 200 scores of it
    assert 300 < int(a.figures["scores_seen"]) <= 500
