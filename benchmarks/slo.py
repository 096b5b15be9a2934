"""Latency objectives: how fast the page-level burn-rate alert sees a latency regression, how
often it fires on a stable stream, and how fast a slow provider's circuit opens.

Streams are synthetic LLM calls, one every ``--every`` seconds of event time, with lognormal
latencies: median 300 ms and a tail such that exactly 1 % exceed 1 s, the objective being
"99 % of calls within 1 s" (so a stable stream spends its error budget at exactly 1x, with the
noise of real arrivals). A regression multiplies every latency by a factor from the step on.

Anchor, measured in the same run on the same streams: a static p95 threshold alert, what
Langfuse and LangSmith offer (p95 of the last 5 minutes above 1 s, evaluated every minute,
fires on a breach and resolves when back under). For failover the anchor is the circuit's
existing p95 bound (``latency_p95_ms``) against the latency objective rule (90 % within 1 s
over the circuit's 30 s window: at the objective's own 99 % a stable stream's noise opens it).

No broker needed: the engine is pure. Usage:
    .venv/bin/python benchmarks/slo.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from agentledger.events import AlertState, ObjectivePolicy, SpanEvent, SpanKind, SpanStatus
from agentledger.streams.health.providers import CircuitState, ProviderHealthMonitor
from agentledger.streams.healthconfig import parse_health_config
from agentledger.streams.slo import SloMonitor

T0 = 1_800_000_000.0
THRESHOLD_MS, TARGET = 1000.0, 0.99
MEDIAN_MS = 300.0
SIGMA = math.log(THRESHOLD_MS / MEDIAN_MS) / 2.3263  # P(latency > 1 s) = 1 %
BASE_S = 2 * 3600.0  # before the step: fills the page rule's 1 h window twice over
MAX_AFTER_S = 2 * 3600.0
SHORT_S = 300.0
CIRCUIT_TARGET = 0.9  # a 30 s circuit window needs a looser bar than the 28-day objective


def objective() -> ObjectivePolicy:
    return ObjectivePolicy.model_validate(
        {
            "objective_id": "bench",
            "kind": "latency",
            "target": TARGET,
            "threshold_ms": THRESHOLD_MS,
            "alerts": [{"name": "page", "burn_rate": 14.4, "long_window_s": 3600, "short_window_s": 300}],
        }
    )


def latency(rng: random.Random, factor: float) -> float:
    return factor * MEDIAN_MS * math.exp(rng.gauss(0.0, SIGMA))


def calls(
    rng: random.Random, every: float, seconds: float, step_at: float | None, factor: float
) -> Iterator[tuple[float, float]]:
    """(event time, latency ms) one call every ``every`` s, slowed by ``factor`` from ``step_at``."""
    t = T0
    while t < T0 + seconds:
        slow = step_at is not None and t >= step_at
        yield t, latency(rng, factor if slow else 1.0)
        t += every


class Clock:
    t = T0

    def __call__(self) -> float:
        return self.t


def span(ts: float, lat: float, n: int) -> SpanEvent:
    end = datetime.fromtimestamp(ts, UTC)
    # model_construct: the benchmark measures the engine, not the contract's validation
    return SpanEvent.model_construct(
        event_id=f"b{n}", ts=end, tenant="acme", agent="planner", agent_version="v1", workflow=None,
        trace_id=f"{n:032x}", span_id=f"{n:016x}", parent_span_id=None, attributes={}, name="chat",
        kind=SpanKind.LLM, start=end - timedelta(milliseconds=lat), end=end, status=SpanStatus.OK,
        error_type=None, provider="openai", model="gpt-4o", type="span", v=1,
    )  # fmt: skip


class StaticP95:
    """The anchor: p95 of the last 5 minutes above the threshold, evaluated every minute."""

    def __init__(self) -> None:
        self.window: deque[tuple[float, float]] = deque()
        self.next_eval = T0 + 60
        self.firing = False
        self.triggers: list[float] = []

    def add(self, ts: float, lat: float) -> None:
        while ts >= self.next_eval:
            self._evaluate(self.next_eval)
            self.next_eval += 60
        self.window.append((ts, lat))

    def _evaluate(self, now: float) -> None:
        while self.window and self.window[0][0] < now - SHORT_S:
            self.window.popleft()
        if not self.window:
            return
        ordered = sorted(lat for _, lat in self.window)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        if p95 > THRESHOLD_MS and not self.firing:
            self.firing = True
            self.triggers.append(now)
        elif p95 <= THRESHOLD_MS:
            self.firing = False


def run_stream(
    rng: random.Random, every: float, seconds: float, step_at: float | None, factor: float
) -> tuple[list[float], list[float]]:
    """Page triggers (event time) of the burn-rate engine and of the static p95 anchor."""
    clock = Clock()
    clock.t = T0
    mon = SloMonitor([objective()], clock=clock)
    anchor = StaticP95()
    fired: list[float] = []
    last_tick = T0
    for n, (ts, lat) in enumerate(calls(rng, every, seconds, step_at, factor)):
        clock.t = ts
        alerts = mon.on_span(span(ts, lat, n))
        if ts - last_tick >= 60:
            last_tick = ts
            alerts += mon.tick()
        fired.extend(a.ts.timestamp() for a in alerts if a.state is AlertState.ALERT)
        anchor.add(ts, lat)
        if (
            step_at is not None
            and fired
            and fired[-1] >= step_at
            and anchor.triggers
            and anchor.triggers[-1] >= step_at
        ):
            break
    return fired, anchor.triggers


def detection(factors: list[float], streams: int, every: float, seed: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for factor in factors:
        rng = random.Random(seed + int(factor * 100))
        ours: list[float] = []
        theirs: list[float] = []
        missed = early_ours = early_anchor = 0
        for _ in range(streams):
            step = T0 + BASE_S + rng.uniform(0, 600)
            fired, anchor = run_stream(rng, every, BASE_S + 600 + MAX_AFTER_S, step, factor)
            early_ours += sum(1 for t in fired if t < step)
            early_anchor += sum(1 for t in anchor if t < step)
            after = [t - step for t in fired if t >= step]
            if after:
                ours.append(after[0])
            else:
                missed += 1
            after_anchor = [t - step for t in anchor if t >= step]
            if after_anchor:
                theirs.append(after_anchor[0])
        bad = 1 - statistics.NormalDist(math.log(MEDIAN_MS * factor), SIGMA).cdf(math.log(THRESHOLD_MS))
        out[f"x{factor:g}"] = {
            "bad_share_after_step": round(bad, 4),
            "predicted_s": round(3600 * 14.4 * (1 - TARGET) / bad, 1)
            if bad * 1 > 14.4 * (1 - TARGET)
            else -1.0,
            "burn_rate_delay_median_s": float(statistics.median(ours)) if ours else -1.0,
            "burn_rate_missed": float(missed),
            "anchor_p95_delay_median_s": float(statistics.median(theirs)) if theirs else -1.0,
            "streams": float(streams),
        }
    return out


def false_alerts(windows: int, every: float, seed: int) -> tuple[float, float]:
    """Triggers per 10,000 five-minute windows of a stable stream: engine, anchor."""
    rng = random.Random(seed)
    fired, anchor = run_stream(rng, every, windows * SHORT_S, None, 1.0)
    return 10_000 * len(fired) / windows, 10_000 * len(anchor) / windows


def failover(factor: float, streams: int, seed: int) -> tuple[float, float, int, int]:
    """Median seconds from a slowdown to the circuit opening (-1: never), latency objective rule
    then p95 bound; and how many of the streams opened at all under each."""
    results: list[list[float]] = [[], []]
    base = {"window_s": 30, "min_volume": 20, "half_open_after_s": 30, "probe_volume": 5}
    configs = [
        parse_health_config(
            {
                "providers": {
                    **base,
                    "latency_objective": {"threshold_ms": THRESHOLD_MS, "target": CIRCUIT_TARGET},
                }
            }
        ).providers,
        parse_health_config({"providers": {**base, "latency_p95_ms": THRESHOLD_MS}}).providers,
    ]
    for i, cfg in enumerate(configs):
        rng = random.Random(seed)
        for _ in range(streams):
            clock = Clock()
            clock.t = T0
            mon = ProviderHealthMonitor(cfg, clock)
            step = T0 + 120 + rng.uniform(0, 1)
            opened = None
            t, last_tick = T0, T0
            while t < step + 600 and opened is None:
                clock.t = t
                mon.record("openai", "gpt-4o", t, False, latency(rng, factor if t >= step else 1.0))
                if t - last_tick >= 1.0:
                    last_tick = t
                    for tr in mon.tick():
                        if tr.new is CircuitState.OPEN:
                            opened = t
                t += 0.1  # 10 calls a second
            if opened is not None:
                results[i].append(opened - step)
    return (
        float(statistics.median(results[0])) if results[0] else -1.0,
        float(statistics.median(results[1])) if results[1] else -1.0,
        len(results[0]),
        len(results[1]),
    )


def run(quick: bool, every: float) -> dict[str, object]:
    t0 = time.perf_counter()
    factors = [2.0, 3.0, 10.0]
    streams = 3 if quick else 10
    windows = 1000 if quick else 10_000
    det = detection(factors, streams, every, seed=42)
    ours_fa, anchor_fa = false_alerts(windows, every, seed=7)
    fo_streams, stable_streams = (3, 4) if quick else (20, 20)
    fo_ours, fo_anchor, _, _ = failover(3.0, fo_streams, seed=5)
    _, _, stable_ours, stable_anchor = failover(1.0, stable_streams, seed=6)
    return {
        "every_s": every,
        "detection": det,
        "stable_windows": float(windows),
        "false_alerts_per_10k_windows": ours_fa,
        "anchor_p95_false_alerts_per_10k_windows": anchor_fa,
        "failover_delay_s_x3": fo_ours,
        "anchor_p95_failover_delay_s_x3": fo_anchor,
        "stable_streams": float(stable_streams),
        "stable_circuits_opened": float(stable_ours),
        "anchor_p95_stable_circuits_opened": float(stable_anchor),
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "loadavg_1m": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between calls (event time)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = run(args.quick, args.every)
    print(
        f"SLO benchmark: one call every {args.every:g} s; objective 99 % within 1 s; page = 14.4x over 1 h and 5 min"
    )
    print(
        f"{'regression':>10} {'bad share':>9} {'predicted':>9} {'burn-rate delay':>15} {'missed':>6} {'static p95 delay':>16}"
    )
    for name, d in res["detection"].items():  # type: ignore[attr-defined]
        print(
            f"{name:>10} {d['bad_share_after_step']:>9.1%} {d['predicted_s']:>8.0f}s "
            f"{d['burn_rate_delay_median_s']:>14.0f}s {d['burn_rate_missed']:>6.0f} {d['anchor_p95_delay_median_s']:>15.0f}s"
        )
    print(
        f"false alerts per 10k stable 5-min windows ({res['stable_windows']:.0f} windows): "
        f"burn-rate {res['false_alerts_per_10k_windows']:.1f}, static p95 {res['anchor_p95_false_alerts_per_10k_windows']:.1f}"
    )
    print(
        f"failover delay (x3 slowdown, 10 calls/s, 30 s circuit window): latency rule (90 % within 1 s) "
        f"{res['failover_delay_s_x3']:.1f} s, p95 bound {res['anchor_p95_failover_delay_s_x3']:.1f} s; "
        f"healthy streams (10 min each) whose circuit opened: {res['stable_circuits_opened']:.0f} / "
        f"{res['anchor_p95_stable_circuits_opened']:.0f} of {res['stable_streams']:.0f}"
    )
    print(f"elapsed {res['elapsed_s']} s, load average {res['loadavg_1m']:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
