"""Progressive delivery: how many tasks see a bad agent version before it is rolled back, and
how long a good one takes to reach everyone.

Simulated traffic (no broker: the controller, the canary judge and the version pick are pure)
at 2 tasks per second on a simulated clock. A bad version costs 2x per task, or scores 10 %
lower on quality. Two ways to ship it, judged by the same verdict (the canary judge's
one-sided tests and margins):

* the stepped rollout (5 % -> 25 % -> 50 % -> 100 %, each step at least 50 candidate tasks
  and 60 s: the policy defaults), driven by ``RolloutController``;
* the anchor, in the same run: a static 50 % split (what the demo did by hand), judged by
  ``CanaryJudge`` until it says rollback.

Usage: .venv/bin/python benchmarks/rollout.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from dataclasses import dataclass

from agentledger.rollout import RolloutPolicy, pick
from agentledger.streams.health.canary import CanaryJudge
from agentledger.streams.health.rollout import RolloutController
from agentledger.streams.healthconfig import CanaryConfig

TASKS_PER_S = 2.0
EVAL_EVERY_S = 5.0
MAX_TASKS = 50_000


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@dataclass(frozen=True, slots=True)
class Version:
    cost: float  # mean cost per task, USD
    quality: float  # mean quality score


BASE = Version(0.010, 0.80)
BAD = {"cost_2x": Version(0.020, 0.80), "quality_minus_10pct": Version(0.010, 0.72)}


def _task(rnd: random.Random, v: Version) -> tuple[float, float]:
    return v.cost * rnd.lognormvariate(0, 0.3), min(1.0, max(0.0, rnd.gauss(v.quality, 0.1)))


def stepped(candidate: Version, seed: int) -> tuple[int, int, float, str]:
    """(candidate tasks, all tasks, seconds, final status) until the rollout ends."""
    rnd = random.Random(seed)
    clock = Clock()
    start = clock.t
    ctl = RolloutController(clock)
    ctl.upsert(RolloutPolicy(rollout_id="r", tenant="t", agent="a", baseline="v1", candidate="v2"))
    run = ctl.runs["t/a"]
    versions = {"v1": BASE, "v2": candidate}
    exposed = total = 0
    next_eval = clock.t
    ctl.evaluate()
    while total < MAX_TASKS and run.status in ("running", "paused"):
        trace = uuid.UUID(int=rnd.getrandbits(128)).hex
        version = pick(trace, "r", run.weight, "v1", "v2")
        cost, quality = _task(rnd, versions[version])
        ctl.record_cost("t", "a", version, trace, cost, clock.t)
        ctl.record_span("t", "a", version, error=False)
        ctl.record_quality("t", "a", version, "score", quality)
        exposed += version == "v2"
        total += 1
        clock.t += 1 / TASKS_PER_S
        if clock.t >= next_eval:
            ctl.evaluate()
            next_eval = clock.t + EVAL_EVERY_S
    return exposed, total, clock.t - start, run.status


def static_split(candidate: Version, seed: int, share: float = 0.5) -> tuple[int, int, float, str]:
    """The anchor: a fixed split judged by the canary judge until it says rollback/promote."""
    rnd = random.Random(seed)
    clock = Clock()
    start = clock.t
    gate = RolloutPolicy(rollout_id="r", tenant="t", agent="a", baseline="v1", candidate="v2").gate
    judge = CanaryJudge(
        CanaryConfig(min_tasks=gate.min_tasks, alpha=gate.alpha, cost_margin=gate.cost_margin,
                     error_margin=gate.error_margin, quality_margin=gate.quality_margin),
        clock,
    )  # fmt: skip
    versions = {"v1": BASE, "v2": candidate}
    exposed = total = 0
    next_eval = clock.t
    verdict = "undecided"
    # the baseline is live first (the canary judge takes the oldest live version as baseline)
    judge.record_span("t", "a", "v1", False, clock.t - 1)
    while total < MAX_TASKS and verdict == "undecided":
        trace = uuid.UUID(int=rnd.getrandbits(128)).hex
        version = pick(trace, "static", share, "v1", "v2")
        cost, quality = _task(rnd, versions[version])
        judge.record_cost("t", "a", version, trace, cost, clock.t)
        judge.record_span("t", "a", version, False, clock.t)
        judge.record_quality("t", "a", version, "score", quality, clock.t)
        exposed += version == "v2"
        total += 1
        clock.t += 1 / TASKS_PER_S
        if clock.t >= next_eval:
            for v in judge.evaluate():
                verdict = v.verdict
            next_eval = clock.t + EVAL_EVERY_S
    return exposed, total, clock.t - start, verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="5 seeds instead of 40")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    seeds = range(5 if args.quick else 40)
    started = time.perf_counter()
    res: dict[str, float | int | str] = {"seeds": len(seeds), "tasks_per_s": TASKS_PER_S}
    rows: list[tuple[str, str, str, str]] = []
    for name, bad in BAD.items():
        step = [stepped(bad, s) for s in seeds]
        anchor = [static_split(bad, s) for s in seeds]
        res[f"{name}_exposed_tasks_median"] = statistics.median(r[0] for r in step)
        res[f"{name}_rolled_back_share"] = sum(r[3] == "rolled_back" for r in step) / len(step)
        res[f"{name}_anchor_static50_exposed_tasks_median"] = statistics.median(r[0] for r in anchor)
        res[f"{name}_anchor_rolled_back_share"] = sum(r[3] == "rollback" for r in anchor) / len(anchor)
        res[f"{name}_exposed_ratio_vs_static50"] = round(
            float(res[f"{name}_exposed_tasks_median"])
            / max(1.0, float(res[f"{name}_anchor_static50_exposed_tasks_median"])),
            3,
        )
        rows.append((name, f"{res[f'{name}_exposed_tasks_median']:.0f}", f"{res[f'{name}_anchor_static50_exposed_tasks_median']:.0f}",
                     f"{res[f'{name}_exposed_ratio_vs_static50']:.2f}"))  # fmt: skip
    good = [stepped(BASE, s) for s in seeds]
    res["good_promoted_share"] = sum(r[3] == "promoted" for r in good) / len(good)
    res["good_time_to_100pct_s_median"] = statistics.median(r[2] for r in good)
    res["good_tasks_to_100pct_median"] = statistics.median(r[1] for r in good)
    res["wall_s"] = round(time.perf_counter() - started, 2)
    print(f"rollout benchmark: {len(seeds)} seeds per case, {TASKS_PER_S:g} tasks/s simulated")
    print(f"{'bad version':<22}{'stepped: exposed':>18}{'static 50%: exposed':>22}{'ratio':>8}")
    for r in rows:
        print(f"{r[0]:<22}{r[1]:>18}{r[2]:>22}{r[3]:>8}")
    print(
        f"good version: promoted in {res['good_promoted_share']:.0%} of runs, time to 100 % median "
        f"{res['good_time_to_100pct_s_median']:.0f} s ({res['good_tasks_to_100pct_median']:.0f} tasks)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
