"""Objectives (latency / availability SLOs): create, replace, delete, list, check.

The compacted objectives topic is the store: the health worker follows it and starts (a delete
stops) judging an objective within a second, without a restart. Objectives in the health
worker's policy file are not listed here; one written here with the same id overrides it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from agentledger.api.auth import check_tenant, require
from agentledger.api.errors import ForbiddenError, responses
from agentledger.api.kafka import Record
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.errors import ContractError, NotFoundError
from agentledger.events import ObjectivePolicy
from agentledger.wire import dump

router = APIRouter(prefix="/v1/objectives", tags=["policies"])


def _tenant_of(objective: ObjectivePolicy) -> str | None:
    """The tenant an objective belongs to; ``*`` (every tenant) belongs to no single tenant."""
    return None if objective.selector.tenant == "*" else objective.selector.tenant


def _visible(key: ApiKey, objective: ObjectivePolicy) -> bool:
    """A tenant key sees its tenant's objectives and the global ones (they count its calls too)."""
    return key.tenant is None or _tenant_of(objective) in (key.tenant, None)


def _owned(key: ApiKey, objective: ObjectivePolicy) -> bool:
    """Whether ``key`` may change or delete ``objective`` (a global one needs an all-tenant key)."""
    return key.tenant is None or _tenant_of(objective) == key.tenant


def _check_writer(key: ApiKey, objective: ObjectivePolicy) -> None:
    if key.tenant is not None:
        if objective.selector.tenant == "*":
            raise ForbiddenError(f"a key bound to {key.tenant!r} must set selector.tenant to it")
        check_tenant(key, objective.selector.tenant, "selector.tenant")


@router.post("/check", response_model=ObjectivePolicy, responses=responses(401, 403, 415, 422))
async def check_objective(
    objective: ObjectivePolicy, key: ApiKey = Depends(require(KeyScope.ADMIN))
) -> ObjectivePolicy:
    """The objective as the health worker will read it (defaults filled in), or 422 saying why
    not. Writes nothing. A key bound to a tenant must set ``selector.tenant`` to it."""
    _check_writer(key, objective)
    return objective


@router.get("", response_model=list[ObjectivePolicy], responses=responses(401, 403))
async def list_objectives(
    key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> list[ObjectivePolicy]:
    """Every objective on the topic this key may see: a tenant key sees its tenant's and the
    global ones (``selector.tenant`` ``*``)."""
    found = (o for o in state.objectives.items().values() if _visible(key, o))
    return sorted(found, key=lambda o: o.objective_id)


@router.get("/{objective_id}", response_model=ObjectivePolicy, responses=responses(401, 403, 404))
async def get_objective(
    objective_id: str, key: ApiKey = Depends(require(KeyScope.READ)), state: ApiState = Depends(get_state)
) -> ObjectivePolicy:
    objective = state.objectives.get(objective_id)
    if objective is None or not _visible(key, objective):
        raise NotFoundError(f"no objective {objective_id!r}")
    return objective


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
    _check_writer(key, objective)
    existing = state.objectives.get(objective_id)
    if existing is not None and not _owned(key, existing):
        raise ForbiddenError(f"objective {objective_id!r} belongs to another tenant or to every tenant")
    await state.publisher.send([Record(state.topics.objectives, objective_id, dump(objective))])
    state.objectives.put(objective_id, objective)
    return objective


@router.delete("/{objective_id}", status_code=204, responses=responses(401, 403, 404, 503))
async def delete_objective(
    objective_id: str, key: ApiKey = Depends(require(KeyScope.ADMIN)), state: ApiState = Depends(get_state)
) -> Response:
    """Delete an objective (a tombstone on the compacted topic): the health worker stops judging
    it and resolves its firing alerts. An unknown id is 404; so is a retry after the delete."""
    existing = state.objectives.get(objective_id)
    if existing is None or not _visible(key, existing):
        raise NotFoundError(f"no objective {objective_id!r}")
    if not _owned(key, existing):
        raise ForbiddenError(
            f"objective {objective_id!r} applies to every tenant: an all-tenant admin key deletes it"
        )
    await state.publisher.send([Record(state.topics.objectives, objective_id, None)])
    state.objectives.remove(objective_id)
    return Response(status_code=204)
