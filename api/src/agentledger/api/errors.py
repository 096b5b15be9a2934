"""Errors -> HTTP, in ONE place. Every error body is ``{"error": slug, "detail": ...}``;
no stack trace ever leaves the process (unexpected errors are logged, answered 500)."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentledger.errors import (
    AgentLedgerError,
    ConfigError,
    ContractError,
    NotFoundError,
    TerminalError,
    TransientError,
)

log = logging.getLogger("agentledger.api")


class UnauthorizedError(TerminalError):
    """No key, or a key that is unknown or revoked."""


class ForbiddenError(TerminalError):
    """The key lacks the scope, or touches another tenant."""


class BadRequestError(TerminalError):
    """The body cannot be read at all (not JSON, wrong content type)."""


class ConflictError(TerminalError):
    """The id is already used by something else (a different command with the same id)."""


class UnsupportedMediaTypeError(TerminalError):
    """The body's Content-Type is not one the route reads."""


class PayloadTooLargeError(TerminalError):
    """The body is over the configured limit."""


class RateLimitedError(TransientError):
    """The key is over its ingest rate; ``retry_after_s`` says when to come back."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OutcomeUnknownError(TransientError):
    """A write was not acknowledged in full: says which items (by request index) the broker
    acknowledged, refused, or left unknown. 503: retry everything with the same ids."""

    def __init__(self, message: str, written: list[int], not_written: list[int], unknown: list[int]) -> None:
        super().__init__(message)
        self.written = written
        self.not_written = not_written
        self.unknown = unknown


def index_ranges(indexes: list[int]) -> list[list[int]]:
    """``[0, 1, 2, 7]`` -> ``[[0, 2], [7, 7]]`` (inclusive ranges; short for big batches)."""
    out: list[list[int]] = []
    for i in sorted(indexes):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


# Most specific first: the first matching class wins.
STATUS: list[tuple[type[AgentLedgerError], int, str]] = [
    (UnauthorizedError, 401, "unauthorized"),
    (ForbiddenError, 403, "forbidden"),
    (PayloadTooLargeError, 413, "payload_too_large"),
    (ConflictError, 409, "conflict"),
    (UnsupportedMediaTypeError, 415, "unsupported_media_type"),
    (BadRequestError, 400, "bad_request"),
    (RateLimitedError, 429, "rate_limited"),
    (ContractError, 422, "invalid"),
    (NotFoundError, 404, "not_found"),
    (ConfigError, 503, "not_configured"),
    (TransientError, 503, "unavailable"),
    (TerminalError, 400, "bad_request"),
    (AgentLedgerError, 500, "internal"),
]

# What every route may answer besides its success (for the OpenAPI document).
ERROR_BODY: dict[str, Any] = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "detail": {}},
                "required": ["error", "detail"],
            }
        }
    }
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    return {code: {"description": _DESCRIPTION.get(code, "error"), **ERROR_BODY} for code in codes}


_DESCRIPTION = {
    400: "unreadable request",
    401: "missing, unknown or revoked API key",
    403: "the key lacks the scope or touches another tenant",
    404: "not found",
    409: "the id is already used by a different request",
    413: "body over the size limit",
    422: "invalid input (the detail names the fields)",
    429: "over the key's ingest rate (Retry-After says when to come back)",
    415: "unsupported content type (send application/json)",
    503: "outcome unknown: a dependency (Kafka, warehouse) did not answer in time; "
    "retry later with the same id (every write is idempotent by its id)",
}


def error_response(
    status: int, slug: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": slug, "detail": detail}, status_code=status, headers=headers)


def to_response(exc: AgentLedgerError) -> JSONResponse:
    status, slug = next((st, sl) for cls, st, sl in STATUS if isinstance(exc, cls))
    detail: Any = str(exc)
    if isinstance(exc, ContractError) and exc.problems:
        detail = {"message": str(exc), "problems": [{"loc": loc, "msg": msg} for loc, msg in exc.problems]}
    if isinstance(exc, OutcomeUnknownError):
        detail = {
            "message": str(exc),
            "written": index_ranges(exc.written),
            "not_written": index_ranges(exc.not_written),
            "unknown": index_ranges(exc.unknown),
        }
    headers = None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    elif isinstance(exc, TransientError):
        headers = {"Retry-After": "1"}
    elif isinstance(exc, UnauthorizedError):
        headers = {"WWW-Authenticate": "Bearer"}
    if status >= 500 and not isinstance(exc, TransientError | ConfigError):
        log.error("internal error: %s", exc, exc_info=exc)
        detail = "internal error (see the server log)"
    return error_response(status, slug, detail, headers)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def on_ours(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AgentLedgerError)
        return to_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {"loc": ".".join(str(p) for p in e.get("loc", ())), "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return error_response(422, "invalid", {"message": "invalid request", "problems": problems})

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, slug, exc.detail, dict(exc.headers or {}) or None)

    async def on_other(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return error_response(500, "internal", "internal error (see the server log)")

    app.add_exception_handler(AgentLedgerError, on_ours)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_other)
