"""A body size limit for every route, answered in our JSON error format.

Starlette's own limiter answers 413 in plain text; this one refuses a declared
``Content-Length`` over the limit before the app runs, and stops a streamed (chunked) body as
soon as it passes the limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentledger.api.errors import PayloadTooLargeError, error_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = error_response(
                413,
                "payload_too_large",
                f"body of {int(declared)} bytes is over the limit of {self.limit} bytes",
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLargeError(f"body is over the limit of {self.limit} bytes")
            return message

        await self.app(scope, limited, send)
