"""Authentication and authorisation, as FastAPI dependencies.

A key arrives as ``Authorization: Bearer <key>`` (API clients, OTLP exporters). A browser on
the dashboard pages carries a signed session cookie instead (``agentledger.api.sessions``):
it names a key by id, never holds it, and only opens the read-only ``GET /ui/`` pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request

from agentledger.api.errors import ForbiddenError, UnauthorizedError
from agentledger.api.keys import ApiKey, KeyScope
from agentledger.api.sessions import SESSION_COOKIE, DashboardSignIn, Session, get_sign_in
from agentledger.api.state import ApiState, get_state


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def session_of(request: Request, sign_in: DashboardSignIn) -> Session | None:
    """The browser's live dashboard session, or None. The cookie only opens the read-only
    pages: a write always needs the header (no CSRF)."""
    if request.method != "GET" or not request.url.path.startswith("/ui/"):
        return None
    session = sign_in.signer.read(request.cookies.get(SESSION_COOKIE))
    if session is None or sign_in.store.ended(session):
        return None
    return session


def require(scope: KeyScope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that returns the caller's key if it has ``scope`` (admin implies all)."""

    async def dependency(
        request: Request,
        state: ApiState = Depends(get_state),
        sign_in: DashboardSignIn = Depends(get_sign_in),
    ) -> ApiKey:
        token = token_of(request)
        if token is not None:
            key = state.keys.verify(token)
        elif (session := session_of(request, sign_in)) is not None:
            key = state.keys.get(session.key_id)
        else:
            raise UnauthorizedError("missing API key: send `Authorization: Bearer <key>`")
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
