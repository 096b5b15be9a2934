"""Read-only queries over the warehouse; each route calls one named query
(``agentledger.warehouse.queries``), tenant-filtered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Depends, Path, Query

from agentledger.api.auth import require, tenant_for
from agentledger.api.errors import responses
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.errors import NotFoundError
from agentledger.warehouse import queries as q

router = APIRouter(prefix="/v1", tags=["query"])
Rows = list[dict[str, Any]]
_ERR = responses(401, 403, 422, 503)
_TENANT = Query(default=None, description="Filter to one tenant (all-tenant keys only).")


class GroupBy(StrEnum):
    TENANT = "tenant"
    AGENT = "agent"
    AGENT_VERSION = "agent_version"
    WORKFLOW = "workflow"
    MODEL = "model"
    PROVIDER = "provider"


class Bucket(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class Window:
    """A route's time range and the tenant its key may see: the keywords every named query takes."""

    start: datetime | None
    end: datetime | None
    tenant: str | None

    def kw(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "tenant": self.tenant}


def window(
    start: datetime | None = Query(default=None, description="From this time (inclusive, event time)."),
    end: datetime | None = Query(default=None, description="Up to this time (exclusive)."),
    tenant: str | None = _TENANT,
    key: ApiKey = Depends(require(KeyScope.READ)),
) -> Window:
    return Window(start, end, tenant_for(key, tenant))


@router.get("/costs", response_model=Rows, responses=_ERR)
async def costs(
    group_by: list[GroupBy] = Query(default=[GroupBy.AGENT]),
    bucket: Bucket | None = Query(default=None, description="Add a time bucket column."),
    w: Window = Depends(window),
    state: ApiState = Depends(get_state),
) -> Rows:
    """Cost (exact decimal strings), tokens and counts, grouped."""
    rows: Rows = await state.warehouse.arows(
        q.costs,
        group_by=[g.value for g in group_by],
        bucket=bucket.value if bucket else None,
        **w.kw(),
    )
    return rows


@router.get("/traces/{trace_id}", response_model=Rows, responses=responses(401, 403, 404, 422, 503))
async def trace(
    trace_id: str = Path(pattern=r"^[0-9a-f]{32}$"),
    tenant: str | None = _TENANT,
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> Rows:
    """A trace as its spans (parent links, direct and inclusive cost)."""
    rows: Rows = await state.warehouse.arows(q.trace_tree, trace_id=trace_id, tenant=tenant_for(key, tenant))
    if not rows:
        raise NotFoundError(f"no trace {trace_id} visible to this key")
    return rows


@router.get("/top-traces", response_model=Rows, responses=_ERR)
async def top_traces(
    limit: int = Query(default=20, ge=1, le=500),
    w: Window = Depends(window),
    state: ApiState = Depends(get_state),
) -> Rows:
    """The costliest traces by inclusive cost."""
    rows: Rows = await state.warehouse.arows(q.top_traces, limit=limit, **w.kw())
    return rows


@router.get("/agents", response_model=Rows, responses=_ERR)
async def agents(
    tenant: str | None = _TENANT,
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> Rows:
    """Agents with their versions, spend and last activity."""
    rows: Rows = await state.warehouse.arows(q.agents, tenant=tenant_for(key, tenant))
    return rows


@router.get("/quality", response_model=Rows, responses=_ERR)
async def quality(
    agent: str = Query(min_length=1, max_length=128),
    metric: str = Query(min_length=1, max_length=64),
    bucket: Bucket = Query(default=Bucket.HOUR),
    w: Window = Depends(window),
    state: ApiState = Depends(get_state),
) -> Rows:
    """Mean score of one metric for one agent per time bucket and agent version."""
    rows: Rows = await state.warehouse.arows(
        q.quality_series,
        agent=agent,
        metric=metric,
        bucket=bucket.value,
        **w.kw(),
    )
    return rows


@router.get("/alerts", response_model=Rows, responses=_ERR)
async def alerts(
    w: Window = Depends(window),
    state: ApiState = Depends(get_state),
) -> Rows:
    """Alert transitions (warehouse history)."""
    rows: Rows = await state.warehouse.arows(q.alerts, **w.kw())
    return rows


@router.get("/commands", response_model=Rows, responses=_ERR)
async def commands(
    w: Window = Depends(window),
    state: ApiState = Depends(get_state),
) -> Rows:
    """Control commands issued (warehouse history, with who issued them)."""
    rows: Rows = await state.warehouse.arows(q.commands, **w.kw())
    return rows


@router.get("/providers", response_model=Rows, responses=_ERR)
async def providers(
    w: Window = Depends(window),
    state: ApiState = Depends(get_state),
) -> Rows:
    """Per provider and model: calls, spend, errors, error rate, latency p50/p95."""
    rows: Rows = await state.warehouse.arows(q.provider_health, **w.kw())
    return rows


@router.get("/slo/attainment", response_model=Rows, responses=_ERR)
async def slo_attainment(
    target: float = Query(gt=0, lt=1, description="Share of good calls, e.g. 0.95."),
    threshold_ms: float | None = Query(
        default=None, gt=0, description="Latency objective bound; without it, availability."
    ),
    agent: str | None = Query(default=None),
    w: Window = Depends(window),
    state: ApiState = Depends(get_state),
) -> Rows:
    """Per agent and UTC day: LLM calls, good ones, attainment and error budget left."""
    rows: Rows = await state.warehouse.arows(
        q.slo_attainment,
        target=target,
        threshold_ms=threshold_ms,
        agent=agent,
        **w.kw(),
    )
    return rows


@router.get("/providers/latency", response_model=Rows, responses=_ERR)
async def latency_percentiles(
    bucket: Bucket | None = Query(default=Bucket.DAY, description="Time bucket; omit for one row per model."),
    w: Window = Depends(window),
    state: ApiState = Depends(get_state),
) -> Rows:
    """LLM latency p50/p90/p95/p99 and max per provider, model and bucket."""
    rows: Rows = await state.warehouse.arows(
        q.latency_percentiles,
        bucket=bucket.value if bucket else None,
        **w.kw(),
    )
    return rows
