"""``GET /v1/budgets``: live budget status per policy and scope (spend, limit, state,
projected exhaustion), as the streams worker last published it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from agentledger.api.auth import require, tenant_for
from agentledger.api.errors import responses
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.events import BudgetStatus, ScopeKind

router = APIRouter(prefix="/v1/budgets", tags=["query"])


def scope_key_tenant(scope_key: str) -> str | None:
    """The tenant inside a scope key (``agent/acme/planner`` -> ``acme``); None for providers."""
    kind, _, rest = scope_key.partition("/")
    if kind == ScopeKind.PROVIDER.value or not rest:
        return None
    return rest.split("/", 1)[0]


@router.get("", response_model=list[BudgetStatus], responses=responses(401, 403, 422))
async def list_budgets(
    policy_id: str | None = Query(default=None),
    tenant: str | None = Query(default=None, description="Only for all-tenant keys."),
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> list[BudgetStatus]:
    only = tenant_for(key, tenant)
    out = [
        s
        for s in state.budgets.items().values()
        if (policy_id is None or s.policy_id == policy_id)
        and (only is None or scope_key_tenant(s.scope_key) == only)
    ]
    return sorted(out, key=lambda s: (s.policy_id, s.scope_key))
