"""Detector state through the changelog table, without Kafka: what a restarted or moved
partition resumes with, replays skipped, and the two stages meeting on provider observations."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from agentledger.events import (
    Action,
    AlertEvent,
    ControlCommand,
    PricedEvent,
    QualityEvent,
    SpanEvent,
    SpanKind,
    SpanStatus,
    UsageEvent,
)
from agentledger.streams.health.app import HealthRuntime
from agentledger.streams.health.canary import CanaryJudge
from agentledger.streams.health.drift import DriftDetector
from agentledger.streams.health.engine import HealthEngine, Outgoing
from agentledger.streams.health.providers import CircuitState, Observation, ProviderCircuit, p95_of
from agentledger.streams.healthconfig import parse_health_config
from agentledger.wire import encode_envelope

T0 = 1_800_000_000.0
CFG = parse_health_config(
    {
        "providers": {"fallbacks": {"openai": "anthropic"}, "window_s": 30, "min_volume": 20,
                      "error_rate": 0.5, "half_open_after_s": 60, "probe_volume": 3},
        "quality": {"defaults": {"action": "throttle"}},
        "canary": {"task_idle_s": 1, "min_tasks": 30, "promote_min_tasks": 150, "eval_interval_s": 1},
    }
)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class Table(dict[str, Any]):
    """The Faust table's store as the engine sees it."""

    def write(self, changes: list[tuple[int, str, bytes]]) -> None:
        for part, key, value in changes:
            assert key.startswith(f"{part}|")
            self[key] = value


_n = 0


def _quality(clock: Clock, agent: str, score: float) -> QualityEvent:
    global _n
    _n += 1
    return QualityEvent(
        event_id=f"ev-{_n:010d}", ts=datetime.fromtimestamp(clock.t, UTC), tenant="acme", agent=agent,
        agent_version="v1", trace_id=f"{_n:032x}", span_id=f"{_n:016x}", metric="helpfulness", score=score,
    )  # fmt: skip


def _failing(clock: Clock, agent: str, n: int) -> list[SpanEvent]:
    global _n
    out = []
    for _ in range(n):
        _n += 1
        ts = datetime.fromtimestamp(clock.t, UTC)
        out.append(
            SpanEvent(
                event_id=f"ev-{_n:010d}",
                ts=ts,
                tenant="acme",
                agent=agent,
                agent_version="v1",
                trace_id=f"{_n:032x}",
                span_id=f"{_n:016x}",
                name="chat",
                kind=SpanKind.LLM,
                start=ts - timedelta(milliseconds=250),
                end=ts,
                status=SpanStatus.ERROR,
                provider="openai",
                model="gpt-4o",
            )
        )
    return out


def _scores() -> list[float]:
    rng = random.Random(4)
    return [min(1.0, max(0.0, rng.gauss(0.8 if i < 300 else 0.72, 0.1))) for i in range(500)]


def _drift_seen(out: list[Outgoing]) -> list[int]:
    alerts = [AlertEvent.model_validate_json(o.value) for o in out if o.topic == "alerts"]
    return [int(a.figures["scores_seen"]) for a in alerts if a.rule == "quality.drift"]


