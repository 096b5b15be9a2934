"""Authentication and authorisation, as FastAPI dependencies.

A key arrives as ``Authorization: Bearer <key>`` (API clients, OTLP exporters) or as the
``agentledger_key`` cookie that ``/ui/login`` sets (dashboard pages in a browser).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request

from agentledger.api.errors import ForbiddenError, UnauthorizedError
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.state import ApiState, get_state

COOKIE = "agentledger_key"


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    # The cookie only opens the read-only pages: a write always needs the header (no CSRF).
    if request.method != "GET" or not request.url.path.startswith("/ui/"):
        return None
    cookie: str | None = request.cookies.get(COOKIE)
    return cookie


def require(scope: KeyScope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that returns the caller's key if it has ``scope`` (admin implies all)."""

    async def dependency(request: Request, state: ApiState = Depends(get_state)) -> ApiKey:
        token = token_of(request)
        if token is None:
            raise UnauthorizedError("missing API key: send `Authorization: Bearer <key>`")
        key = state.keys.verify(token)
        if key is None:
            raise UnauthorizedError("unknown or revoked API key")
        if not key.allows(scope):
            raise ForbiddenError(f"this key lacks the {scope.value!r} scope")
        return key

    return dependency


def tenant_for(key: ApiKey, asked: str | None) -> str | None:
    """The tenant a read is limited to: the key's own; an all-tenant key may name one (or None)."""
    if key.tenant is None:
        return asked
    if asked is not None and asked != key.tenant:
        raise ForbiddenError(f"this key is bound to tenant {key.tenant!r}, not {asked!r}")
    bound: str = key.tenant
    return bound


def check_tenant(key: ApiKey, tenant: str | None, what: str) -> None:
    """Refuse a write touching a tenant the key is not bound to."""
    if not key.sees(tenant):
        raise ForbiddenError(f"this key is bound to tenant {key.tenant!r}; {what} names {tenant!r}")
