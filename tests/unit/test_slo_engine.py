"""The SLO engine as pure logic: exact mergeable counts, multi-window multi-burn-rate alerts that
trigger when the SRE workbook predicts, resolve once, never flap, and stay silent on a stable
stream; and "slow is unhealthy" opening a provider circuit."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import ValidationError
from slo_spans import llm_span

from agentledger.events import AlertEvent, AlertState, ObjectivePolicy, SpanEvent
from agentledger.streams.health.providers import CircuitState, ProviderHealthMonitor
from agentledger.streams.healthconfig import parse_health_config
from agentledger.streams.slo import SloCounts, SloMonitor, slow_reason

T0 = 1_800_000_000.0


def span(
    ts: float, latency_ms: float, ok: bool = True, agent: str = "planner", model: str = "gpt-4o"
) -> SpanEvent:
    return llm_span(ts, latency_ms, ok=ok, agent=agent, model=model)


def latency_objective(target: float = 0.99, threshold_ms: float = 1000.0, **kw: object) -> ObjectivePolicy:
    return ObjectivePolicy.model_validate(
        {
            "objective_id": "planner-latency",
            "kind": "latency",
            "target": target,
            "threshold_ms": threshold_ms,
            **kw,
        }
    )


class Clock:
    """Wall clock that follows the synthetic stream (a live feed)."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def run(mon: SloMonitor, clock: Clock, spans: Iterator[SpanEvent]) -> list[AlertEvent]:
    out: list[AlertEvent] = []
    last_tick = T0
    for ev in spans:
        clock.t = ev.ts.timestamp()
        out.extend(mon.on_span(ev))
        if clock.t - last_tick >= 60:
            last_tick = clock.t
            out.extend(mon.tick())
    return out


def stepped(phases: list[tuple[float, float]], every_s: float = 1.0) -> Iterator[SpanEvent]:
    """One call every ``every_s`` seconds; ``phases`` = (seconds, latency ms)."""
    t = T0
    for seconds, latency in phases:
        end = t + seconds
        while t < end:
            yield span(t, latency)
            t += every_s


def by_rule(alerts: list[AlertEvent], name: str) -> list[AlertEvent]:
    return [a for a in alerts if a.figures["alert_rule"] == name]


# --- the contract ---------------------------------------------------------------------------


def test_objective_defaults_are_the_workbook_rules_and_bad_objectives_are_refused() -> None:
    o = latency_objective(0.95, 4000)
    assert o.window_days == 28
    assert [(r.name, r.burn_rate, r.long_window_s, r.short_window_s) for r in o.alerts] == [
        ("page", 14.4, 3600, 300),
        ("ticket", 6.0, 21600, 1800),
    ]
    with pytest.raises(ValidationError, match="threshold_ms"):
        ObjectivePolicy.model_validate({"objective_id": "x", "kind": "latency", "target": 0.95})
    with pytest.raises(ValidationError, match="can never be reached"):
        latency_objective(0.9)  # 14.4 x 10 % budget > 100 % of calls
    with pytest.raises(ValidationError, match="shorter"):
        latency_objective(alerts=[{"name": "p", "burn_rate": 2, "long_window_s": 60, "short_window_s": 60}])
    with pytest.raises(Exception, match="objective ids must be unique"):
        parse_health_config({"objectives": [o.model_dump(mode="json"), o.model_dump(mode="json")]})


# --- counts ---------------------------------------------------------------------------------


def test_counts_kept_by_several_workers_merge_to_the_exact_single_counter() -> None:
    rng = random.Random(7)
    calls = [(T0 + rng.uniform(0, 3 * 86400), rng.random() < 0.97) for _ in range(20_000)]
    whole = SloCounts()
    parts = [SloCounts() for _ in range(4)]
    for ts, good in calls:
        whole.add(ts, good)
        parts[rng.randrange(4)].add(ts, good)
    merged = SloCounts()
    for p in parts:
        merged.merge(p)
    assert merged.fine == whole.fine and merged.hourly == whole.hourly
    end = T0 + 3 * 86400
    for seconds in (300, 3600, 6 * 3600, 28 * 86400):
        w = merged.window(end, seconds, 0.95)
        assert (w.good, w.total) == (
            whole.window(end, seconds, 0.95).good,
            whole.window(end, seconds, 0.95).total,
        )
    w = merged.window(end, 28 * 86400, 0.95)
    assert (w.good, w.total) == (sum(g for _, g in calls), len(calls))  # exact over the whole window
    assert w.budget_left == pytest.approx(1 - (w.bad / w.total) / 0.05)


