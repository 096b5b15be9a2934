"""Per-key error alerts in the health engine (``keyalerts``): errors of one key fingerprint
over a short window raise one ``provider.key`` alert naming provider and fingerprint, and one
resolve once the window is clean; refused-key spans never move the provider's circuit."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from agentledger.events import AlertEvent, AlertState, SpanEvent, SpanKind, SpanStatus, UsageEvent
from agentledger.streams.health.engine import HealthEngine
from agentledger.streams.healthconfig import parse_health_config
from agentledger.wire import encode_envelope

FP_BAD, FP_GOOD = "k-aaaaaaaaaaaa", "k-bbbbbbbbbbbb"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def refused(clock: Clock, fp: str) -> SpanEvent:
    ts = datetime.fromtimestamp(clock.now, UTC)
    return SpanEvent(
        event_id=uuid.uuid4().hex, ts=ts, tenant="acme", agent="support", trace_id="1" * 32, span_id="2" * 16,
        name="openai key 401", kind=SpanKind.LLM, start=ts, end=ts, status=SpanStatus.ERROR, provider="openai",
        error_type="http_401", attributes={"agentledger.key_fingerprint": fp, "agentledger.error.cause": "key_refused"},
    )  # fmt: skip


def used(clock: Clock, fp: str) -> UsageEvent:
    return UsageEvent(
        event_id=uuid.uuid4().hex, ts=datetime.fromtimestamp(clock.now, UTC), tenant="acme", agent="support",
        trace_id="1" * 32, span_id="3" * 16, provider="openai", model="gpt-4o", input_tokens=10, output_tokens=2,
        attributes={"agentledger.key_fingerprint": fp},
    )  # fmt: skip


def alerts(out: list[Any]) -> list[AlertEvent]:
    return [AlertEvent.model_validate_json(o.value) for o in out if o.topic == "alerts"]


def engine(repartition: bool) -> tuple[HealthEngine, Clock]:
    clock = Clock()
    cfg = parse_health_config({"providers": {"min_volume": 2, "keys": {"window_s": 10, "min_errors": 3}}})
    return HealthEngine(cfg, clock, repartition=repartition), clock


def feed(eng: HealthEngine, events: list[Any]) -> list[Any]:
    out = eng.on_events(encode_envelope("acme/support", events), 0, None)
    if not eng.repartition:
        return out
    rest = [o for o in out if o.topic != "providers"]
    for o in out:
        if o.topic == "providers":
            rest += eng.on_observations(o.value, 0)
    return rest


def test_errors_of_one_key_raise_one_alert_and_resolve_once() -> None:
    for repartition in (False, True):
        eng, clock = engine(repartition)
        raised: list[AlertEvent] = []
        for _ in range(3):
            raised += alerts(feed(eng, [refused(clock, FP_BAD), used(clock, FP_GOOD)]))
            clock.now += 1
        assert [(a.rule, a.entity, a.state) for a in raised] == [
            ("provider.key", f"openai/{FP_BAD}", AlertState.ALERT)
        ]
        assert raised[0].figures["fingerprint"] == FP_BAD and raised[0].figures["errors"] == 3
        assert alerts(feed(eng, [refused(clock, FP_BAD)])) == []  # still failing: no second alert
        assert alerts(eng.tick()) == []
        clock.now += 11
        resolved = alerts(eng.tick())
        assert [(a.entity, a.state) for a in resolved] == [(f"openai/{FP_BAD}", AlertState.RESOLVED)]
        assert alerts(eng.tick()) == []
        assert not any(c.state.value != "closed" for c in eng.providers.circuits.values())


def test_a_few_errors_among_many_calls_are_no_spike() -> None:
    eng, clock = engine(False)
    out: list[Any] = []
    for i in range(20):
        out += feed(eng, [used(clock, FP_BAD)] + ([refused(clock, FP_BAD)] if i % 5 == 0 else []))
    assert alerts(out) == []


def test_a_raised_alert_survives_a_restart_and_resolves() -> None:
    eng, clock = engine(False)
    for _ in range(3):
        feed(eng, [refused(clock, FP_BAD)])
    saved = {k: v for _, k, v in eng.take_changes()}
    table = {k: json.loads(v) for k, v in saved.items()}

    class Table(dict[str, Any]):
        pass

    fresh = HealthEngine(eng.cfg, clock, table=Table(table))
    fresh.load_owned()
    clock.now += 11
    assert [(a.entity, a.state) for a in alerts(fresh.tick())] == [(f"openai/{FP_BAD}", AlertState.RESOLVED)]
