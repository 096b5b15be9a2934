"""SLO windows and burn state that survive a restart (issue #18), without Kafka: the pure round
trip (``SloCounts``, ``BurnState``, ``SloMonitor.dump_owner`` / ``load_owner``), its size for a
28-day window, and the health engine saving them with the key that owns them (the agent's for
objectives kept per agent, the provider's in stage two), loading, replay check and revocation."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from slo_spans import llm_span
from test_health_state import Clock, Table

from agentledger.events import AlertEvent, AlertState, ObjectivePolicy, SpanEvent
from agentledger.streams.health.engine import HealthEngine, Outgoing
from agentledger.streams.healthconfig import parse_health_config
from agentledger.streams.slo import BurnState, SloCounts, SloMonitor
from agentledger.wire import encode_envelope

T0 = 1_800_000_000.0
PAGE = {"name": "page", "burn_rate": 14.4, "long_window_s": 3600, "short_window_s": 300}


def objective(per: str = "agent", **kw: Any) -> ObjectivePolicy:
    doc: dict[str, Any] = {
        "objective_id": "lat",
        "kind": "latency",
        "target": 0.99,
        "threshold_ms": 1000.0,
        "selector": {"per": per},
        **kw,
    }
    return ObjectivePolicy.model_validate(doc)


def stepped(
    start: float, phases: list[tuple[float, float]], every_s: float = 2.0, version: str | None = "v1"
) -> Iterator[SpanEvent]:
    t = start
    for seconds, latency in phases:
        end = t + seconds
        while t < end:
            yield llm_span(t, latency, agent_version=version)
            t += every_s


# 2 h fast, 40 min slow, 40 min fast; the page fires ~8.6 min into the slow spell
PHASES = [(7200.0, 200.0), (2400.0, 3000.0), (2400.0, 200.0)]
CUT = T0 + 7200 + 900  # a restart 15 minutes into the slow spell


def feed(
    mon: SloMonitor, clock: Clock, spans: Iterator[SpanEvent], last_tick: list[float]
) -> list[AlertEvent]:
    out: list[AlertEvent] = []
    for ev in spans:
        clock.t = ev.ts.timestamp()
        out += mon.on_span(ev)
        if clock.t - last_tick[0] >= 30:
            last_tick[0] = clock.t
            out += mon.tick()
    return out


def test_counts_and_burn_state_round_trip_exactly() -> None:
    rng = random.Random(5)
    counts = SloCounts()
    for _ in range(5000):
        counts.add(T0 + rng.uniform(-3 * 86400, 600), rng.random() < 0.95, rng.choice((1, 1, 3)))
    back = SloCounts.from_state(json.loads(json.dumps(counts.to_state())))
    assert back.fine == counts.fine and back.hourly == counts.hourly and back.bucket_s == 60
    for seconds in (300, 3600, 21600, 28 * 86400):
        assert back.window(T0 + 600, seconds, 0.99) == counts.window(T0 + 600, seconds, 0.99)
    st = BurnState(True, T0, T0 + 60.5, "abc123")
    assert BurnState.from_state(json.loads(json.dumps(st.to_state()))) == st
    assert BurnState.from_state(BurnState().to_state()) == BurnState()


def test_a_restored_monitor_resolves_the_page_it_fired_once_and_keeps_its_window() -> None:
    obj = objective(alerts=[PAGE])
    spans = list(stepped(T0, PHASES))
    before = [s for s in spans if s.ts.timestamp() < CUT]
    after = spans[len(before) :]
    # one monitor that never stops: the reference
    ref_clock, tick = Clock(), [T0]
    ref = SloMonitor([obj], clock=ref_clock)
    ref_alerts = feed(ref, ref_clock, iter(spans), tick)
    assert [a.state for a in ref_alerts] == [AlertState.ALERT, AlertState.RESOLVED]
    # the same stream, the monitor saved and rebuilt at CUT
    clock, tick = Clock(), [T0]
    first = SloMonitor([obj], clock=clock)
    fired = feed(first, clock, iter(before), tick)
    assert [a.state for a in fired] == [AlertState.ALERT]
    saved = json.loads(json.dumps(first.dump_owner(("acme", "planner"))))
    assert first.dump_owner("openai") == []  # an agent objective is the agent's
    second = SloMonitor([obj], clock=clock)
    second.load_owner(("acme", "planner"), saved)
    rest = feed(second, clock, iter(after), tick)
    assert [a.state for a in rest] == [AlertState.RESOLVED]  # never fires twice
    assert rest[0].alert_id == ref_alerts[1].alert_id == f"{fired[0].alert_id}-resolved"
    assert rest[0].figures["fired_alert_id"] == fired[0].alert_id
    assert rest[0].ts == ref_alerts[1].ts
    for k in ("attainment", "budget_left", "calls_long", "bad_long"):
        assert rest[0].figures[k] == ref_alerts[1].figures[k], k
    assert second.attainment("lat", "acme/planner") == ref.attainment("lat", "acme/planner")
    # without the saved state the rebuilt monitor pages a second time
    blank = SloMonitor([obj], clock=clock)
    assert [a.state for a in feed(blank, clock, iter(after), [CUT])][:1] == [AlertState.ALERT]


def test_a_28_day_window_saves_in_a_few_kilobytes() -> None:
    """55-60 calls a minute for 29 days, both default rules: what one entity adds to its owner's
    record (the broker refuses records over 1 MB)."""
    obj = objective()
    clock = Clock()
    mon = SloMonitor([obj], clock=clock)
    rng = random.Random(2)
    for minute in range(29 * 1440):
        clock.t = T0 + minute * 60
        mon.on_counts("lat", "acme/planner", clock.t, rng.randint(50, 60), rng.randint(0, 2), "x")
        if minute % 60 == 0:
            mon.tick()
    mon.tick()
    (saved,) = mon.dump_owner("x")
    size = len(json.dumps(saved, separators=(",", ":")))
    fine, hourly = len(saved["c"]["f"]) // 3, len(saved["c"]["h"]) // 3
    assert fine <= 6 * 60 + 2 and 28 * 24 <= hourly <= 28 * 24 + 2  # the 6 h rule's minutes, 28 days' hours
    assert size < 12_000, size  # 9.5 KB: a hundred such entities fit in one record


def test_an_objective_changed_while_stopped_resolves_its_saved_page_and_counts_anew() -> None:
    obj = objective(alerts=[PAGE])
    clock, tick = Clock(), [T0]
    first = SloMonitor([obj], clock=clock)
    (fired,) = feed(first, clock, (s for s in stepped(T0, PHASES) if s.ts.timestamp() < CUT), tick)
    saved = first.dump_owner(("acme", "planner"))
    looser = objective(alerts=[PAGE], threshold_ms=5000.0)
    for now, why in (
        (SloMonitor([looser], clock=clock), "changed"),
        (SloMonitor([], clock=clock), "deleted"),
    ):
        now.load_owner(("acme", "planner"), saved)
        assert now.tracked == {} and now.changed == {("acme", "planner")}
        (resolve,) = now.tick()
        assert (resolve.state, resolve.dedup_key) == (AlertState.RESOLVED, fired.dedup_key)
        assert resolve.figures["fired_alert_id"] == fired.alert_id and why in resolve.summary
        assert now.tick() == []


# --- the health engine ---------------------------------------------------------------------


def _engine(table: Table, clock: Clock, obj: ObjectivePolicy) -> HealthEngine:
    return HealthEngine(
        parse_health_config({"objectives": [obj.model_dump(mode="json")]}),
        clock,
        table=table,
        repartition=True,
    )


def _slo_alerts(out: list[Outgoing]) -> list[AlertEvent]:
    alerts = [AlertEvent.model_validate_json(o.value) for o in out if o.topic == "alerts"]
    return [a for a in alerts if a.rule == "slo.burn_rate"]


def _run(
    eng: HealthEngine, clock: Clock, spans: list[SpanEvent], offset: int, stage2: HealthEngine | None = None
) -> tuple[list[Outgoing], int]:
    """Records of 50 spans on partition 2; stage one's providers records go to ``stage2``."""
    out: list[Outgoing] = []
    for i in range(0, len(spans), 50):
        batch = spans[i : i + 50]
        clock.t = batch[-1].ts.timestamp()
        for o in eng.on_events(encode_envelope("acme/planner", batch), 2, offset):
            if o.topic == "providers" and stage2 is not None:
                out += stage2.on_observations(o.value, 1)
            elif o.topic != "providers":
                out.append(o)
        offset += 1
        out += eng.tick() + (stage2.tick() if stage2 not in (None, eng) else [])
    return out, offset


