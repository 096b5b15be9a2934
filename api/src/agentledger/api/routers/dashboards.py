"""Dashboard pages (HTML) under ``/ui``.

A browser signs in with the form at ``/ui/login`` (a key with the read scope, posted with a
CSRF token) or with a one-time link ``/ui/link?token=...`` (``agentledger ui link``, the demo
prints one). Either way it gets a signed, expiring session cookie that names the key by id
and never holds it (``agentledger.api.sessions``); ``POST /ui/logout`` ends it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from agentledger.api.auth import require, tenant_for, token_of
from agentledger.api.errors import BadRequestError, ForbiddenError, UnauthorizedError
from agentledger.api.headers import page_csp
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.routers.control import in_force as control_in_force
from agentledger.api.sessions import CSRF_COOKIE, SESSION_COOKIE, DashboardSignIn, get_sign_in
from agentledger.api.state import ApiState, get_state
from agentledger.dashboards import pagedata
from agentledger.dashboards.pages import Page, plotly_js, render_login, render_page

router = APIRouter(prefix="/ui", tags=["dashboards"], include_in_schema=False)

NEXT = r"^/ui/[A-Za-z0-9_\-/?=&%.]*$"  # a /ui page only: no open redirect
HOME = "/ui/overview"
NO_STORE = {"Cache-Control": "no-store"}


def _set_cookie(
    request: Request, sign_in: DashboardSignIn, response: Response, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=sign_in.secure_cookies or request.url.scheme == "https",
    )


def _form(
    request: Request, sign_in: DashboardSignIn, next_path: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    cookie, token = sign_in.signer.csrf_pair()
    response = HTMLResponse(render_login(token, next_path, error=error), status_code=status, headers=NO_STORE)
    _set_cookie(request, sign_in, response, CSRF_COOKIE, cookie, 3600)
    return response


def _signed_in(request: Request, sign_in: DashboardSignIn, key: ApiKey, next_path: str) -> Response:
    if not key.allows(KeyScope.READ):
        raise ForbiddenError("this key lacks the 'read' scope: an ingest-only key cannot open dashboards")
    value, _ = sign_in.signer.issue(key.key_id)
    response = RedirectResponse(next_path, status_code=303, headers=NO_STORE)
    _set_cookie(request, sign_in, response, SESSION_COOKIE, value, sign_in.signer.ttl_s)
    response.delete_cookie(CSRF_COOKIE, path="/ui")
    return response


_read = require(KeyScope.READ)


async def _reader(
    request: Request,
    state: ApiState = Depends(get_state),
    sign_in: DashboardSignIn = Depends(get_sign_in),
) -> ApiKey:
    """The read key behind a page; a browser with no session is sent to the sign-in form
    (API clients, which do not ask for HTML, keep the 401)."""
    try:
        return await _read(request, state, sign_in)
    except UnauthorizedError:
        if token_of(request) is not None or "text/html" not in request.headers.get("accept", ""):
            raise
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = "/ui/login?" + urlencode({"next": here if re.fullmatch(NEXT, here) else HOME})
        raise HTTPException(303, "sign in first", headers={"Location": target}) from None


@router.get("/login")
async def login_form(
    request: Request,
    next: str = Query(default=HOME, pattern=NEXT),
    key: str | None = Query(default=None, include_in_schema=False),
    sign_in: DashboardSignIn = Depends(get_sign_in),
) -> Response:
    """The sign-in form (it sets the CSRF cookie its POST must come back with)."""
    if key is not None:
        raise BadRequestError(
            "a key never goes in a URL (URLs land in logs and history): sign in with the form at "
            "/ui/login, or open a one-time link from `agentledger ui link`"
        )
    return _form(request, sign_in, next)


@router.post("/login")
async def login(
    request: Request,
    key: str = Form(default=""),
    csrf: str = Form(default=""),
    next: str = Form(default=HOME),
    state: ApiState = Depends(get_state),
    sign_in: DashboardSignIn = Depends(get_sign_in),
) -> Response:
    """Check the form's CSRF token and the key (read scope), then start a session."""
    next_path = next if re.fullmatch(NEXT, next) else HOME
    if not sign_in.signer.csrf_ok(request.cookies.get(CSRF_COOKIE), csrf):
        return _form(
            request, sign_in, next_path, "the form expired or came from another site: try again", 403
        )
    key_found = state.keys.verify(key.strip())
    if key_found is None:
        return _form(request, sign_in, next_path, "unknown or revoked API key", 401)
    if not key_found.allows(KeyScope.READ):
        return _form(
            request, sign_in, next_path, "this key lacks the 'read' scope (ingest keys cannot sign in)", 403
        )
    return _signed_in(request, sign_in, key_found, next_path)


@router.get("/link")
async def link(
    request: Request,
    token: str = Query(min_length=1, max_length=200),
    next: str = Query(default=HOME, pattern=NEXT),
    state: ApiState = Depends(get_state),
    sign_in: DashboardSignIn = Depends(get_sign_in),
) -> Response:
    """A one-time sign-in link: the first use spends it."""
    key_id = sign_in.store.redeem(token)
    key = None if key_id is None else state.keys.get(key_id)
    if key is None:
        raise UnauthorizedError(
            "this sign-in link was used already or has expired (or its key was revoked): "
            "get a new one with `agentledger ui link`, or sign in at /ui/login"
        )
    return _signed_in(request, sign_in, key, next)


