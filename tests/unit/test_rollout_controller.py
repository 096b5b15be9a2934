"""The rollout controller and the version pick, as pure logic (a fake clock, no broker)."""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind
from agentledger.rollout import RolloutPolicy, RolloutRequest, RolloutStep, pick, share
from agentledger.streams.health.rollout import RolloutController


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def policy(**kw: Any) -> RolloutPolicy:
    base: dict[str, Any] = {
        "rollout_id": "writer-v2", "tenant": "acme", "agent": "writer", "baseline": "v1", "candidate": "v2",
        "steps": [RolloutStep(weight_pct=w, min_tasks=40, min_s=30) for w in (5, 25, 50, 100)],
    }  # fmt: skip
    base.update(kw)
    return RolloutPolicy.model_validate(base)


def drive(
    ctl: RolloutController, clock: Clock, tasks: int, cost: dict[str, float], seed: int = 1
) -> dict[str, Any]:
    """Send up to ``tasks`` tasks through the current weight (one every 0.5 s; a task is
    finished when idle for the judge's ``task_idle_s``), evaluating every 5 s."""
    rnd = random.Random(seed)
    run = ctl.runs["acme/writer"]
    seen = {"v1": 0, "v2": 0}
    changes: list[Any] = []
    per_step: dict[int, list[str]] = {}
    for i in range(tasks):
        trace = uuid.UUID(int=rnd.getrandbits(128)).hex
        version = pick(trace, run.policy.rollout_id, run.weight, "v1", "v2")
        seen[version] += 1
        per_step.setdefault(run.step, []).append(version)
        ctl.record_cost("acme", "writer", version, trace, cost[version] * rnd.lognormvariate(0, 0.3), clock.t)
        ctl.record_span("acme", "writer", version, error=False)
        clock.t += 0.5
        if i % 10 == 0:
            changes += ctl.evaluate()
        if run.status in ("promoted", "rolled_back", "aborted"):
            break
    return {"changes": changes, "seen": seen, "per_step": per_step}


def test_a_version_as_good_as_the_baseline_goes_to_everyone_step_by_step() -> None:
    clock = Clock()
    ctl = RolloutController(clock)
    ctl.upsert(policy())
    out = drive(ctl, clock, 20_000, {"v1": 0.01, "v2": 0.01})
    weights = [c.evidence["weight_pct"] for c in out["changes"]]
    assert weights == [5.0, 25.0, 50.0, 100.0]
    assert out["changes"][-1].status == "promoted"
    # the share of tasks seen at each step is within binomial error of its weight
    for step, versions in out["per_step"].items():
        if step == 3:
            continue
        w = (5, 25, 50)[step] / 100
        n = len(versions)
        got = versions.count("v2") / n
        assert abs(got - w) <= 4 * math.sqrt(w * (1 - w) / n), (step, got, n)


def test_a_version_costing_twice_as_much_is_rolled_back_at_the_first_step() -> None:
    clock = Clock()
    ctl = RolloutController(clock)
    ctl.upsert(policy())
    out = drive(ctl, clock, 20_000, {"v1": 0.01, "v2": 0.02})
    last = out["changes"][-1]
    assert last.status == "rolled_back" and last.weight == 0.0
    assert last.step == 0, "rolled back at the 5 % step"
    assert "cost per task" in last.reason
    assert int(last.evidence["tasks_canary"]) >= 30 and float(last.evidence["cost_p"]) < 0.001
    assert out["seen"]["v2"] < 0.08 * sum(out["seen"].values())
    assert not ctl.manages("acme", "writer")


def test_no_step_advances_before_its_minimum_time_and_tasks() -> None:
    clock = Clock()
    ctl = RolloutController(clock)
    ctl.upsert(
        policy(steps=[RolloutStep(weight_pct=50, min_tasks=10, min_s=600), RolloutStep(weight_pct=100)])
    )
    out = drive(ctl, clock, 400, {"v1": 0.01, "v2": 0.01})  # 200 s of tasks: enough tasks, too little time
    assert [c.evidence["weight_pct"] for c in out["changes"]] == [50.0]
    clock.t += 600
    assert [c.status for c in ctl.evaluate()] == ["promoted"]


@pytest.mark.parametrize(
    ("request_", "status", "weight"),
    [
        (RolloutRequest.PAUSE, "paused", 0.05),
        (RolloutRequest.PROMOTE, "promoted", 1.0),
        (RolloutRequest.ABORT, "aborted", 0.0),
    ],
)
def test_a_human_pauses_promotes_or_aborts_once_per_request(
    request_: RolloutRequest, status: str, weight: float
) -> None:
    clock = Clock()
    ctl = RolloutController(clock)
    ctl.upsert(policy())
    ctl.evaluate()  # announced at 5 %
    ctl.upsert(policy(request=request_, request_id="r1", requested_by="ops@acme"))
    (change,) = ctl.evaluate()
    assert (change.status, change.weight) == (status, weight)
    assert "ops@acme" in change.reason
    assert ctl.evaluate() == []  # the same request is not acted on twice