def test_the_engine_saves_an_agent_objective_with_the_agent_and_a_restart_resolves_once() -> None:
    obj = objective(alerts=[PAGE])
    spans = list(stepped(T0, PHASES))
    before = [s for s in spans if s.ts.timestamp() < CUT]
    clock, table = Clock(), Table()
    first = _engine(table, clock, obj)
    out, offset = _run(first, clock, before, 0)
    (fired,) = _slo_alerts(out)
    table.write(first.take_changes())
    saved = json.loads(table["2|a|acme/planner"])
    (entity,) = saved["slo"]
    assert (entity["o"], entity["e"], entity["r"]["page"][0]) == ("lat", "acme/planner", True)
    # restarted: the last record comes again (replay skipped), then the rest of the stream
    second = _engine(table, clock, obj)
    again, _ = _run(second, clock, before[-50:], offset - 1)
    assert _slo_alerts(again) == [] and second.counts["replayed"] == 50
    rest, _ = _run(second, clock, spans[len(before) :], offset)
    (resolve,) = _slo_alerts(rest)
    assert resolve.state is AlertState.RESOLVED and resolve.figures["fired_alert_id"] == fired.alert_id
    whole = second.slo.attainment("lat", "acme/planner")
    good = sum(1 for s in spans if s.duration_ms <= 1000)
    assert whole is not None and (whole.good, whole.total) == (good, len(spans))  # every call once
    # the timer's resolve is written too: a third start has nothing firing
    table.write(second.take_changes())
    (entity,) = json.loads(table["2|a|acme/planner"])["slo"]
    assert entity["r"]["page"][0] is False


