"""Progressive delivery of an agent version: the rollout policy, and the one rule every
process uses to pick a task's version.

A rollout moves a candidate version of one agent through steps of traffic (5 % → 25 % → 50 %
→ 100 % by default). The controller in the health worker advances a step when the canary gate
passes at it, and rolls back at any step when a metric is worse; each change is a ``route``
command on the control topic (``events.Action.ROUTE``) that every Guard obeys.

``share(trace_id, salt)`` is the pick: a hash of the trace id, so the same task gets the same
version in every process, and traces spread evenly whatever the number of processes (no
per-process coin). A trace is on the candidate when its share is below the step's weight:
raising the weight only moves baseline traces to the candidate, never the reverse.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentledger.events import Name, UtcDatetime, Version

DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RolloutStep(_Model):
    weight_pct: float = Field(gt=0, le=100, description="Share of tasks sent to the candidate, in %.")
    min_tasks: int = Field(
        default=50, ge=1, description="Candidate tasks finished at this step before it may advance."
    )
    min_s: float = Field(default=60.0, ge=0, description="Seconds at this step before it may advance.")


class RolloutGate(_Model):
    """When the candidate is worse than the baseline (the canary verdict's tests and margins)."""

    alpha: float = Field(default=0.001, gt=0, lt=1, description="Significance of each one-sided test.")
    cost_margin: float = Field(
        default=0.10, ge=0, description="Relative cost-per-task increase that matters."
    )
    error_margin: float = Field(default=0.02, ge=0, description="Absolute error-rate increase that matters.")
    quality_margin: float = Field(default=0.05, ge=0, description="Relative quality drop that matters.")
    min_tasks: int = Field(default=30, ge=5, description="Tasks of each version before a metric is tested.")


class RolloutRequest(StrEnum):
    """What a human asked for (API / CLI); the controller acts on it once per ``request_id``."""

    RUN = "run"
    PAUSE = "pause"
    PROMOTE = "promote"
    ABORT = "abort"


class RolloutPolicy(_Model):
    """A rollout of ``candidate`` over ``baseline`` for one agent of one tenant. On the
    compacted rollouts topic, key ``tenant/agent`` (one rollout per agent at a time)."""

    v: Literal[1] = 1
    rollout_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-.]+$")
    tenant: Name
    agent: Name
    baseline: Annotated[Version, Field(min_length=1)]
    candidate: Annotated[Version, Field(min_length=1)]
    steps: list[RolloutStep] = Field(
        default_factory=lambda: [RolloutStep(weight_pct=w) for w in DEFAULT_STEPS],
        min_length=1,
        max_length=20,
    )
    gate: RolloutGate = Field(default_factory=RolloutGate)
    request: RolloutRequest = RolloutRequest.RUN
    request_id: str | None = Field(
        default=None, max_length=64, description="Changes with every human request."
    )
    requested_by: str | None = Field(default=None, max_length=128)
    created: UtcDatetime | None = None

    @model_validator(mode="after")
    def _steps_rise_to_all(self) -> RolloutPolicy:
        weights = [s.weight_pct for s in self.steps]
        if weights != sorted(set(weights)):
            raise ValueError("steps must be strictly increasing by weight_pct")
        if weights[-1] != 100:
            raise ValueError("the last step must send 100 % of tasks to the candidate")
        if self.baseline == self.candidate:
            raise ValueError("baseline and candidate must differ")
        return self

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.agent}"


def share(trace_id: str, salt: str) -> float:
    """Where a trace falls in [0, 1) for a rollout: the same in every process and every step."""
    digest = hashlib.blake2b(f"{salt}:{trace_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick(trace_id: str, salt: str, weight: float, baseline: str, candidate: str) -> str:
    """The version of a task: the candidate when the trace's share is below ``weight`` (0..1)."""
    return candidate if share(trace_id, salt) < weight else baseline
