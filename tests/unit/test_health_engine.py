"""HealthEngine end to end on bytes, with a fixed clock: what lands on control and alerts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

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
from agentledger.streams.health.engine import HealthEngine, Outgoing
from agentledger.streams.healthconfig import parse_health_config
from agentledger.wire import encode_envelope

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


_n = 0


def _common(clock: Clock, version: str = "v1", trace: str | None = None) -> dict:
    global _n
    _n += 1
    ts = datetime.fromtimestamp(clock.t, UTC)
    return {
        "event_id": f"ev-{_n:010d}",
        "ts": ts,
        "tenant": "acme",
        "agent": "planner",
        "agent_version": version,
        "trace_id": trace or f"{_n:032x}",
        "span_id": f"{_n:016x}",
    }


def _llm(clock: Clock, ok: bool, provider: str = "openai") -> SpanEvent:
    c = _common(clock)
    return SpanEvent(
        **c, name="chat", kind=SpanKind.LLM, start=c["ts"] - timedelta(milliseconds=300), end=c["ts"],
        status=SpanStatus.OK if ok else SpanStatus.ERROR, provider=provider, model="gpt-4o",
    )  # fmt: skip


def _decode(out: list[Outgoing]) -> tuple[list[ControlCommand], list[AlertEvent]]:
    cmds = [ControlCommand.model_validate_json(o.value) for o in out if o.topic == "control"]
    alerts = [AlertEvent.model_validate_json(o.value) for o in out if o.topic == "alerts"]
    for o in out:
        if o.topic == "control":
            assert (
                o.key.decode() == ControlCommand.model_validate_json(o.value).key
            )  # the health key of its lane
        else:
            assert o.key.decode() == AlertEvent.model_validate_json(o.value).dedup_key
    return cmds, alerts


CFG = parse_health_config(
    {
        "providers": {"fallbacks": {"openai": "anthropic"}, "window_s": 10, "min_volume": 10,
                      "error_rate": 0.5, "half_open_after_s": 3, "probe_volume": 3},
        "canary": {"task_idle_s": 1, "min_tasks": 30, "promote_min_tasks": 150, "eval_interval_s": 1},
    }
)  # fmt: skip


def _spans(eng: HealthEngine, clock: Clock, n: int, ok: bool) -> list[Outgoing]:
    out: list[Outgoing] = []
    for _ in range(n):
        clock.t += 0.1
        out += eng.on_events(encode_envelope("acme/planner", [_llm(clock, ok=ok)]))
    return out


def _outage(eng: HealthEngine, clock: Clock) -> tuple[list[ControlCommand], list[AlertEvent]]:
    assert _spans(eng, clock, 30, ok=True) == []
    first = _n + 1
    cmds, alerts = _decode(_spans(eng, clock, 40, ok=False))
    # the command names the failing span that tripped the circuit (command latency starts there)
    assert cmds and cmds[0].cause_event_id in {f"ev-{i:010d}" for i in range(first, _n + 1)}
    assert [(c.action, c.scope.key, c.params.fallback_provider) for c in cmds] == [
        (Action.FAILOVER, "provider/openai/*", "anthropic")
    ]
    assert [a.state for a in alerts] == [AlertState.ALERT] and alerts[0].command_id == cmds[0].command_id
    assert alerts[0].figures["errors"] >= 10
    return cmds, alerts


def test_provider_outage_fails_over_then_resumes_when_probes_are_healthy_wait_mode() -> None:
    clock = Clock()
    cfg = CFG.model_copy(update={"providers": CFG.providers.model_copy(update={"half_open": "wait"})})
    eng = HealthEngine(cfg, clock)
    _outage(eng, clock)
    clock.t += 4
    assert _decode(eng.tick()) == ([], [])  # half-open: stays failed over, waits for probes
    cmds, alerts = _decode(_spans(eng, clock, 3, ok=True))
    assert [c.action for c in cmds] == [Action.RESUME] and cmds[0].scope.key == "provider/openai/*"
    assert [a.state for a in alerts] == [AlertState.RESOLVED]


def test_provider_half_open_resumes_traffic_as_the_probe_and_backs_off_when_it_fails() -> None:
    clock = Clock()
    eng = HealthEngine(CFG, clock)  # half_open: resume (the default)
    _outage(eng, clock)
    clock.t += 3.5
    cmds, alerts = _decode(eng.tick())
    assert [c.action for c in cmds] == [Action.RESUME] and alerts == []
    assert cmds[0].cause_event_id is None  # time alone half-opened it
    assert "live traffic resumes as the probe" in cmds[0].reason
    # the provider is still down: the first failing probes fail over again
    cmds, alerts = _decode(_spans(eng, clock, 2, ok=False))
    assert [c.action for c in cmds] == [Action.FAILOVER] and [a.state for a in alerts] == [AlertState.ALERT]
    clock.t += 3.5
    assert _decode(eng.tick()) == ([], [])  # the open period doubled (3 s -> 6 s)
    clock.t += 3
    assert [c.action for c in _decode(eng.tick())[0]] == [Action.RESUME]
    cmds, alerts = _decode(_spans(eng, clock, 3, ok=True))
    assert cmds == [] and [a.state for a in alerts] == [AlertState.RESOLVED]  # closed


def test_provider_without_fallback_alerts_but_commands_nothing() -> None:
    clock = Clock()
    eng = HealthEngine(CFG, clock)
    out: list[Outgoing] = []
    for _ in range(20):
        clock.t += 0.1
        out += eng.on_events(encode_envelope("acme/planner", [_llm(clock, ok=False, provider="mistral")]))
    cmds, alerts = _decode(out)
    assert cmds == [] and len(alerts) == 1 and alerts[0].figures["fallback"] == "none configured"


def _canary_round(
    eng: HealthEngine, clock: Clock, rng: random.Random, i: int, cost_v2: float
) -> list[Outgoing]:
    priced = []
    for version, cost in (("v1", 0.01), ("v2", cost_v2)):
        trace = f"{1 + (version == 'v2'):x}{i:031x}"
        c = _common(clock, version, trace)
        usage = UsageEvent(**c, provider="openai", model="gpt-4o", input_tokens=100, output_tokens=10)
        priced.append(PricedEvent(event=usage, cost_usd=Decimal(str(round(rng.gauss(cost, cost * 0.2), 8))),
                                  priced=True, price_source="test"))  # fmt: skip
    eng.on_priced(encode_envelope("acme/planner", priced))
    clock.t += 2
    return eng.tick()


def test_clearly_costlier_canary_is_rolled_back_equal_one_is_not() -> None:
    for cost_v2, expect_rollback in ((0.02, True), (0.01, False)):
        clock = Clock()
        eng = HealthEngine(CFG, clock)
        rng = random.Random(4)
        out: list[Outgoing] = []
        for i in range(200):
            out += _canary_round(eng, clock, rng, i, cost_v2)
        cmds, alerts = _decode(out)
        rollbacks = [c for c in cmds if c.action is Action.ROLLBACK]
        if expect_rollback:
            assert len(rollbacks) == 1 and rollbacks[0].params.target_version == "v1"
            assert rollbacks[0].scope.key == "agent/acme/planner"
            verdict = next(a for a in alerts if a.state is AlertState.ALERT)
            assert verdict.figures["verdict"] == "rollback" and verdict.figures["canary_version"] == "v2"
            assert verdict.figures["cost_per_task_canary"] > verdict.figures["cost_per_task_baseline"]
        else:
            assert rollbacks == []
            assert alerts[-1].figures["verdict"] == "promote"


def test_quality_drift_alerts_and_throttles_when_configured() -> None:
    cfg = parse_health_config({"quality": {"defaults": {"action": "throttle", "throttle_rate_per_s": 0.5}}})
    clock = Clock()
    eng = HealthEngine(cfg, clock)
    rng = random.Random(9)
    out: list[Outgoing] = []
    for i in range(1000):
        clock.t += 1
        mean = 0.8 if i < 500 else 0.7
        q = QualityEvent(
            **_common(clock), metric="helpfulness", score=min(1.0, max(0.0, rng.gauss(mean, 0.1)))
        )
        out += eng.on_events(encode_envelope("acme/planner", [q]))
    cmds, alerts = _decode(out)
    assert [c.action for c in cmds] == [Action.THROTTLE] and cmds[0].params.rate_per_s == 0.5
    assert cmds[0].cause_event_id is not None and cmds[0].cause_event_id.startswith("ev-")
    assert len(alerts) == 1 and alerts[0].rule == "quality.drift" and alerts[0].state is AlertState.ALERT
    assert alerts[0].dedup_key == "quality.drift|acme/planner@v1:helpfulness"
    assert alerts[0].figures["change_pct"] < -5


def test_bad_records_are_skipped_not_fatal() -> None:
    eng = HealthEngine(CFG, Clock())
    assert eng.on_events(b"not json") == [] and eng.on_priced(b"{}") == []
    assert eng.counts["bad_records"] == 2


def test_canary_with_worse_quality_scores_is_rolled_back() -> None:
    clock = Clock()
    eng = HealthEngine(CFG, clock)
    rng = random.Random(2)
    out: list[Outgoing] = []
    for _ in range(120):
        batch = [
            QualityEvent(**_common(clock, version), metric="helpfulness", score=rng.gauss(mean, 0.1))
            for version, mean in (("v1", 0.8), ("v2", 0.6))
        ]
        out += eng.on_events(encode_envelope("acme/planner", batch))
        clock.t += 1
        out += eng.tick()
    cmds, alerts = _decode(out)
    assert [(c.action, c.params.target_version) for c in cmds] == [(Action.ROLLBACK, "v1")]
    verdict = next(a for a in alerts if a.rule == "canary.verdict" and a.state is AlertState.ALERT)
    assert verdict.figures["quality_helpfulness_canary"] < verdict.figures["quality_helpfulness_baseline"]
