"""Every agentledger error maps to one HTTP status and a JSON body without a stack trace."""

from __future__ import annotations

import orjson
import pytest

from agentledger.api.errors import (
    BadRequestError,
    ForbiddenError,
    OutcomeUnknownError,
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


@pytest.mark.parametrize(("wait_s", "header"), [(2.5, "3"), (2.4, "3"), (2.0, "2"), (0.01, "1")])
def test_retry_after_rounds_up(wait_s: float, header: str) -> None:
    # A client that comes back after a rounded-down Retry-After is refused again.
    assert to_response(RateLimitedError("x", wait_s)).headers["retry-after"] == header


def test_problems_are_listed() -> None:
    body = orjson.loads(to_response(ContractError("bad", [("ts", "missing")])).body)
    assert body["detail"]["problems"] == [{"loc": "ts", "msg": "missing"}]


def test_a_partial_write_says_which_items_were_written() -> None:
    exc = OutcomeUnknownError("not acknowledged", written=[0, 1, 2, 7], not_written=[3], unknown=[4, 5])
    response = to_response(exc)
    body = orjson.loads(response.body)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert body["detail"]["written"] == [[0, 2], [7, 7]]
    assert body["detail"]["not_written"] == [[3, 3]] and body["detail"]["unknown"] == [[4, 5]]


def test_internal_error_detail_hides_the_message() -> None:
    body = orjson.loads(to_response(AgentLedgerError("secret path /etc/x")).body)
    assert "secret" not in body["detail"]