def test_a_paused_rollout_holds_its_step_and_resumes() -> None:
    clock = Clock()
    ctl = RolloutController(clock)
    ctl.upsert(policy())
    ctl.evaluate()
    ctl.upsert(policy(request=RolloutRequest.PAUSE, request_id="r1"))
    ctl.evaluate()
    out = drive(ctl, clock, 2000, {"v1": 0.01, "v2": 0.01})
    assert out["changes"] == []  # no step while paused
    ctl.upsert(policy(request=RolloutRequest.RUN, request_id="r2"))
    (change,) = ctl.evaluate()
    assert change.status == "running" and change.weight == 0.05


def route(step: int, weight: float, reason: str, ts: float) -> ControlCommand:
    return ControlCommand(
        command_id=uuid.uuid4().hex, ts=datetime.fromtimestamp(ts, UTC),
        scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent="writer"), action=Action.ROUTE, reason=reason,
        params=CommandParams(target_version="v2", baseline_version="v1", weight=weight, rollout_id="writer-v2", step=step),
    )  # fmt: skip


def test_a_restarted_controller_resumes_at_the_step_on_the_control_topic() -> None:
    clock = Clock()
    ctl = RolloutController(clock)
    ctl.upsert(policy())
    ctl.adopt(route(2, 0.5, "step 3: 50% of tasks to v2", clock.t - 10))
    run = ctl.runs["acme/writer"]
    assert (run.step, run.weight, run.status) == (2, 0.5, "running")
    assert ctl.evaluate() == []  # nothing to announce: the topic already says so
    out = drive(ctl, clock, 20_000, {"v1": 0.01, "v2": 0.01})
    assert [c.evidence["weight_pct"] for c in out["changes"]] == [100.0]


def test_a_route_for_another_rollout_is_not_adopted() -> None:
    clock = Clock()
    ctl = RolloutController(clock)
    ctl.upsert(policy(rollout_id="writer-v3", candidate="v3"))
    ctl.adopt(route(2, 0.5, "step 3", clock.t))
    assert ctl.runs["acme/writer"].step == 0


def test_the_pick_is_stable_monotone_and_even() -> None:
    traces = [uuid.UUID(int=random.Random(i).getrandbits(128)).hex for i in range(20_000)]
    shares = [share(t, "r") for t in traces]
    assert shares == [share(t, "r") for t in traces]  # every process computes the same
    for w in (0.05, 0.25, 0.5):
        on = sum(s < w for s in shares) / len(shares)
        assert abs(on - w) <= 4 * math.sqrt(w * (1 - w) / len(shares))
    # raising the weight only moves baseline tasks to the candidate
    for t in traces[:2000]:
        if pick(t, "r", 0.05, "v1", "v2") == "v2":
            assert pick(t, "r", 0.25, "v1", "v2") == "v2"
    # another rollout salts differently: not the same 5 % of traces every time
    assert {t for t in traces if share(t, "a") < 0.05} != {t for t in traces if share(t, "b") < 0.05}


def test_a_rollout_policy_must_rise_to_everyone() -> None:
    with pytest.raises(ValidationError, match="last step"):
        policy(steps=[RolloutStep(weight_pct=5), RolloutStep(weight_pct=50)])
    with pytest.raises(ValidationError, match="increasing"):
        policy(steps=[RolloutStep(weight_pct=50), RolloutStep(weight_pct=5), RolloutStep(weight_pct=100)])
    with pytest.raises(ValidationError, match="differ"):
        policy(candidate="v1")
    with pytest.raises(ValidationError, match="route needs"):
        ControlCommand(
            command_id=uuid.uuid4().hex, ts=datetime.now(UTC), scope=Scope(kind=ScopeKind.AGENT, tenant="a", agent="w"),
            action=Action.ROUTE, reason="x", params=CommandParams(target_version="v2"),
        )  # fmt: skip


def test_an_outage_that_starts_before_the_first_candidate_task_is_not_blamed_on_the_candidate() -> None:
    """The demo's case on a slow machine: the baseline serves clean tasks while the Guards
    have not yet received the first route; then a provider outage hits both versions alike.
    Judged over different periods the candidate would look worse; over the same period it
    does not."""
    clock = Clock()
    ctl = RolloutController(clock)
    ctl.upsert(policy(gate={"min_tasks": 12}))
    ctl.evaluate()  # announces 5 %
    rnd = random.Random(7)
    for i in range(300):  # before any candidate task: the baseline alone, no errors
        trace = f"early-{i}"
        ctl.record_cost("acme", "writer", "v1", trace, 0.01, clock.t)
        ctl.record_span("acme", "writer", "v1", error=False)
        clock.t += 0.05
    changes = []
    for i in range(600):  # the outage: every other call fails, whichever the version
        version = "v2" if i % 4 == 0 else "v1"
        trace = f"late-{i}"
        ctl.record_cost("acme", "writer", version, trace, 0.01 * rnd.lognormvariate(0, 0.1), clock.t)
        ctl.record_span("acme", "writer", version, error=rnd.random() < 0.5)
        clock.t += 0.5
        if i % 10 == 0:
            changes += ctl.evaluate()
    assert not [c for c in changes if c.status == "rolled_back"], [c.reason for c in changes]
    assert ctl.runs["acme/writer"].baseline.spans == 450  # the clean early spans did not count
