"""Exact good/total counts per time bucket.

Counts are integers keyed by bucket index (``floor(ts / bucket_s)``), so partial counters kept
by any number of workers merge by summing (``merge``): the figures of the merged counter are
those of one counter that saw every call. Two resolutions are kept: fine buckets (default one
minute) for the burn-rate windows, hourly ones for the objective's whole window (28 days is 672
of them, not 40,320).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HOUR_S = 3600


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """Good and total calls over one window, with what they mean against ``target``."""

    good: int
    total: int
    target: float

    @property
    def bad(self) -> int:
        return self.total - self.good

    @property
    def attainment(self) -> float | None:
        """Share of good calls (None without calls)."""
        return self.good / self.total if self.total else None

    @property
    def burn_rate(self) -> float:
        """How fast the error budget burns: 1.0 spends exactly the budget over the window."""
        return (self.bad / self.total) / (1 - self.target) if self.total else 0.0

    @property
    def budget_left(self) -> float:
        """Share of the window's error budget not yet spent (negative: overspent)."""
        return 1.0 - self.burn_rate


@dataclass(slots=True)
class SloCounts:
    """Good/total per fine bucket and per hour for one objective and one entity."""

    bucket_s: int = 60
    fine: dict[int, list[int]] = field(default_factory=dict)
    hourly: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.bucket_s <= 0 or HOUR_S % self.bucket_s:
            raise ValueError("bucket_s must divide an hour")

    # Running sums per window length, slid bucket by bucket: a window costs the buckets that
    # entered and left it since the last call, not all of them (a 6 h window is 360 buckets).
    _sums: dict[tuple[int, int], list[int]] = field(
        default_factory=dict
    )  # (size, n) -> first, last, good, total

    def add(self, ts: float, good: bool, n: int = 1) -> None:
        g = n if good else 0
        for buckets, size in ((self.fine, self.bucket_s), (self.hourly, HOUR_S)):
            idx = int(ts // size)
            cell = buckets.setdefault(idx, [0, 0])
            cell[0] += g
            cell[1] += n
            for (sz, _), run in self._sums.items():
                if sz == size and run[0] <= idx <= run[1]:
                    run[2] += g
                    run[3] += n

    def merge(self, other: SloCounts) -> SloCounts:
        """Add ``other``'s counts into this counter (same bucket size)."""
        if other.bucket_s != self.bucket_s:
            raise ValueError("cannot merge counters of different bucket sizes")
        for mine, theirs in ((self.fine, other.fine), (self.hourly, other.hourly)):
            for idx, (g, t) in theirs.items():
                cell = mine.setdefault(idx, [0, 0])
                cell[0] += g
                cell[1] += t
        self._sums.clear()
        return self

    @staticmethod
    def _sum(buckets: dict[int, list[int]], first: int, last: int) -> tuple[int, int]:
        good = total = 0
        if last - first + 1 < len(buckets):
            for idx in range(first, last + 1):
                cell = buckets.get(idx)
                if cell is not None:
                    good += cell[0]
                    total += cell[1]
        else:
            for idx, cell in buckets.items():
                if first <= idx <= last:
                    good += cell[0]
                    total += cell[1]
        return good, total

    def window(self, now: float, seconds: float, target: float) -> WindowFigures:
        """Calls in the ``seconds`` before ``now`` (whole buckets; the current one included)."""
        hourly = seconds >= 24 * HOUR_S and seconds % HOUR_S == 0  # a day or more: hour buckets
        buckets, size = (self.hourly, HOUR_S) if hourly else (self.fine, self.bucket_s)
        n = max(1, int(seconds // size))
        last = int(now // size)
        first = last - n + 1
        run = self._sums.get((size, n))
        if run is None or last < run[1] or first > run[1]:
            good, total = self._sum(buckets, first, last)
            self._sums[(size, n)] = [first, last, good, total]
            return WindowFigures(good, total, target)
        if last > run[1]:
            g_in, t_in = self._sum(buckets, run[1] + 1, last)
            g_out, t_out = self._sum(buckets, run[0], first - 1)
            run[:] = [first, last, run[2] + g_in - g_out, run[3] + t_in - t_out]
        return WindowFigures(run[2], run[3], target)

    def to_state(self) -> dict[str, Any]:
        """Compact, exact and JSON-able: per resolution a flat list of ``index step, good, bad``
        over the buckets in order (a bucket step is mostly 1, bad counts mostly 0), ~10 bytes a
        bucket. A 28-day objective holds about 674 hourly buckets and its longest rule
        window's minute buckets (362 for the 6 h ticket rule): under 10 KB."""
        return {"b": self.bucket_s, "f": _flat(self.fine), "h": _flat(self.hourly)}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> SloCounts:
        return cls(int(d["b"]), _unflat(d["f"]), _unflat(d["h"]))

    def prune(self, now: float, fine_keep_s: float, hourly_keep_s: float) -> None:
        """Forget buckets no window can reach any more."""
        for buckets, size, keep in (
            (self.fine, self.bucket_s, fine_keep_s),
            (self.hourly, HOUR_S, hourly_keep_s),
        ):
            oldest = int((now - keep) // size)
            for idx in [i for i in buckets if i < oldest]:
                del buckets[idx]
            # a running sum reaching a forgotten bucket could no longer subtract it: start over
            for k in [k for k, run in self._sums.items() if k[0] == size and run[0] < oldest]:
                del self._sums[k]


def _flat(buckets: dict[int, list[int]]) -> list[int]:
    out: list[int] = []
    prev = 0
    for idx in sorted(buckets):
        good, total = buckets[idx]
        out += (idx - prev, good, total - good)
        prev = idx
    return out


def _unflat(flat: list[Any]) -> dict[int, list[int]]:
    if len(flat) % 3:
        raise ValueError("saved buckets are not (step, good, bad) triples")
    out: dict[int, list[int]] = {}
    idx = 0
    for i in range(0, len(flat), 3):
        idx += int(flat[i])
        good, bad = int(flat[i + 1]), int(flat[i + 2])
        out[idx] = [good, good + bad]
    return out
