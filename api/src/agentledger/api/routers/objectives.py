"""Objectives (latency / availability SLOs): checked here, kept in the policy file.

The health worker reads ``objectives:`` from the policy file at start; this route validates one
as the worker will (defaults filled in, the same errors) so a tool can check it before writing."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from agentledger.api.auth import check_tenant, require
from agentledger.api.errors import ForbiddenError, responses
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.events import ObjectivePolicy

router = APIRouter(prefix="/v1/objectives", tags=["policies"])


@router.post("/check", response_model=ObjectivePolicy, responses=responses(401, 403, 415, 422))
async def check_objective(
    objective: ObjectivePolicy, key: ApiKey = Depends(require(KeyScope.ADMIN))
) -> ObjectivePolicy:
    """The objective as the health worker will read it (defaults filled in), or 422 saying why
    not. A key bound to a tenant must set ``selector.tenant`` to it."""
    if key.tenant is not None:
        if objective.selector.tenant == "*":
            raise ForbiddenError(f"a key bound to {key.tenant!r} must set selector.tenant to it")
        check_tenant(key, objective.selector.tenant, "selector.tenant")
    return objective