# --- burn-rate alerts -----------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.99, 0.95])
def test_latency_step_pages_when_the_workbook_predicts_and_resolves_after_recovery(target: float) -> None:
    clock = Clock()
    obj = latency_objective(target)
    mon = SloMonitor([obj], clock=clock)
    base, slow, after = 7 * 3600.0, 3600.0, 3 * 3600.0  # base fills the 6 h window
    alerts = run(mon, clock, stepped([(base, 200.0), (slow, 3000.0), (after, 200.0)]))
    step, recovery = T0 + base, T0 + base + slow
    slack = mon.bucket_s + mon.eval_every_s
    fired_rules = 0
    for rule in obj.alerts:
        got = by_rule(alerts, rule.name)
        # every call is bad after the step: the long window reaches burn_rate x budget after
        # long_window x burn_rate x (1 - target); the short window has been full of bad calls since
        predicted = step + rule.long_window_s * rule.burn_rate * (1 - target)
        if predicted >= recovery:  # the hour of slow calls is too short for this rule to see
            assert got == [], rule.name
            continue
        fired_rules += 1
        assert [a.state for a in got] == [AlertState.ALERT, AlertState.RESOLVED], rule.name
        fired = got[0].ts.timestamp()
        assert predicted - slack <= fired <= predicted + slack, (rule.name, fired - step, predicted - step)
        assert got[0].severity == rule.severity
        assert (
            got[0].dedup_key == got[1].dedup_key == f"slo.burn_rate|planner-latency:acme/planner:{rule.name}"
        )
        # resolve: the short window drops under the line, then stays there a whole short window
        under = recovery + rule.short_window_s * (1 - rule.burn_rate * (1 - target))
        resolved = got[1].ts.timestamp()
        assert under + rule.short_window_s - slack <= resolved <= under + rule.short_window_s + slack
        assert got[0].figures["burn_rate_short"] >= rule.burn_rate
    assert fired_rules == (2 if target == 0.99 else 1)


def test_stable_latency_raises_no_alert_over_a_long_stream() -> None:
    # Lognormal latencies around 200 ms, 1 % of calls over 1 s against a 99 % objective: the
    # budget burns at exactly the sustainable 1x, with the noise of random arrivals. 3 days at
    # one call every 4 s = 64,800 calls, 864 five-minute windows (benchmarks/slo.py runs 10,000).
    rng = random.Random(11)
    clock = Clock()
    mon = SloMonitor([latency_objective(0.99)], clock=clock)
    spans = (
        span(T0 + i * 4.0, 1000.0 * 1.5 if rng.random() < 0.01 else rng.lognormvariate(-1.6, 0.35) * 1000)
        for i in range(64_800)
    )
    assert run(mon, clock, spans) == []
    w = mon.attainment("planner-latency", "acme/planner")
    assert w is not None and w.total == 64_800 and abs(w.budget_left) < 0.1


