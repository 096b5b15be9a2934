"""Every agentledger error maps to one HTTP status and a JSON body without a stack trace."""

from __future__ import annotations

import orjson
import pytest

from agentledger.api.errors import (
    BadRequestError,
    ForbiddenError,
    PayloadTooLargeError,
    RateLimitedError,
    UnauthorizedError,
    to_response,
)
from agentledger.errors import (
    AgentLedgerError,
    ConfigError,
    ContractError,
    NotFoundError,
    TerminalError,
    TransientError,
)


@pytest.mark.parametrize(
    ("exc", "status", "slug"),
    [
        (UnauthorizedError("no key"), 401, "unauthorized"),
        (ForbiddenError("other tenant"), 403, "forbidden"),
        (PayloadTooLargeError("big"), 413, "payload_too_large"),
        (BadRequestError("not json"), 400, "bad_request"),
        (RateLimitedError("slow down", 2.4), 429, "rate_limited"),
        (ContractError("bad", [("ts", "missing")]), 422, "invalid"),
        (NotFoundError("nope"), 404, "not_found"),
        (ConfigError("no warehouse"), 503, "not_configured"),
        (TransientError("broker down"), 503, "unavailable"),
        (TerminalError("odd"), 400, "bad_request"),
        (AgentLedgerError("bug"), 500, "internal"),
    ],
)
def test_status_and_body(exc: AgentLedgerError, status: int, slug: str) -> None:
    response = to_response(exc)
    body = orjson.loads(response.body)
    assert response.status_code == status
    assert body["error"] == slug and body["detail"]
    assert "Traceback" not in response.body.decode()


def test_retry_after_and_problems() -> None:
    assert to_response(RateLimitedError("x", 2.4)).headers["retry-after"] == "2"
    body = orjson.loads(to_response(ContractError("bad", [("ts", "missing")])).body)
    assert body["detail"]["problems"] == [{"loc": "ts", "msg": "missing"}]


def test_internal_error_detail_hides_the_message() -> None:
    body = orjson.loads(to_response(AgentLedgerError("secret path /etc/x")).body)
    assert "secret" not in body["detail"]
