"""Nanosecond timestamps to the ISO-8601 strings the contract validates (off the hot path)."""

from __future__ import annotations

import time

_cache: dict[int, str] = {}


def iso(ns: int) -> str:
    """``2026-11-24T12:00:00.123456Z`` for a UNIX time in nanoseconds (microsecond precision)."""
    sec, rem = divmod(ns, 1_000_000_000)
    base = _cache.get(sec)
    if base is None:
        if len(_cache) > 4096:  # the worker sees a sliding window of seconds; keep it small
            _cache.clear()
        base = _cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{base}.{rem // 1000:06d}Z"
