"""The per-key ingest limiter counts events, refills at its rate, says when to retry."""

from __future__ import annotations

import pytest

from agentledger.api.errors import RateLimitedError
from agentledger.api.ratelimit import EventRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_per_key() -> None:
    clock = FakeClock()
    limiter = EventRateLimiter(rate_per_s=100, burst=500, clock=clock)
    limiter.take("a", 500)
    with pytest.raises(RateLimitedError) as info:
        limiter.take("a", 100)
    assert info.value.retry_after_s == pytest.approx(1.0)
    limiter.take("b", 500)  # another key has its own bucket
    clock.now += 1.0
    limiter.take("a", 100)
    with pytest.raises(RateLimitedError):
        limiter.take("a", 1)


def test_refill_is_capped_at_burst() -> None:
    clock = FakeClock()
    limiter = EventRateLimiter(rate_per_s=1000, burst=50, clock=clock)
    clock.now += 3600
    with pytest.raises(RateLimitedError):
        limiter.take("a", 51)
    limiter.take("a", 50)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        EventRateLimiter(0, 10)
