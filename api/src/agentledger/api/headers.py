"""Security headers on every response: no framing, no sniffing, no referrer (a one-time
sign-in link must not leak through one), and a strict Content-Security-Policy on ``/ui``
unless the page set its own (dashboard pages add a per-response script nonce)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def page_csp(nonce: str | None = None) -> str:
    """The policy for ``/ui``: scripts from this origin (plus the page's inline ones by nonce),
    styles inline (plotly.js sets them), nothing framed, forms only to this origin."""
    scripts = "'self'" + (f" 'nonce-{nonce}'" if nonce else "")
    return (
        f"default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ui = str(scope.get("path", "")).startswith("/ui")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
                if ui:
                    headers.setdefault("Content-Security-Policy", page_csp())
            await send(message)

        await self.app(scope, receive, with_headers)