def _feed(
    eng: HealthEngine, clock: Clock, scores: list[float], start: int, partition: int = 2
) -> list[Outgoing]:
    out: list[Outgoing] = []
    for i in range(0, len(scores), 25):
        clock.t += 1
        env = encode_envelope("acme/writer", [_quality(clock, "writer", s) for s in scores[i : i + 25]])
        out += eng.on_events(env, partition, start + i // 25)
    return out


def test_a_restarted_engine_resumes_the_baseline_from_the_table() -> None:
    scores = _scores()
    fresh = DriftDetector(CFG.quality.for_key("acme", "writer", "helpfulness"))
    usual = next(fresh.seen for s in scores if fresh.update(s) is not None)
    clock, table = Clock(), Table()
    first = HealthEngine(CFG, clock, table=table, repartition=True)
    assert _feed(first, clock, scores[:300], 0) == []
    table.write(first.take_changes())
    assert list(table) == ["2|a|acme/writer"]  # the source partition prefixes the key
    second = HealthEngine(CFG, clock, table=table, repartition=True)
    assert _drift_seen(_feed(second, clock, scores[300:], 12)) == [usual]
    # without the table the restarted engine learns the drifted scores as its baseline
    assert _drift_seen(_feed(HealthEngine(CFG, clock), clock, scores[300:], 12)) == []


def test_records_replayed_after_a_crash_are_not_applied_twice() -> None:
    clock, table = Clock(), Table()
    first = HealthEngine(CFG, clock, table=table, repartition=True)
    _feed(first, clock, _scores()[:300], 0)
    table.write(first.take_changes())
    second = HealthEngine(CFG, clock, table=table, repartition=True)
    # the records after the last commit come again: the saved state already has them
    assert _feed(second, clock, _scores()[200:300], 8) == []
    assert second.counts["replayed"] == 100 and second.counts["events"] == 0
    det = second.drift[("acme", "writer", "v1", "helpfulness")]
    assert det.seen == 300


def test_drift_canary_and_circuit_state_round_trip() -> None:
    det = DriftDetector(CFG.quality.for_key("acme", "w", "m"))
    for s in _scores()[:350]:
        det.update(s)
    again = DriftDetector.from_state(det.s, json.loads(json.dumps(det.to_state())))
    assert again.to_state() == det.to_state() and list(again.recent) == list(det.recent)
    clock = Clock()
    judge = CanaryJudge(CFG.canary, clock)
    judge.record_cost("acme", "w", "v1", "t1", 0.25, T0)
    judge.record_quality("acme", "w", "v2", "m", 0.5, T0)
    other = CanaryJudge(CFG.canary, clock)
    other.load_agent("acme", "w", json.loads(json.dumps(judge.dump_agent("acme", "w"))))
    assert other.dump_agent("acme", "w") == judge.dump_agent("acme", "w")
    c = ProviderCircuit("openai", "gpt-4o", CFG.providers, clock)
    c.observe(Observation.single(T0, True, 120.0))
    back = ProviderCircuit.from_state("openai", "gpt-4o", CFG.providers, clock, c.to_state())
    assert (back.calls, back.errors, back.state) == (1, 1, CircuitState.CLOSED)


def test_provider_calls_from_every_partition_meet_in_stage_two_and_an_open_circuit_survives() -> None:
    clock, table = Clock(), Table()
    stage1 = HealthEngine(CFG, clock, table=table, repartition=True)
    stage2 = HealthEngine(CFG, clock, table=table, repartition=True)
    routed: list[Outgoing] = []
    for part, agent in enumerate(("a0", "a1", "a3", "a4")):  # 6 failing calls each: under 20 alone
        routed += stage1.on_events(encode_envelope(f"acme/{agent}", _failing(clock, agent, 6)), part, 7)
    assert [o.topic for o in routed] == ["providers"] * 4 and {o.key for o in routed} == {b"openai"}
    out: list[Outgoing] = []
    for o in routed:
        out += stage2.on_observations(o.value, 3)
    cmds = [ControlCommand.model_validate_json(o.value) for o in out if o.topic == "control"]
    assert [(c.action, c.scope.key) for c in cmds] == [(Action.FAILOVER, "provider/openai/*")]
    alert = next(AlertEvent.model_validate_json(o.value) for o in out if o.topic == "alerts")
    assert (alert.figures["calls"], alert.figures["errors"]) == (24, 24)
    table.write(stage2.take_changes())
    # a replayed observation (same origin) changes nothing; a restarted stage two is still open
    restarted = HealthEngine(CFG, clock, table=table, repartition=True)
    assert restarted.on_observations(routed[0].value, 3) == []
    restarted.load_owned()
    assert restarted.providers.circuits[("openai", "gpt-4o")].state is CircuitState.OPEN
    again: list[Outgoing] = []
    for part, agent in enumerate(("a0", "a1", "a3", "a4")):
        for o in stage1.on_events(encode_envelope(f"acme/{agent}", _failing(clock, agent, 6)), part, 8):
            again += restarted.on_observations(o.value, 3)
    assert again == []  # no second failover: the circuit stayed open


def test_a_revoked_partition_forgets_its_state_and_reloads_it_from_the_table() -> None:
    clock, table = Clock(), Table()
    eng = HealthEngine(CFG, clock, table=table, repartition=True)
    eng.assigned({2, 3})
    _feed(eng, clock, _scores()[:300], 0)
    table.write(eng.take_changes())
    eng.revoked({2})
    assert eng.drift == {} and eng.loaded == {}
    eng.assigned({2})
    eng.load_owned()
    assert eng.drift[("acme", "writer", "v1", "helpfulness")].seen == 300


def test_p95_from_histograms_is_capped_by_the_largest_latency() -> None:
    obs = Observation(T0)
    for ms in [100.0] * 90 + [1800.0] * 10:
        obs.add(T0, False, ms)
    assert p95_of([obs]) == 1800.0  # bin (1500, 2000], capped by the max seen
    assert obs.latency_sum_ms == 27000.0 and obs.latency_max_ms == 1800.0


def test_priced_records_feed_the_canary_and_are_saved() -> None:
    clock, table = Clock(), Table()
    eng = HealthEngine(CFG, clock, table=table, repartition=True)
    usage = UsageEvent(
        event_id="ev-usage-1", ts=datetime.fromtimestamp(T0, UTC), tenant="acme", agent="w", agent_version="v2",
        trace_id="a" * 32, span_id="1" * 16, provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1,
    )  # fmt: skip
    priced = [PricedEvent(event=usage, cost_usd=Decimal("0.5"), priced=True, price_source="test")]
    eng.on_priced(encode_envelope("acme/w", priced), 1, 0)
    table.write(eng.take_changes())
    saved = json.loads(table["1|a|acme/w"])
    assert saved["o"] == {"priced": 0} and saved["canary"]["versions"]["v2"]["o"]["a" * 32][0] == 0.5


async def _run_runtime(fail_write: bool) -> tuple[list[str], list[Any]]:
    clock = Clock()
    eng = HealthEngine(CFG, clock, repartition=True)
    order: list[str] = []

    async def publish(out: list[Outgoing]) -> None:
        order.extend(f"publish {o.topic}" for o in out)

    async def write(part: int, key: str, value: bytes) -> None:
        if fail_write:
            raise OSError("broker away")
        order.append(f"state {key}")

    acked: list[Any] = []

    async def ack(token: Any) -> None:
        order.append(f"ack {token}")
        acked.append(token)

    rt = HealthRuntime(eng, publish, write, state_flush_s=1.0, clock=clock)
    env = encode_envelope("acme/writer", [_quality(clock, "writer", 0.8)])
    await rt.on_record("events", env, 2, 5, ack, "r5")
    assert acked == []  # not before its state is written
    clock.t += 2
    try:
        await rt.on_record("events", env, 2, 6, ack, "r6")
    except OSError:
        assert rt.pending and eng.dirty  # kept for the next flush
    return order, acked


def test_records_are_acked_only_after_their_state_is_written() -> None:
    order, acked = asyncio.run(_run_runtime(fail_write=False))
    assert order == ["state 2|a|acme/writer", "ack r5", "ack r6"] and acked == ["r5", "r6"]
    # a failed state write acks nothing
    assert asyncio.run(_run_runtime(fail_write=True)) == ([], [])


async def _revoke_with_pending() -> tuple[list[str], HealthEngine]:
    clock, table = Clock(), Table()
    eng = HealthEngine(CFG, clock, table=table, repartition=True)
    order: list[str] = []

    async def publish(out: list[Outgoing]) -> None:
        return None

    async def write(part: int, key: str, value: bytes) -> None:
        table[key] = value
        order.append(f"state {key}")

    async def ack(token: Any) -> None:
        order.append(f"ack {token}")

    rt = HealthRuntime(eng, publish, write, state_flush_s=60.0, clock=clock)
    env = encode_envelope("acme/writer", [_quality(clock, "writer", 0.8)])
    await rt.on_record("events", env, 2, 5, ack, "r5")
    await rt.revoked({0, 1, 2, 3})  # Faust revokes everything, then gives some back
    return order, eng


def test_a_rebalance_writes_the_state_and_acks_before_forgetting_it() -> None:
    order, eng = asyncio.run(_revoke_with_pending())
    assert order == ["state 2|a|acme/writer", "ack r5"]
    assert eng.drift == {}
    eng.assigned({2})
    eng.load_owned()
    assert eng.drift[("acme", "writer", "v1", "helpfulness")].seen == 1


async def _tail_of_a_burst(settled: bool) -> list[str]:
    clock = Clock()
    eng = HealthEngine(CFG, clock, repartition=True)
    order: list[str] = []

    async def publish(out: list[Outgoing]) -> None:
        return None

    async def write(part: int, key: str, value: bytes) -> None:
        order.append(f"state {key}")

    async def ack(token: Any) -> None:
        order.append(f"ack {token}")

    rt = HealthRuntime(eng, publish, write, state_flush_s=0.2, clock=clock)
    await rt.on_record(
        "events", encode_envelope("acme/writer", [_quality(clock, "writer", 0.8)]), 2, 9, ack, "r9"
    )
    await rt.tick(settled)
    return order


def test_the_last_record_of_a_burst_is_acked_by_the_timer_even_during_a_rebalance() -> None:
    expected = ["state 2|a|acme/writer", "ack r9"]
    assert asyncio.run(_tail_of_a_burst(settled=True)) == expected
    assert asyncio.run(_tail_of_a_burst(settled=False)) == expected
