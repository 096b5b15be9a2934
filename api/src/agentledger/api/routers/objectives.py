"""Objectives (latency / availability SLOs): create, replace, delete, list, check.

The compacted objectives topic is the store: the health worker follows it and starts (a delete
stops) judging an objective within a second, without a restart. Objectives in the health
worker's policy file are not listed here; one written here with the same id overrides it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from agentledger.api.auth import require
from agentledger.api.errors import responses
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.api.tenancy import check_writer, delete_owned, get_visible, put_owned, visible
from agentledger.errors import ContractError
from agentledger.events import ObjectivePolicy

router = APIRouter(prefix="/v1/objectives", tags=["policies"])


@router.post("/check", response_model=ObjectivePolicy, responses=responses(401, 403, 415, 422))
async def check_objective(
    objective: ObjectivePolicy, key: ApiKey = Depends(require(KeyScope.ADMIN))
) -> ObjectivePolicy:
    """The objective as the health worker will read it (defaults filled in), or 422 saying why
    not. Writes nothing. A key bound to a tenant must set ``selector.tenant`` to it."""
    check_writer(key, objective.selector.tenant)
    return objective


@router.get("", response_model=list[ObjectivePolicy], responses=responses(401, 403))
async def list_objectives(
    key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> list[ObjectivePolicy]:
    """Every objective on the topic this key may see: a tenant key sees its tenant's and the
    global ones (``selector.tenant`` ``*``)."""
    found = (o for o in state.objectives.items().values() if visible(key, o.selector.tenant))
    return sorted(found, key=lambda o: o.objective_id)


@router.get("/{objective_id}", response_model=ObjectivePolicy, responses=responses(401, 403, 404))
async def get_objective(
    objective_id: str, key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> ObjectivePolicy:
    return get_visible(key, state.objectives, objective_id, "objective")


@router.put("/{objective_id}", response_model=ObjectivePolicy, responses=responses(401, 403, 415, 422, 503))
async def put_objective(
    objective_id: str,
    objective: ObjectivePolicy,
    key: ApiKey = Depends(require(KeyScope.ADMIN)),
    state: ApiState = Depends(get_state),
) -> ObjectivePolicy:
    """Create or replace an objective; the health worker judges it within a second.

    Idempotent by ``objective_id``: the same PUT again changes nothing (the worker keeps its
    counts). A changed definition starts its counts afresh and resolves its firing alerts."""
    if objective.objective_id != objective_id:
        raise ContractError(
            "objective_id in the body differs from the path", [("objective_id", "must match the path")]
        )
    await put_owned(
        key, state.publisher, state.objectives, state.topics.objectives, objective_id, objective, "objective"
    )
    return objective


@router.delete("/{objective_id}", status_code=204, responses=responses(401, 403, 404, 503))
async def delete_objective(
    objective_id: str, key: ApiKey = Depends(require(KeyScope.ADMIN)), state: ApiState = Depends(get_state)
) -> Response:
    """Delete an objective (a tombstone on the compacted topic): the health worker stops judging
    it and resolves its firing alerts. An unknown id is 404; so is a retry after the delete."""
    await delete_owned(
        key, state.publisher, state.objectives, state.topics.objectives, objective_id, "objective"
    )
    return Response(status_code=204)
