"""Provider objectives across the health worker's two stages, without Kafka: each stage one
counts its partitions' calls, stage two adds them, and the verdict is the one a single process
that saw every call gives (issue #18: exact at any number of workers)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from slo_spans import llm_span

from agentledger.events import AlertEvent, AlertState, ObjectivePolicy, SpanEvent
from agentledger.streams.health.engine import HealthEngine, Outgoing
from agentledger.streams.healthconfig import parse_health_config
from agentledger.streams.slo import SloMonitor, SloTallies
from agentledger.wire import encode_envelope

T0 = 1_800_000_000.0


def span(ts: float, latency_ms: float, agent: str, ok: bool = True) -> SpanEvent:
    return llm_span(ts, latency_ms, ok=ok, agent=agent)


def provider_objective(per: str = "model") -> ObjectivePolicy:
    return ObjectivePolicy.model_validate(
        {
            "objective_id": "openai-latency",
            "kind": "latency",
            "target": 0.99,
            "threshold_ms": 1000.0,
            "selector": {"per": per, "provider": "openai"},
        }
    )


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def calls(
    a0_share: float,
    phases: list[tuple[float, bool]],
    slow_parts: frozenset[int] = frozenset({0, 1}),
    per_s: int = 10,
) -> Iterator[tuple[int, SpanEvent]]:
    """(partition, span): ``per_s`` calls a second; agent "a0" (``a0_share`` of them) lives on
    partition 0, "a1" on partition 1. In a slow phase the calls of ``slow_parts`` take 3 s."""
    t = T0
    a0_calls = round(a0_share * per_s)
    for seconds, slow in phases:
        end = t + seconds
        while t < end:
            for i in range(per_s):
                part = 0 if i < a0_calls else 1
                lat = 3000.0 if slow and part in slow_parts else 200.0
                yield part, span(t + i / per_s, lat, f"a{part}")
            t += 1.0


def _key(a: AlertEvent) -> tuple[str, AlertState]:
    return a.dedup_key, a.state


def _two_stage(stream: Iterator[tuple[int, SpanEvent]], clock: Clock) -> tuple[list[AlertEvent], SloMonitor]:
    """Two stage-one monitors (one per partition) and one stage two, fed per second."""
    obj = provider_objective()
    firsts = [SloMonitor([obj], clock=clock) for _ in range(2)]
    second = SloMonitor([obj], clock=clock)
    out: list[AlertEvent] = []
    tallies: list[SloTallies] = [{}, {}]
    last = T0

    def ship() -> None:  # each partition's record of the last second goes to stage two
        for tally in tallies:
            for (oid, entity, _), (ts, good, bad) in tally.get("openai", {}).items():
                out.extend(second.on_counts(oid, entity, ts, int(good), int(bad)))
            tally.clear()

    for part, ev in stream:
        clock.t = ev.ts.timestamp()
        out += firsts[part].on_span(ev, tallies[part])
        if clock.t - last >= 1.0:
            last = clock.t
            ship()
            if int(clock.t) % 60 == 0:
                out += second.tick() + firsts[0].tick() + firsts[1].tick()
    ship()
    return out, second


def _one_process(
    stream: Iterator[tuple[int, SpanEvent]], clock: Clock
) -> tuple[list[AlertEvent], SloMonitor]:
    mon = SloMonitor([provider_objective()], clock=clock)
    out: list[AlertEvent] = []
    for _, ev in stream:
        clock.t = ev.ts.timestamp()
        out += mon.on_span(ev)
        if int(clock.t) % 60 == 0 and clock.t == int(clock.t):
            out += mon.tick()
    return out, mon


def test_partitions_counted_apart_add_up_to_the_single_process_verdict() -> None:
    # every call of the provider slow for an hour: one page, one resolve, as in one process
    phases = [(2 * 3600.0, False), (3600.0, True), (2 * 3600.0, False)]
    single, mon1 = _one_process(calls(0.5, phases, per_s=2), Clock())
    split, mon2 = _two_stage(calls(0.5, phases, per_s=2), Clock())
    assert [_key(a) for a in single if a.figures["alert_rule"] == "page"] == [
        ("slo.burn_rate|openai-latency:openai/gpt-4o:page", AlertState.ALERT),
        ("slo.burn_rate|openai-latency:openai/gpt-4o:page", AlertState.RESOLVED),
    ]
    assert [_key(a) for a in split] == [_key(a) for a in single]
    for a, b in zip(split, single, strict=True):
        # judged when each second's counts arrive, not at each call: the same moment to a second
        assert abs(a.ts.timestamp() - b.ts.timestamp()) <= 1.0
        assert abs(a.figures["attainment"] - b.figures["attainment"]) < 1e-4
    (t1,) = mon1.tracked.values()
    (t2,) = mon2.tracked.values()
    assert t2.counts.fine == t1.counts.fine and t2.counts.hourly == t1.counts.hourly
    assert mon2.attainment("openai-latency", "openai/gpt-4o") == mon1.attainment(
        "openai-latency", "openai/gpt-4o"
    )


def test_one_slow_partition_does_not_page_for_a_provider_that_meets_its_objective() -> None:
    # a0 (10 % of the provider's calls) is slow for an hour: 10 % bad < 14.4 x 1 % budget.
    # Judged per partition, partition 0 alone would see 100 % bad and page.
    phases = [(3600.0, False), (3600.0, True)]
    single, _ = _one_process(calls(0.1, phases, frozenset({0})), Clock())
    assert [a for a in single if a.figures["alert_rule"] == "page"] == []
    split, second = _two_stage(calls(0.1, phases, frozenset({0})), Clock())
    assert [a for a in split if a.figures["alert_rule"] == "page"] == []
    ticket = [_key(a) for a in single if a.figures["alert_rule"] == "ticket"]
    assert [_key(a) for a in split if a.figures["alert_rule"] == "ticket"] == ticket
    whole = second.attainment("openai-latency", "openai/gpt-4o")
    assert whole is not None and whole.total == 2 * 3600 * 10


# --- the health engine: stage one ships the counts in the providers record ------------------


def _engine_run(repartition: bool) -> tuple[list[Outgoing], list[Outgoing], HealthEngine]:
    """(stage-one outputs, stage-two outputs, stage two); one engine for both without
    repartition. One record per partition per 20 s of calls."""
    clock = Clock()
    cfg = parse_health_config({"objectives": [provider_objective("provider").model_dump(mode="json")]})
    stage1 = [HealthEngine(cfg, clock, repartition=repartition) for _ in range(2)]
    stage2 = HealthEngine(cfg, clock, repartition=repartition) if repartition else stage1[0]
    first: list[Outgoing] = []
    second: list[Outgoing] = []
    batches: list[list[SpanEvent]] = [[], []]
    offsets = [0, 0]
    for part, ev in calls(0.5, [(2 * 3600.0, False), (3600.0, True)], per_s=2):
        clock.t = ev.ts.timestamp()
        batches[part].append(ev)
        if len(batches[part]) < 20:
            continue
        eng = stage1[part] if repartition else stage1[0]
        out = eng.on_events(encode_envelope(f"acme/a{part}", batches[part]), part, offsets[part])
        offsets[part] += 1
        batches[part] = []
        first += [o for o in out if o.topic != "providers"]
        for o in out:
            if o.topic == "providers":
                second += stage2.on_observations(o.value, 0)
                if offsets[part] == 3:  # a replayed providers record is skipped
                    assert stage2.on_observations(o.value, 0) == []
        if int(clock.t) % 30 == 0:
            for eng in {id(e): e for e in [*stage1, stage2]}.values():
                (first if eng is not stage2 else second).extend(eng.tick())
    return first, second, stage2


def _pages(out: list[Outgoing]) -> list[AlertEvent]:
    alerts = [AlertEvent.model_validate_json(o.value) for o in out if o.topic == "alerts"]
    return [a for a in alerts if a.rule == "slo.burn_rate" and a.figures["alert_rule"] == "page"]


def test_stage_one_ships_provider_objective_counts_and_stage_two_pages_once() -> None:
    first, second, stage2 = _engine_run(repartition=True)
    assert _pages(first) == []  # stage one judges no provider objective
    pages = _pages(second)
    assert [(a.dedup_key, a.state) for a in pages] == [
        ("slo.burn_rate|openai-latency:openai:page", AlertState.ALERT)
    ]
    whole = stage2.slo.attainment("openai-latency", "openai")
    # every call counted once in stage two, whatever record it came in (replays skipped)
    single_first, _, single = _engine_run(repartition=False)
    assert whole == single.slo.attainment("openai-latency", "openai")
    assert whole is not None and whole.total > 0
    assert [(a.dedup_key, a.state) for a in _pages(single_first)] == [(a.dedup_key, a.state) for a in pages]


def test_the_providers_record_carries_the_counts_and_a_bad_one_is_refused() -> None:
    clock = Clock()
    cfg = parse_health_config({"objectives": [provider_objective().model_dump(mode="json")]})
    eng = HealthEngine(cfg, clock, repartition=True)
    evs = [span(T0 + 0.1, 200.0, "a0"), span(T0 + 0.7, 3000.0, "a0"), span(T0 + 1.2, 200.0, "a0")]
    (rec,) = [o for o in eng.on_events(encode_envelope("acme/a0", evs), 0, 5) if o.topic == "providers"]
    body = json.loads(rec.value)
    assert sorted(body["slo"]) == [
        ["openai-latency", "openai/gpt-4o", T0 + 0.7, 1, 1],
        ["openai-latency", "openai/gpt-4o", T0 + 1.2, 1, 0],
    ]
    assert eng.slo.tracked == {}  # not counted in stage one
    eng.on_observations(rec.value, 0)
    whole = eng.slo.attainment("openai-latency", "openai/gpt-4o")
    assert whole is not None and (whole.good, whole.total) == (2, 3)
    body["slo"] = [["openai-latency", "openai/gpt-4o", "soon"]]
    body["origin"] = [0, 6]
    assert eng.on_observations(json.dumps(body).encode(), 0) == []
    assert eng.counts["bad_records"] == 1
