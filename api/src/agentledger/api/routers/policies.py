"""Policies: create, update, delete, list (the compacted policies topic is the store)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from agentledger.api.auth import require
from agentledger.api.errors import responses
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.api.tenancy import delete_owned, get_visible, put_owned, visible
from agentledger.errors import ContractError
from agentledger.events import Policy

router = APIRouter(prefix="/v1/policies", tags=["policies"])


@router.get("", response_model=list[Policy], responses=responses(401, 403))
async def list_policies(
    key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> list[Policy]:
    """Every policy this key may see: a tenant key sees its tenant's policies and the global
    ones (``selector.tenant`` ``*``) that apply to it."""
    return sorted(
        (p for p in state.policies.items().values() if visible(key, p.selector.tenant)),
        key=lambda p: p.policy_id,
    )


@router.get("/{policy_id}", response_model=Policy, responses=responses(401, 403, 404))
async def get_policy(
    policy_id: str, key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> Policy:
    return get_visible(key, state.policies, policy_id, "policy")


@router.put("/{policy_id}", response_model=Policy, responses=responses(401, 403, 415, 422, 503))
async def put_policy(
    policy_id: str,
    policy: Policy,
    key: ApiKey = Depends(require(KeyScope.ADMIN)),
    state: ApiState = Depends(get_state),
) -> Policy:
    """Create or replace a policy (the streams worker picks it up from the topic).

    Idempotent by ``policy_id``: the same PUT again leaves the same policy (safe to retry
    after a 503)."""
    if policy.policy_id != policy_id:
        raise ContractError(
            "policy_id in the body differs from the path", [("policy_id", "must match the path")]
        )
    await put_owned(key, state.publisher, state.policies, state.topics.policies, policy_id, policy, "policy")
    return policy


@router.delete("/{policy_id}", status_code=204, responses=responses(401, 403, 404, 503))
async def delete_policy(
    policy_id: str, key: ApiKey = Depends(require(KeyScope.ADMIN)), state: ApiState = Depends(get_state)
) -> Response:
    """Delete a policy (a tombstone on the compacted topic; the worker drops its budget
    state). An unknown id is 404; so is a retry after the delete landed."""
    await delete_owned(key, state.publisher, state.policies, state.topics.policies, policy_id, "policy")
    return Response(status_code=204)
