"""The rollout controller: moves a candidate version through its traffic steps, gated by the
canary verdict (cost per task, error rate, quality; one-sided tests with margins).

Per rollout it keeps the baseline's and the candidate's facts (``canary.VersionStats``), the
baseline's only from the candidate's first fact on (the two are judged over the same period),
and, at every ``evaluate``:

* any metric of the candidate significantly worse (the canary judge's rule) → rolled back:
  weight 0, at whatever step;
* the step held long enough (``min_s``) with enough candidate tasks finished at it
  (``min_tasks``) and nothing worse → the next step; moving onto the last step (100 %)
  promotes it;
* a human's request (``pause``, ``run``, ``promote``, ``abort``; once per ``request_id``) wins.

Each change is a ``RolloutChange``: the health engine turns it into a ``route`` command on the
control topic (the state every Guard and a restarted controller read back: ``adopt``) and an
alert carrying the evidence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from agentledger.events import ControlCommand
from agentledger.rollout import RolloutPolicy, RolloutRequest
from agentledger.streams.healthconfig import CanaryConfig

from .canary import CanaryJudge, VersionStats

Status = Literal["running", "paused", "promoted", "rolled_back", "aborted"]
FINAL: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted"})


@dataclass(frozen=True, slots=True)
class RolloutChange:
    policy: RolloutPolicy
    step: int
    weight: float  # share of tasks to the candidate, 0..1
    status: Status
    reason: str
    evidence: dict[str, float | int | str]


@dataclass(slots=True)
class RolloutRun:
    policy: RolloutPolicy
    judge: CanaryJudge
    step: int = 0
    status: Status = "running"
    step_started: float = 0.0
    weight: float = 0.0
    baseline: VersionStats = field(default_factory=lambda: VersionStats(0.0, 0.0))
    candidate: VersionStats = field(default_factory=lambda: VersionStats(0.0, 0.0))
    finished: int = 0  # candidate tasks finished since the rollout began
    tasks_before_step: int = 0  # ... of which before this step began
    request_id: str | None = None  # the last human request acted on
    announced: bool = False  # the current state is on the control topic
    live: bool = False  # the candidate has served a task: the baseline's facts count from then

    def stats(self, version: str) -> VersionStats | None:
        """Where a fact of ``version`` goes. The baseline's facts count only while the
        candidate is live, so both versions are compared over the same period: a provider
        outage before the Guards received the first route would otherwise weigh on the
        candidate's samples and not on the baseline's (a rollback for the wrong reason)."""
        if version == self.policy.candidate:
            self.live = True
            return self.candidate
        if version == self.policy.baseline and self.live:
            return self.baseline
        return None


def _weight(policy: RolloutPolicy, step: int) -> float:
    return policy.steps[step].weight_pct / 100.0


class RolloutController:
    def __init__(self, clock: Callable[[], float] = time.time, task_idle_s: float = 30.0) -> None:
        """``task_idle_s``: a trace idle this long is a finished task (the canary's setting)."""
        self.clock = clock
        self.task_idle_s = task_idle_s
        self.runs: dict[str, RolloutRun] = {}  # key tenant/agent

    # -- policies and state read back ------------------------------------------------------

    def upsert(self, policy: RolloutPolicy) -> None:
        run = self.runs.get(policy.key)
        if run is None or run.policy.rollout_id != policy.rollout_id:
            gate = policy.gate
            cfg = CanaryConfig(
                task_idle_s=self.task_idle_s, min_tasks=gate.min_tasks, alpha=gate.alpha, cost_margin=gate.cost_margin,
                error_margin=gate.error_margin, quality_margin=gate.quality_margin,
            )  # fmt: skip
            now = self.clock()
            self.runs[policy.key] = RolloutRun(
                policy, CanaryJudge(cfg, self.clock), step_started=now, weight=_weight(policy, 0)
            )
            return
        run.policy = policy  # a human request or new step settings: same rollout

    def delete(self, key: str) -> None:
        self.runs.pop(key, None)

    def adopt(self, cmd: ControlCommand) -> None:
        """A route command read back from the control topic (after a restart): resume the
        rollout it names at its step, or keep it final."""
        p = cmd.params
        run = self.runs.get(f"{cmd.scope.tenant}/{cmd.scope.agent}")
        if run is None or p.rollout_id != run.policy.rollout_id or p.step is None or p.weight is None:
            return
        run.step = min(p.step, len(run.policy.steps) - 1)
        run.weight = p.weight
        run.step_started = cmd.ts.timestamp()
        run.announced = True
        if p.weight <= 0.0:
            run.status = "aborted" if cmd.reason.startswith("aborted") else "rolled_back"
        elif p.weight >= 1.0 and run.step == len(run.policy.steps) - 1:
            run.status = "promoted"
        elif cmd.reason.startswith("paused"):
            run.status = "paused"
        run.request_id = run.policy.request_id  # a request already acted on before the restart

    # -- facts ----------------------------------------------------------------------------------

    def record_cost(
        self, tenant: str, agent: str, version: str, trace_id: str, cost: float, ts: float
    ) -> None:
        run = self.runs.get(f"{tenant}/{agent}")
        st = run.stats(version) if run else None
        if st is not None:
            spent, _ = st.open_tasks.get(trace_id, (0.0, 0.0))
            st.open_tasks[trace_id] = (spent + cost, self.clock())
            st.last_seen = max(st.last_seen, ts)

    def record_span(self, tenant: str, agent: str, version: str, error: bool) -> None:
        run = self.runs.get(f"{tenant}/{agent}")
        st = run.stats(version) if run else None
        if st is not None:
            st.spans += 1
            st.errors += int(error)

    def record_quality(self, tenant: str, agent: str, version: str, metric: str, score: float) -> None:
        run = self.runs.get(f"{tenant}/{agent}")
        st = run.stats(version) if run else None
        if st is not None:
            from collections import deque

            st.quality.setdefault(metric, deque(maxlen=5000)).append(score)

    def manages(self, tenant: str, agent: str) -> bool:
        """Whether a rollout (not final) decides this agent's routing: the canary judge then
        stays out of it (one authority for the agent's routing)."""
        run = self.runs.get(f"{tenant}/{agent}")
        return run is not None and run.status not in FINAL

    # -- decisions ------------------------------------------------------------------------------

    def evaluate(self, holds: Callable[[str, str], bool] | None = None) -> list[RolloutChange]:
        """Decide every rollout (or those of agents ``holds`` says this process judges)."""
        now = self.clock()
        out: list[RolloutChange] = []
        for run in self.runs.values():
            if holds is not None and not holds(run.policy.tenant, run.policy.agent):
                continue
            change = self._step(run, now)
            if change is not None:
                run.announced = True
                out.append(change)
        return out

    def _change(self, run: RolloutRun, reason: str, figures: dict[str, float | int | str]) -> RolloutChange:
        p = run.policy
        evidence: dict[str, float | int | str] = {
            "rollout_id": p.rollout_id, "baseline_version": p.baseline, "canary_version": p.candidate,
            "step": run.step, "weight_pct": round(run.weight * 100, 3), "status": run.status,
            "candidate_tasks_at_step": run.finished - run.tasks_before_step,
            **figures,
        }  # fmt: skip
        return RolloutChange(p, run.step, run.weight, run.status, reason[:1024], evidence)

    def _step(self, run: RolloutRun, now: float) -> RolloutChange | None:
        p = run.policy
        judge = run.judge
        judge._close_tasks(run.baseline, now)
        before = len(run.candidate.open_tasks)
        judge._close_tasks(run.candidate, now)
        run.finished += before - len(run.candidate.open_tasks)
        if p.request_id is not None and p.request_id != run.request_id:
            run.request_id = p.request_id
            who = p.requested_by or "a human"
            if p.request is RolloutRequest.ABORT and run.status not in FINAL:
                run.status, run.weight = "aborted", 0.0
                return self._change(run, f"aborted by {who}: every task to {p.baseline}", {})
            if p.request is RolloutRequest.PROMOTE and run.status not in FINAL:
                run.status, run.step, run.weight = "promoted", len(p.steps) - 1, 1.0
                return self._change(run, f"promoted by {who}: every task to {p.candidate}", {})
            if p.request is RolloutRequest.PAUSE and run.status == "running":
                run.status = "paused"
                return self._change(run, f"paused by {who} at {run.weight:.0%}", {})
            if p.request is RolloutRequest.RUN and run.status == "paused":
                run.status, run.step_started = "running", now
                run.tasks_before_step = run.finished
                return self._change(run, f"resumed by {who} at {run.weight:.0%}", {})
        if not run.announced:
            verb = "started" if run.status == "running" else run.status
            return self._change(run, f"rollout {verb}: {run.weight:.0%} of tasks to {p.candidate}", {})
        if run.status != "running":
            return None
        verdict = judge.judge(p.tenant, p.agent, p.baseline, run.baseline, p.candidate, run.candidate)
        if verdict.verdict == "rollback":
            run.status, run.weight = "rolled_back", 0.0
            why = "; ".join(verdict.reasons)
            return self._change(run, f"rolled back at step {run.step + 1}: {why}", verdict.figures)
        step = p.steps[run.step]
        at_step = run.finished - run.tasks_before_step
        if at_step < step.min_tasks or now - run.step_started < step.min_s:
            return None
        run.step += 1
        run.weight = _weight(p, run.step)
        run.step_started = now
        run.tasks_before_step = run.finished
        if run.step == len(p.steps) - 1:
            run.status = "promoted"
            return self._change(
                run, f"promoted: no metric worse after {at_step} tasks at the last gate", verdict.figures
            )
        return self._change(
            run, f"step {run.step + 1}: {run.weight:.0%} of tasks to {p.candidate} ({at_step} tasks, no metric worse)",
            verdict.figures,
        )  # fmt: skip