def test_burn_rate_hovering_at_the_line_gives_one_trigger_and_one_resolve() -> None:
    # target 0.95: the page line is 72 % bad calls. After an hour at 100 % bad, the bad share
    # alternates 4 minutes at 60 % / 4 minutes at 85 % for two hours: the short window crosses
    # the line every few minutes; without hysteresis that is a flood of alert/resolved pairs.
    clock = Clock()
    obj = latency_objective(0.95)
    mon = SloMonitor([obj], clock=clock)

    def spans() -> Iterator[SpanEvent]:
        t = T0
        for minute in range(60 * 5):
            if minute < 60:
                bad = 0
            elif minute < 120:
                bad = 20
            elif minute < 240:
                bad = 12 if (minute // 4) % 2 == 0 else 17
            else:
                bad = 0
            for k in range(20):
                yield span(t + minute * 60 + k * 3, 3000.0 if k < bad else 200.0)

    page = by_rule(run(mon, clock, spans()), "page")
    assert [a.state for a in page] == [AlertState.ALERT, AlertState.RESOLVED]
    assert page[1].ts.timestamp() >= T0 + 240 * 60  # held through the hovering, resolved after it


def test_failed_calls_count_against_availability_not_latency() -> None:
    clock = Clock()
    avail = ObjectivePolicy(objective_id="avail", kind="availability", target=0.99)  # type: ignore[arg-type]
    lat = latency_objective(0.99).model_copy(update={"objective_id": "lat"})
    mon = SloMonitor([avail, lat], clock=clock)
    for i in range(100):
        mon.on_span(span(T0 + i, 200.0, ok=i % 10 != 0))
    a, lt = mon.attainment("avail", "acme/planner"), mon.attainment("lat", "acme/planner")
    assert a is not None and (a.good, a.total) == (90, 100)
    assert lt is not None and (lt.good, lt.total) == (90, 90)


def test_objectives_per_provider_model_keep_entities_apart_and_selectors_filter() -> None:
    clock = Clock()
    obj = latency_objective(0.99, selector={"per": "model", "model": "gpt-4o*"})
    mon = SloMonitor([obj], clock=clock)
    for i in range(10):
        mon.on_span(span(T0 + i, 200.0, model="gpt-4o"))
        mon.on_span(span(T0 + i, 200.0, model="gpt-4o-mini"))
        mon.on_span(span(T0 + i, 200.0, model="claude"))
    assert sorted(e for _, e in mon.tracked) == ["openai/gpt-4o", "openai/gpt-4o-mini"]


# --- slow is unhealthy ----------------------------------------------------------------------


def test_slow_reason_judges_the_share_within_the_threshold() -> None:
    assert slow_reason([100.0] * 95 + [5000.0] * 5, 1000, 0.95) is None
    why = slow_reason([100.0] * 94 + [5000.0] * 6, 1000, 0.95)
    assert why is not None and "94/100" in why
    assert slow_reason([5000.0] * 3, 1000, 0.95, min_calls=5) is None


def test_slow_but_successful_provider_opens_its_circuit_and_fast_probes_close_it() -> None:
    clock = Clock()
    cfg = parse_health_config(
        {"providers": {"window_s": 30, "min_volume": 10, "half_open_after_s": 5, "probe_volume": 3,
                       "latency_objective": {"threshold_ms": 1000, "target": 0.9}}}
    ).providers  # fmt: skip
    mon = ProviderHealthMonitor(cfg, clock)
    for _ in range(20):
        clock.t += 0.5
        assert mon.record("openai", "gpt-4o", clock.t, False, 3000.0) is None  # judged on the tick
    (opened,) = mon.tick()
    assert (
        opened.new is CircuitState.OPEN and "latency objective broken" in opened.reason and opened.errors == 0
    )
    clock.t += 5
    (half,) = mon.tick()
    assert half.new is CircuitState.HALF_OPEN
    moves = [mon.record("openai", "gpt-4o", clock.t, False, 200.0) for _ in range(3)]
    assert moves[-1] is not None and moves[-1].new is CircuitState.CLOSED


def test_without_a_latency_objective_a_slow_provider_keeps_its_circuit_closed() -> None:
    clock = Clock()
    mon = ProviderHealthMonitor(parse_health_config({"providers": {"min_volume": 10}}).providers, clock)
    for _ in range(20):
        clock.t += 0.5
        mon.record("openai", "gpt-4o", clock.t, False, 3000.0)
    assert mon.tick() == []


def test_an_entity_read_behind_another_is_judged_in_its_own_event_time() -> None:
    # Two agents on two partitions: the worker reads all of `steady` before `planner` (a lagging
    # partition). Planner's spans are hours behind the latest event seen, yet its page fires
    # when the workbook predicts in planner's own event time.
    clock = Clock()
    obj = latency_objective(0.99)
    mon = SloMonitor([obj], clock=clock)
    steady = (span(T0 + i * 2.0, 200.0, agent="steady") for i in range(5 * 1800))
    assert run(mon, clock, steady) == []
    clock.t = T0 + 5 * 3600  # the wall clock is at the end of steady's stream
    alerts: list[AlertEvent] = []
    for ev in stepped([(7 * 3600.0, 200.0), (3600.0, 3000.0)]):
        alerts.extend(mon.on_span(ev.model_copy(update={"ts": ev.ts + timedelta(hours=-5)})))
    page = by_rule(alerts, "page")
    assert [a.state for a in page] == [AlertState.ALERT]
    predicted = T0 - 5 * 3600 + 7 * 3600 + 3600 * 14.4 * 0.01
    assert abs(page[0].ts.timestamp() - predicted) <= mon.bucket_s + mon.eval_every_s


def test_an_entity_silent_for_the_whole_window_is_forgotten_after_resolving() -> None:
    clock = Clock()
    obj = latency_objective(0.99, window_days=1)
    mon = SloMonitor([obj], clock=clock)
    alerts = run(mon, clock, stepped([(2 * 3600.0, 200.0), (1800.0, 3000.0)], every_s=5.0))
    assert [a.state for a in by_rule(alerts, "page")] == [AlertState.ALERT]
    for _ in range(29):  # silence: wall time moves the entity's event time on
        clock.t += 3600
        alerts += mon.tick()
    assert [a.state for a in by_rule(alerts, "page")] == [AlertState.ALERT, AlertState.RESOLVED]
    assert mon.tracked == {} and mon.states == {}


def test_the_health_engine_publishes_slo_alerts_keyed_by_dedup_key() -> None:
    from agentledger.streams.health.engine import HealthEngine
    from agentledger.wire import encode_envelope

    clock = Clock()
    cfg = parse_health_config({"objectives": [latency_objective(0.99).model_dump(mode="json")]})
    engine = HealthEngine(cfg, clock)
    out = []
    batch: list[SpanEvent] = []
    for ev in stepped([(3600.0, 200.0), (1200.0, 3000.0)], every_s=2.0):
        clock.t = ev.ts.timestamp()
        batch.append(ev)
        if len(batch) == 100:
            out += engine.on_events(encode_envelope("acme/planner", batch))
            out += engine.tick()
            batch = []
    alerts = [o for o in out if o.topic == "alerts"]
    for o in alerts:
        assert o.key.decode() == AlertEvent.model_validate_json(o.value).dedup_key
    page = [o for o in alerts if o.key == b"slo.burn_rate|planner-latency:acme/planner:page"]
    assert len(page) == 1
    first = AlertEvent.model_validate_json(page[0].value)
    assert first.state is AlertState.ALERT and first.policy_id == "planner-latency"
    assert engine.counts["alerts"] == len(alerts)


def test_a_latency_failover_names_the_latest_slow_call_as_its_cause() -> None:
    from agentledger.events import Action, ControlCommand
    from agentledger.streams.health.engine import HealthEngine
    from agentledger.wire import encode_envelope

    clock = Clock()
    cfg = parse_health_config(
        {"providers": {"fallbacks": {"openai": "anthropic"}, "window_s": 30, "min_volume": 10,
                       "latency_objective": {"threshold_ms": 1000, "target": 0.9}}}
    )  # fmt: skip
    engine = HealthEngine(cfg, clock)
    slow = [span(clock.t + i * 0.1, 3000.0) for i in range(20)]
    clock.t += 2
    assert engine.on_events(encode_envelope("acme/planner", slow)) == []  # judged on the timer
    engine.on_events(encode_envelope("acme/planner", [span(clock.t, 200.0)]))  # a fast one after
    cmds = [ControlCommand.model_validate_json(o.value) for o in engine.tick() if o.topic == "control"]
    assert [c.action for c in cmds] == [Action.FAILOVER]
    assert cmds[0].cause_event_id == slow[-1].event_id and "latency objective broken" in cmds[0].reason


def test_running_window_sums_stay_exact_across_pruning_and_late_calls() -> None:
    rng = random.Random(5)
    kept = SloCounts()
    t = T0
    for day in range(40):
        for _ in range(200):
            ts = t + rng.uniform(0, 86400)
            kept.add(ts, rng.random() < 0.9)
            kept.add(ts - rng.uniform(0, 7200), rng.random() < 0.5)  # late calls, up to 2 h
        t += 86400
        if day % 9 == 0:  # rarely asked, like the attainment on a verdict
            kept.window(t, 28 * 86400, 0.95)
            kept.window(t, 3600, 0.95)
        kept.prune(t, 6 * 3600 + 60, 28 * 86400 + 3600)
        fresh = SloCounts(fine=dict(kept.fine), hourly=dict(kept.hourly))  # no running sums
        for seconds in (3600, 28 * 86400):
            a, b = kept.window(t, seconds, 0.95), fresh.window(t, seconds, 0.95)
            assert (a.good, a.total) == (b.good, b.total), (day, seconds)


# --- objectives applied live (the objectives topic) ------------------------------------------


def test_an_objective_set_while_running_counts_from_then_and_a_delete_resolves_its_page() -> None:
    clock = Clock()
    mon = SloMonitor([], clock=clock)
    obj = latency_objective(0.99)
    # slow calls before the objective exists are not judged
    assert run(mon, clock, stepped([(3600.0, 3000.0)])) == []
    assert mon.set_objective("planner-latency", obj) == []
    clock.t += 1
    later = (
        ev.model_copy(update={"ts": ev.ts + timedelta(seconds=3601)}) for ev in stepped([(1800.0, 3000.0)])
    )
    page = by_rule(run(mon, clock, later), "page")
    assert [a.state for a in page] == [AlertState.ALERT]
    # the same definition again (a retried PUT) changes nothing: still firing, counts kept
    assert mon.set_objective("planner-latency", obj.model_copy()) == []
    assert mon.states[("planner-latency", "acme/planner", "page")].firing
    assert mon.attainment("planner-latency", "acme/planner") is not None
    # deleted: every rule firing (the page, and the ticket: 30 min of slow calls is all its 6 h
    # window holds) is resolved at once, not left open
    firing = sorted(
        f"slo.burn_rate|planner-latency:acme/planner:{k[2]}" for k, st in mon.states.items() if st.firing
    )
    assert len(firing) == 2
    gone = mon.set_objective("planner-latency", None)
    assert sorted((a.dedup_key, a.state) for a in gone) == [(k, AlertState.RESOLVED) for k in firing]
    assert "objective deleted" in gone[0].summary
    assert mon.tracked == {} and mon.states == {} and mon.objectives == {}
    assert run(mon, clock, (span(clock.t + i, 3000.0) for i in range(600))) == []


def test_a_changed_objective_counts_afresh_and_a_disabled_one_stops() -> None:
    clock = Clock()
    obj = latency_objective(0.99)
    mon = SloMonitor([obj], clock=clock)
    run(mon, clock, stepped([(600.0, 200.0)]))
    assert mon.attainment("planner-latency", "acme/planner").total == 600  # type: ignore[union-attr]
    looser = latency_objective(0.99, threshold_ms=5000.0)
    assert mon.set_objective("planner-latency", looser) == []  # nothing was firing
    assert mon.attainment("planner-latency", "acme/planner") is None  # old counts dropped
    assert mon.objectives["planner-latency"].threshold_ms == 5000.0
    assert mon.set_objective("planner-latency", looser.model_copy(update={"enabled": False})) == []
    assert mon.objectives == {}


def test_the_health_engine_follows_objective_records_topic_over_file() -> None:
    from agentledger.streams.health.engine import HealthEngine
    from agentledger.wire import dump

    clock = Clock()
    in_file = latency_objective(0.99)
    engine = HealthEngine(parse_health_config({"objectives": [in_file.model_dump(mode="json")]}), clock)
    stricter = latency_objective(0.99, threshold_ms=100.0)
    assert engine.observe_objective("planner-latency", dump(stricter)) == []
    assert engine.slo.objectives["planner-latency"].threshold_ms == 100.0  # the topic's wins
    # its tombstone brings the file's definition back
    engine.observe_objective("planner-latency", None)
    assert engine.slo.objectives["planner-latency"].threshold_ms == 1000.0
    # a record that is not an objective, or not the one its key names, changes nothing
    other = latency_objective(0.99).model_copy(update={"objective_id": "other"})
    assert engine.observe_objective("planner-latency", b"{not json") == []
    assert engine.observe_objective("planner-latency", dump(other)) == []
    assert engine.counts["bad_records"] == 2
    assert set(engine.slo.objectives) == {"planner-latency"}
    new = latency_objective(0.95).model_copy(update={"objective_id": "new"})
    engine.observe_objective("new", dump(new))
    assert set(engine.slo.objectives) == {"planner-latency", "new"}
    engine.observe_objective("new", None)
    assert set(engine.slo.objectives) == {"planner-latency"}
