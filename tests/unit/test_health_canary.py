"""Canary judge on seeded data with a fixed clock."""

from __future__ import annotations

import random

from agentledger.streams.health.canary import CanaryJudge, two_proportion_p
from agentledger.streams.healthconfig import CanaryConfig


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


CFG = CanaryConfig(task_idle_s=1, min_tasks=30, promote_min_tasks=150, live_window_s=600)


def _run(cost_c: float, err_c: float, q_c: float, tasks: int = 200, seed: int = 1) -> list:
    rng = random.Random(seed)
    clock = Clock()
    judge = CanaryJudge(CFG, clock)
    verdicts = []
    for i in range(tasks):
        for version, cost, err, q in (("v1", 0.010, 0.02, 0.8), ("v2", cost_c, err_c, q_c)):
            ts = clock.t
            judge.record_cost(
                "acme", "planner", version, f"{version}-{i:06d}", rng.gauss(cost, cost * 0.2), ts
            )
            judge.record_span("acme", "planner", version, rng.random() < err, ts)
            judge.record_quality("acme", "planner", version, "helpfulness", rng.gauss(q, 0.1), ts)
        clock.t += 2  # the previous tasks are now idle: finished
        verdicts.extend(judge.evaluate())
    return verdicts


def test_clearly_costlier_canary_is_rolled_back_to_the_baseline() -> None:
    verdicts = _run(cost_c=0.015, err_c=0.02, q_c=0.8)
    assert verdicts[0].verdict == "undecided"
    final = verdicts[-1]
    assert final.verdict == "rollback" and final.baseline == "v1" and final.canary == "v2"
    assert final.figures["cost_per_task_canary"] > final.figures["cost_per_task_baseline"]
    assert any("cost per task" in r for r in final.reasons)


def test_worse_quality_or_errors_roll_back() -> None:
    assert _run(cost_c=0.010, err_c=0.02, q_c=0.6)[-1].verdict == "rollback"
    assert _run(cost_c=0.010, err_c=0.25, q_c=0.8)[-1].verdict == "rollback"


def test_equal_canary_is_promoted_never_rolled_back() -> None:
    for seed in range(5):
        verdicts = _run(cost_c=0.010, err_c=0.02, q_c=0.8, seed=seed)
        assert "rollback" not in [v.verdict for v in verdicts]
        assert verdicts[-1].verdict == "promote"


def test_verdicts_are_published_only_when_they_change() -> None:
    verdicts = _run(cost_c=0.015, err_c=0.02, q_c=0.8)
    kinds = [v.verdict for v in verdicts]
    assert kinds == ["undecided", "rollback"]


def test_single_live_version_has_no_verdict() -> None:
    clock = Clock()
    judge = CanaryJudge(CFG, clock)
    judge.record_span("acme", "planner", "v1", False, clock.t)
    clock.t += 601
    judge.record_span("acme", "planner", "v2", False, clock.t)  # v1 is no longer live
    assert judge.evaluate() == []
    clock.t += 700  # v1 unseen for more than twice the live window: forgotten
    judge.record_span("acme", "planner", "v2", False, clock.t)
    assert judge.evaluate() == [] and set(judge.agents["acme", "planner"]) == {"v2"}


def test_two_proportion_p() -> None:
    assert two_proportion_p(50, 200, 5, 200) < 1e-6
    assert two_proportion_p(5, 200, 5, 200) == 0.5
