"""One content-type rule for every API route (``/v1/...``) that takes a body: JSON
(``application/json``, parameters such as ``charset`` allowed); ``POST /v1/traces`` also
takes OTLP protobuf. Anything else, or no ``Content-Type`` at all, is 415 before the route
runs. A request with no body at all (an action such as ``POST .../pause``: no
``Content-Length`` or ``0``, no ``Transfer-Encoding``) needs no type. Dashboard pages under
``/ui`` (browser forms) are not API routes."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agentledger.api.errors import error_response

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_EXTRA: dict[str, frozenset[str]] = {"/v1/traces": frozenset({PROTOBUF})}


def accepted_media(path: str) -> frozenset[str]:
    """The media types a body sent to ``path`` may have."""
    return frozenset({JSON}) | _EXTRA.get(path.rstrip("/"), frozenset())


class ContentTypeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or not str(scope["path"]).startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = dict(scope.get("headers", []))
        if b"transfer-encoding" not in headers and headers.get(b"content-length", b"0").strip() == b"0":
            await self.app(scope, receive, send)  # no body: nothing to type
            return
        raw = headers.get(b"content-type", b"").decode("latin-1")
        media = raw.split(";")[0].strip().lower()
        wanted = accepted_media(path)
        if media not in wanted:
            response = error_response(
                415,
                "unsupported_media_type",
                f"send the body as {' or '.join(sorted(wanted))} (Content-Type header), "
                f"got {media or 'no Content-Type'!r}",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
