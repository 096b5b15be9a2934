"""Dashboard pages (HTML) under ``/ui``. A browser signs in once with ``/ui/login?key=...``
(the key goes into an HttpOnly cookie and the URL is left at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from agentledger.api import pagedata
from agentledger.api.auth import COOKIE, require, tenant_for
from agentledger.api.errors import UnauthorizedError
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state
from agentledger.dashboards.pages import Page, plotly_js, render_page

router = APIRouter(prefix="/ui", tags=["dashboards"], include_in_schema=False)


@router.get("/login")
async def login(
    key: str = Query(min_length=1),
    next: str = Query(default="/ui/overview", pattern=r"^/ui/[A-Za-z0-9_\-/?=&%.]*$"),
    state: ApiState = Depends(get_state),
) -> Response:
    """Check ``key``, keep it in an HttpOnly cookie, and go to ``next`` (a /ui page only)."""
    if state.keys.verify(key) is None:
        raise UnauthorizedError("unknown or revoked API key")
    response = RedirectResponse(next, status_code=303)
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict", max_age=12 * 3600)
    return response


@router.get("/plotly.min.js")
async def plotly_bundle() -> Response:
    return Response(
        plotly_js(), media_type="application/javascript", headers={"Cache-Control": "max-age=86400"}
    )


@router.get("")
async def root() -> Response:
    return RedirectResponse("/ui/overview", status_code=307)


def _sources(key: ApiKey, state: ApiState, tenant: str | None) -> pagedata.Sources:
    only = tenant_for(key, tenant)
    budgets = [b for b in state.budgets.items().values() if only is None or _tenant_of(b.scope_key) == only]
    commands = [c for c in state.control.items().values() if only is None or c.scope.tenant in (None, only)]
    return pagedata.Sources(state.warehouse, only, budgets, commands)


def _tenant_of(scope_key: str) -> str | None:
    from agentledger.api.routers.budgets import scope_key_tenant

    tenant: str | None = scope_key_tenant(scope_key)
    return tenant


async def _html(build: Callable[..., Page], *args: Any) -> HTMLResponse:
    """Build and render a page in a worker thread (DuckDB and plotly never block the loop)."""
    return HTMLResponse(await asyncio.to_thread(lambda: render_page(build(*args))))


@router.get("/overview")
async def overview(
    tenant: str | None = None,
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.overview, _sources(key, state, tenant))


@router.get("/agent")
async def agent(
    name: str | None = None,
    metric: str = "faithfulness",
    tenant: str | None = None,
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.agent, _sources(key, state, tenant), name, metric)


@router.get("/trace")
async def trace(
    trace_id: str | None = Query(default=None, pattern=r"^[0-9a-f]{32}$"),
    tenant: str | None = None,
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.trace, _sources(key, state, tenant), trace_id)


@router.get("/providers")
async def providers(
    tenant: str | None = None,
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.providers, _sources(key, state, tenant))


@router.get("/timeline")
async def timeline(
    tenant: str | None = None,
    key: ApiKey = Depends(require(KeyScope.READ)),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.timeline, _sources(key, state, tenant))