def test_a_provider_objective_is_saved_by_stage_two_and_dropped_on_revoke() -> None:
    """One engine holds both stages, as in one process: events on partition 2, the providers
    record of openai on partition 1."""
    obj = objective(per="provider", alerts=[PAGE])
    spans = list(stepped(T0, PHASES))
    before = [s for s in spans if s.ts.timestamp() < CUT]
    clock, table = Clock(), Table()
    eng = _engine(table, clock, obj)
    out, offset = _run(eng, clock, before, 0, eng)
    (fired,) = _slo_alerts(out)
    assert fired.entity == "lat:openai:page"
    table.write(eng.take_changes())
    assert "slo" not in json.loads(table["2|a|acme/planner"])  # stage one only counts it
    (entity,) = json.loads(table["1|p|openai"])["slo"]
    assert entity["e"] == "openai" and entity["r"]["page"][0] is True
    eng.revoked({1})  # the providers partition moves away; the events one stays
    assert eng.slo.tracked == {} and eng.slo.states == {}
    restarted = _engine(table, clock, obj)
    restarted.load_owned()
    assert restarted.slo.states[("lat", "openai", "page")].firing
    rest, _ = _run(restarted, clock, spans[len(before) :], offset, restarted)
    assert [(a.state, a.figures["fired_alert_id"]) for a in _slo_alerts(rest)] == [
        (AlertState.RESOLVED, fired.alert_id)
    ]
    whole = restarted.slo.attainment("lat", "openai")
    assert whole is not None and whole.total == len(spans)


def test_verdicts_of_the_timer_and_a_live_change_are_saved_so_a_restart_repeats_neither() -> None:
    obj = objective(alerts=[PAGE])
    clock, table = Clock(), Table()
    eng = _engine(table, clock, obj)
    # no agent version: no canary state of the agent's to be written with it
    out, _ = _run(eng, clock, [s for s in stepped(T0, PHASES, version=None) if s.ts.timestamp() < CUT], 0)
    (fired,) = _slo_alerts(out)
    table.write(eng.take_changes())
    # the agent goes silent: the timer alone resolves the page, and that is written
    clock.t += 3600
    assert _slo_alerts(eng.tick()) == []  # clear from now on: resolved after a short window
    clock.t += 300
    (resolve,) = _slo_alerts(eng.tick())
    assert resolve.state is AlertState.RESOLVED and resolve.figures["fired_alert_id"] == fired.alert_id
    table.write(eng.take_changes())
    (entity,) = json.loads(table["2|a|acme/planner"])["slo"]
    assert entity["r"]["page"][0] is False
    restarted = _engine(table, clock, obj)
    restarted.load_owned()
    assert _slo_alerts(restarted.tick()) == []  # nothing left to resolve
    # an objective changed live forgets its counts, in the saved state too
    out, _ = _run(restarted, clock, list(stepped(clock.t, [(1800.0, 3000.0)], version=None)), 500)
    (again,) = _slo_alerts(out)
    looser = obj.model_copy(update={"threshold_ms": 5000.0})
    (gone,) = _slo_alerts(restarted.observe_objective("lat", looser.model_dump_json().encode()))
    assert (gone.state, gone.figures["fired_alert_id"]) == (AlertState.RESOLVED, again.alert_id)
    restarted.tick()
    table.write(restarted.take_changes())
    assert "slo" not in json.loads(table["2|a|acme/planner"])
    third = _engine(table, clock, looser)
    third.load_owned()
    assert _slo_alerts(third.tick()) == []
