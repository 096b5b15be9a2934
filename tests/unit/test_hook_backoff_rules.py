"""The shared backoff's pure rules: what a 429's headers ask for, and what a pause is keyed on."""

from __future__ import annotations

import email.utils
import time
from types import SimpleNamespace

import pytest

from agentledger.collectors import _backoff


@pytest.fixture(autouse=True)
def _clean() -> None:
    _backoff.reset()


def test_retry_after_in_seconds_milliseconds_or_an_http_date() -> None:
    now = time.time()
    assert _backoff.retry_after_s({"retry-after": "2"}) == 2.0
    assert _backoff.retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert _backoff.retry_after_s({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    # none given, in the past, unreadable, or beyond belief: no pause
    for headers in ({}, {"retry-after": "0"}, {"retry-after": "soon"}, {"retry-after": "86400"}):
        assert _backoff.retry_after_s(headers, now=now) is None
    assert (
        _backoff.retry_after_s({"retry-after": email.utils.formatdate(now - 5, usegmt=True)}, now=now) is None
    )


def test_a_pause_is_keyed_on_the_base_url_and_a_fingerprint_never_the_key() -> None:
    client = SimpleNamespace(_base_url="http://127.0.0.1:1/v1", api_key="sk-secret-value")
    other = SimpleNamespace(_base_url="http://127.0.0.1:1/v1", api_key="sk-other-value")
    key = _backoff.key_of(client)
    assert key[0] == "http://127.0.0.1:1/v1" and "sk-secret" not in repr(key)
    response = SimpleNamespace(status_code=429, headers={"retry-after": "2"})
    _backoff.saw_response(client, response)
    assert 1.5 < _backoff.paused_for(key) <= 2.0
    assert _backoff.paused_for(_backoff.key_of(other)) == 0.0  # another key goes on
    _backoff.saw_response(other, SimpleNamespace(status_code=500, headers={"retry-after": "2"}))
    assert _backoff.paused_for(_backoff.key_of(other)) == 0.0  # only a 429 pauses
    assert list(_backoff.pauses()) == [key]
