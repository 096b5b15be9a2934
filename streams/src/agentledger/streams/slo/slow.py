"""Slow is unhealthy: the rule a provider circuit applies to the latencies it holds."""

from __future__ import annotations

from collections.abc import Sequence


def slow_reason(
    latencies_ms: Sequence[float], threshold_ms: float, target: float, min_calls: int = 1
) -> str | None:
    """Why these (successful) calls break a latency objective of ``target`` within
    ``threshold_ms``, or None when they keep it (or are fewer than ``min_calls``)."""
    good = sum(1 for lat in latencies_ms if lat <= threshold_ms)
    return slow_reason_counts(good, len(latencies_ms), threshold_ms, target, min_calls)


def slow_reason_counts(
    good: int, calls: int, threshold_ms: float, target: float, min_calls: int = 1
) -> str | None:
    """``slow_reason`` from counts: ``good`` of ``calls`` successful calls within the threshold."""
    if calls < max(min_calls, 1):
        return None
    if good / calls >= target:
        return None
    return f"latency objective broken: {good}/{calls} calls within {threshold_ms:.0f} ms < {target:.1%}"
