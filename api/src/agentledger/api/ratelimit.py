"""Per-key ingest rate limit: a token bucket counted in events (not requests), so one
5,000-event batch costs what 50 batches of 100 cost."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agentledger.api.errors import RateLimitedError


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class EventRateLimiter:
    """``take(key_id, n)`` spends ``n`` tokens or raises ``RateLimitedError`` (HTTP 429)."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key_id: str, n: int) -> None:
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if n > bucket.tokens:
            wait = (n - bucket.tokens) / self.rate
            raise RateLimitedError(
                f"key is over its ingest rate of {self.rate:g} events/s (burst {self.burst:g}); "
                f"retry in {wait:.1f}s",
                retry_after_s=wait,
            )
        bucket.tokens -= n
