"""Rollouts: start a candidate version at its first traffic step, see where it stands, and
pause, resume, promote or abort it by hand (the compacted rollouts topic is the store; the
health worker's controller acts on it and publishes each step on the control topic)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from agentledger.api.auth import check_tenant, require
from agentledger.api.errors import responses
from agentledger.api.kafka import Record
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.errors import ContractError, NotFoundError
from agentledger.events import Authority, ControlCommand, Lane, ScopeKind, control_key, scope_key
from agentledger.rollout import RolloutPolicy, RolloutRequest
from agentledger.wire import dump

router = APIRouter(prefix="/v1/rollouts", tags=["rollouts"])


class RolloutView(BaseModel):
    """A rollout and where it stands: the route in force on the control topic (none yet: the
    controller has not announced it)."""

    policy: RolloutPolicy
    weight_pct: float | None = None
    step: int | None = None
    status: str
    reason: str | None = None
    since: datetime | None = None


def _route(state: ApiState, policy: RolloutPolicy) -> ControlCommand | None:
    key = control_key(
        scope_key(ScopeKind.AGENT, tenant=policy.tenant, agent=policy.agent), Lane.ROLLOUT, Authority.HEALTH
    )
    cmd = state.control.get(key)
    if cmd is None or cmd.params.rollout_id != policy.rollout_id:
        return None
    return cmd


def _status(cmd: ControlCommand, policy: RolloutPolicy) -> str:
    p = cmd.params
    head = cmd.reason.split(" ", 1)[0].rstrip(":")
    if p.weight == 0.0:
        return "aborted" if head == "aborted" else "rolled_back"
    if p.weight == 1.0 and p.step == len(policy.steps) - 1:
        return "promoted"
    return "paused" if head == "paused" else "running"


def _view(state: ApiState, policy: RolloutPolicy) -> RolloutView:
    cmd = _route(state, policy)
    if cmd is None:
        return RolloutView(policy=policy, status="pending")
    return RolloutView(
        policy=policy, weight_pct=round((cmd.params.weight or 0.0) * 100, 3), step=cmd.params.step,
        status=_status(cmd, policy), reason=cmd.reason, since=cmd.ts,
    )  # fmt: skip


def _get(state: ApiState, key: ApiKey, tenant: str, agent: str) -> RolloutPolicy:
    policy = state.rollouts.get(f"{tenant}/{agent}")
    if policy is None or not key.sees(tenant):
        raise NotFoundError(f"no rollout for {tenant}/{agent}")
    return policy


@router.get("", response_model=list[RolloutView], responses=responses(401, 403))
async def list_rollouts(
    key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> list[RolloutView]:
    """Every rollout this key may see, with its current step."""
    return [_view(state, p) for _, p in sorted(state.rollouts.items().items()) if key.sees(p.tenant)]


@router.get("/{tenant}/{agent}", response_model=RolloutView, responses=responses(401, 403, 404))
async def get_rollout(
    tenant: str,
    agent: str,
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> RolloutView:
    return _view(state, _get(state, key, tenant, agent))


@router.put("/{tenant}/{agent}", response_model=RolloutView, responses=responses(401, 403, 415, 422, 503))
async def put_rollout(
    tenant: str,
    agent: str,
    policy: RolloutPolicy,
    key: ApiKey = Depends(require(KeyScope.ADMIN)),
    state: ApiState = Depends(get_state),
) -> RolloutView:
    """Start a rollout (or change the steps of this one: same ``rollout_id``). A new
    ``rollout_id`` starts over at the first step. Idempotent: the same PUT again changes nothing."""
    if (policy.tenant, policy.agent) != (tenant, agent):
        raise ContractError(
            "tenant/agent in the body differ from the path", [("tenant", "must match the path")]
        )
    check_tenant(key, tenant, "tenant")
    if policy.created is None:
        policy = policy.model_copy(update={"created": datetime.now(UTC)})
    await state.publisher.send([Record(state.topics.rollouts, policy.key, dump(policy))])
    state.rollouts.put(policy.key, policy)
    return _view(state, policy)


@router.post(
    "/{tenant}/{agent}/{action}", status_code=202, response_model=RolloutView,
    responses=responses(401, 403, 404, 503),
)  # fmt: skip
async def request_rollout(
    tenant: str,
    agent: str,
    action: Literal["pause", "resume", "promote", "abort"],
    key: ApiKey = Depends(require(KeyScope.ADMIN)),
    state: ApiState = Depends(get_state),
) -> RolloutView:
    """Ask the controller to pause, resume, promote (everyone to the candidate now) or abort
    (everyone back to the baseline). Recorded with who asked; the controller acts once."""
    check_tenant(key, tenant, "tenant")
    policy = _get(state, key, tenant, agent)
    request = RolloutRequest.RUN if action == "resume" else RolloutRequest(action)
    policy = policy.model_copy(
        update={
            "request": request,
            "request_id": uuid.uuid4().hex,
            "requested_by": f"key:{key.name}:{key.key_id}"[:128],
        }
    )
    await state.publisher.send([Record(state.topics.rollouts, policy.key, dump(policy))])
    state.rollouts.put(policy.key, policy)
    return _view(state, policy)


@router.delete("/{tenant}/{agent}", status_code=204, responses=responses(401, 403, 404, 503))
async def delete_rollout(
    tenant: str,
    agent: str,
    key: ApiKey = Depends(require(KeyScope.ADMIN)),
    state: ApiState = Depends(get_state),
) -> Response:
    """Forget a rollout (the route in force stays until a new rollout or a human replaces it:
    abort first to send everyone back to the baseline)."""
    policy = _get(state, key, tenant, agent)
    await state.publisher.send([Record(state.topics.rollouts, policy.key, None)])
    state.rollouts.remove(policy.key)
    return Response(status_code=204)