@router.post("/logout")
async def logout(request: Request, sign_in: DashboardSignIn = Depends(get_sign_in)) -> Response:
    """End the session (a copy of the cookie stops working too) and clear the cookie."""
    session = sign_in.signer.read(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        sign_in.store.end(session)
    response = RedirectResponse("/ui/login", status_code=303, headers=NO_STORE)
    response.delete_cookie(SESSION_COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


@router.get("/plotly.min.js")
async def plotly_bundle() -> Response:
    return Response(
        plotly_js(), media_type="application/javascript", headers={"Cache-Control": "max-age=86400"}
    )


@router.get("")
async def root() -> Response:
    return RedirectResponse("/ui/overview", status_code=307)


def _when(value: str | None, what: str) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequestError(
            f"{what} must be a date and time such as 2026-11-20T22:00:00, not {value!r}"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def view_of(
    range: str = Query(default="run", pattern="^(" + "|".join(pagedata.RANGES) + ")$"),
    start: str | None = Query(default=None, max_length=40),
    end: str | None = Query(default=None, max_length=40),
    agent: str | None = Query(default=None, max_length=128),
    version: str | None = Query(default=None, max_length=128),
    model: str | None = Query(default=None, max_length=256),
    tenant: str | None = Query(default=None, max_length=128),
    user: str | None = Query(default=None, max_length=256),
    conversation: str | None = Query(default=None, max_length=256),
) -> pagedata.View:
    """The time range and filters every page takes from its URL (an empty field: no filter)."""
    view = pagedata.View(
        range,
        _when(start, "start"),
        _when(end, "end"),
        agent or None,
        version or None,
        model or None,
        tenant or None,
        user or None,
        conversation or None,
    )
    if range == "custom" and view.start and view.end and view.start >= view.end:
        raise BadRequestError("the custom range must start before it ends")
    if range != "custom":
        view.start = view.end = None
    return view


def _sources(key: ApiKey, state: ApiState, view: pagedata.View) -> pagedata.Sources:
    only = tenant_for(key, view.tenant)
    budgets = [b for b in state.budgets.items().values() if only is None or _tenant_of(b.scope_key) == only]
    in_force = control_in_force(state).values()  # one per scope, lane and authority; old keys superseded
    commands = [c for c in in_force if only is None or c.scope.tenant in (None, only)]
    objectives = [
        o for o in state.objectives.items().values() if only is None or fnmatchcase(only, o.selector.tenant)
    ]
    return pagedata.Sources(
        state.warehouse, only, budgets, commands, view=view, admin=key.tenant is None, objectives=objectives
    )


def _tenant_of(scope_key: str) -> str | None:
    from agentledger.api.routers.budgets import scope_key_tenant

    tenant: str | None = scope_key_tenant(scope_key)
    return tenant


async def _html(build: Callable[..., Page], *args: Any) -> HTMLResponse:
    """Build and render a page in a worker thread (DuckDB and plotly never block the loop);
    its inline scripts run under a fresh nonce named in its Content-Security-Policy."""
    nonce = secrets.token_urlsafe(16)
    body = await asyncio.to_thread(lambda: render_page(build(*args), nonce=nonce))
    return HTMLResponse(body, headers={**NO_STORE, "Content-Security-Policy": page_csp(nonce)})


@router.get("/overview")
async def overview(
    view: pagedata.View = Depends(view_of),
    key: ApiKey = Depends(_reader),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.overview, _sources(key, state, view))


@router.get("/agent")
async def agent(
    name: str | None = Query(default=None, max_length=128),
    metric: str = Query(default="faithfulness", max_length=64),
    view: pagedata.View = Depends(view_of),
    key: ApiKey = Depends(_reader),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.agent, _sources(key, state, view), name or None, metric)


@router.get("/trace")
async def trace(
    trace_id: str | None = Query(default=None, pattern=r"^[0-9a-f]{32}$"),
    view: pagedata.View = Depends(view_of),
    key: ApiKey = Depends(_reader),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.trace, _sources(key, state, view), trace_id)


@router.get("/traces")
async def traces(
    q: str | None = Query(default=None, max_length=128),
    status: str | None = Query(default=None, pattern="^(|ok|error|killed)$"),
    min_cost: str | None = Query(default=None, max_length=32),
    sort: str = Query(default="cost", pattern="^(" + "|".join(pagedata.TRACE_SORTS) + ")$"),
    view: pagedata.View = Depends(view_of),
    key: ApiKey = Depends(_reader),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    """Traces of the view: search by id, agent, status or kill reason; sort by cost,
    duration, errors, agent or start."""
    try:
        least = Decimal(min_cost) if min_cost else None
    except InvalidOperation:
        raise BadRequestError(f"min_cost must be a number of USD, not {min_cost!r}") from None
    if least is not None and not least.is_finite():
        raise BadRequestError("min_cost must be a finite number of USD")
    return await _html(pagedata.traces, _sources(key, state, view), q or None, status or None, least, sort)


@router.get("/providers")
async def providers(
    view: pagedata.View = Depends(view_of),
    key: ApiKey = Depends(_reader),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.providers, _sources(key, state, view))


@router.get("/timeline")
async def timeline(
    view: pagedata.View = Depends(view_of),
    key: ApiKey = Depends(_reader),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    return await _html(pagedata.timeline, _sources(key, state, view))


@router.get("/agents")
async def agent_chain(
    view: pagedata.View = Depends(view_of),
    key: ApiKey = Depends(_reader),
    state: ApiState = Depends(get_state),
) -> HTMLResponse:
    """Agents calling agents across the view's traces, weighted by calls and inclusive cost."""
    return await _html(pagedata.agent_chain, _sources(key, state, view))
