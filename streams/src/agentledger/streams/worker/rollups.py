"""Rolling cost and token totals of one scope, in our own time buckets (event time).

Faust windowed tables use the Kafka record timestamp and expire by wall clock (DESIGN.md,
Faust notes), so the worker keeps its own buckets inside a plain table value. Each scope
key (``agent/acme/planner`` ...) holds:

* rolling ``1m`` in 1-second buckets, ``1h`` in 1-minute buckets, ``24h`` in 15-minute
  buckets. A rolling total counts every bucket that overlaps the window, so the oldest bucket
  counts whole: a rolling total may include up to one bucket of older spend (fails safe,
  never under);
* ``calendar_day`` and ``calendar_month`` (UTC) of the event time;
* for traces: each span's parent and direct cost (inclusive subtree cost is computed on read);
* for traces: the loop detector's state of the trace (``loop``: worker.loops), so that it
  survives a restart with the totals and the mark below;
* for screened sources (``source/<tenant>/<channel>/<source>``, no totals): the traces their
  flagged outputs came from (``flags``: worker.screens), likewise;
* ``applied``: per events partition, the highest origin offset whose delta is in these totals
  (stage two drops a delta at or below it: worker.deltas). Kept in the same value as the
  totals, so one changelog record holds both.

Windows are evaluated against the wall clock ``now``; a late event still lands in the bucket
of its own time (and in no rolling window if it is older than the window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from agentledger.events import Window
from agentledger.streams.worker.loops import TraceLoopState

ZERO = Decimal(0)
# grain (bucket seconds) and span (window seconds) of the rolling windows
ROLLING: dict[Window, tuple[int, int]] = {
    Window.MINUTE: (1, 60),
    Window.HOUR: (60, 3600),
    Window.DAY: (900, 86400),
}
CALENDAR = (Window.CALENDAR_DAY, Window.CALENDAR_MONTH)


def day_of(ts_s: int) -> int:
    return ts_s // 86400


def month_of(ts_s: int) -> int:
    d = datetime.fromtimestamp(ts_s, UTC)
    return d.year * 12 + d.month - 1


def window_bounds(window: Window, now_s: float) -> tuple[datetime, datetime | None]:
    """Start (and, for calendar windows, end) of the window containing ``now``."""
    if window in ROLLING:
        return datetime.fromtimestamp(now_s - ROLLING[window][1], UTC), None
    d = datetime.fromtimestamp(now_s, UTC)
    if window is Window.CALENDAR_DAY:
        start = d.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, datetime.fromtimestamp(start.timestamp() + 86400, UTC)
    start = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, nxt


def window_id(window: Window, now_s: float) -> int:
    """Identity of the calendar window containing ``now`` (rolling windows: 0)."""
    if window is Window.CALENDAR_DAY:
        return day_of(int(now_s))
    if window is Window.CALENDAR_MONTH:
        return month_of(int(now_s))
    return 0


@dataclass(slots=True)
class Totals:
    """Cost (USD), tokens (input + output), priced usage calls and unpriced usage calls."""

    cost: Decimal = ZERO
    tokens: int = 0
    calls: int = 0
    unpriced: int = 0

    def add(self, cost: Decimal, tokens: int, calls: int, unpriced: int) -> None:
        self.cost += cost
        self.tokens += tokens
        self.calls += calls
        self.unpriced += unpriced

    def merge(self, other: Totals) -> None:
        self.add(other.cost, other.tokens, other.calls, other.unpriced)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cost_usd": str(self.cost),
            "tokens": self.tokens,
            "calls": self.calls,
            "unpriced": self.unpriced,
        }


@dataclass(slots=True)
class SourceFlags:
    """A screened source's state (worker.screens): (event time s, trace id) of its flagged
    verdicts within the window, oldest first, and when it last raised its quarantine alert."""

    alerted: float | None = None
    seen: list[tuple[float, str]] = field(default_factory=list)


@dataclass(slots=True)
class Rollup:
    """Buckets of one scope: ``grains[name][bucket] -> Totals`` and, for traces, the span tree."""

    grains: dict[str, dict[int, Totals]] = field(default_factory=dict)
    spans: dict[str, tuple[str | None, Decimal]] = field(default_factory=dict)
    touched_s: int = 0  # wall-clock second of the last write (idle traces are evicted)
    applied: dict[int, int] = field(default_factory=dict)  # events partition -> last origin offset
    loop: TraceLoopState | None = None  # a trace's loop-detector state (worker.loops)
    flags: SourceFlags | None = None  # a screened source's flagged traces (worker.screens)

    def add(self, ts_s: int, cost: Decimal, tokens: int, calls: int, unpriced: int) -> None:
        """Add one (pre-aggregated) amount at event time ``ts_s`` to every window."""
        for window, (grain, _) in ROLLING.items():
            self._bucket(window.value, ts_s - ts_s % grain).add(cost, tokens, calls, unpriced)
        self._bucket(Window.CALENDAR_DAY.value, day_of(ts_s)).add(cost, tokens, calls, unpriced)
        self._bucket(Window.CALENDAR_MONTH.value, month_of(ts_s)).add(cost, tokens, calls, unpriced)

    def _bucket(self, grain: str, bucket: int) -> Totals:
        buckets = self.grains.setdefault(grain, {})
        t = buckets.get(bucket)
        if t is None:
            t = buckets[bucket] = Totals()
        return t

    def add_span(self, span_id: str, parent: str | None, direct_cost: Decimal) -> None:
        old_parent, old_cost = self.spans.get(span_id, (None, ZERO))
        self.spans[span_id] = (parent or old_parent, old_cost + direct_cost)

    def total(self, window: Window, now_s: float) -> Totals:
        out = Totals()
        buckets = self.grains.get(window.value, {})
        if window in ROLLING:
            grain, span = ROLLING[window]
            lo = now_s - span
            for b, t in buckets.items():
                if b + grain > lo:
                    out.merge(t)
        else:
            current = buckets.get(window_id(window, now_s))
            if current is not None:
                out.merge(current)
        return out

    def prune(self, now_s: float) -> None:
        """Drop buckets no window can see any more (keeps the previous day and month)."""
        for window, (grain, span) in ROLLING.items():
            buckets = self.grains.get(window.value)
            if buckets:
                for b in [b for b in buckets if b + grain <= now_s - span]:
                    del buckets[b]
        for window in CALENDAR:
            buckets = self.grains.get(window.value)
            if buckets:
                current = window_id(window, now_s)
                for b in [b for b in buckets if b < current - 1]:
                    del buckets[b]

    def inclusive_costs(self) -> dict[str, Decimal]:
        """Inclusive cost of every span: its direct cost plus its whole subtree's."""
        inclusive = {s: cost for s, (_, cost) in self.spans.items()}
        for span_id, (_, cost) in self.spans.items():
            seen = {span_id}
            parent = self.spans[span_id][0]
            while parent is not None and parent in self.spans and parent not in seen:
                seen.add(parent)  # guards against a cycle in malformed parent links
                inclusive[parent] += cost
                parent = self.spans[parent][0]
        return inclusive

    # -- serialisation (the table value; Decimal kept as exact strings) -----------------

    def dumps(self) -> bytes:
        doc: dict[str, Any] = {
            "g": {
                g: [[b, str(t.cost), t.tokens, t.calls, t.unpriced] for b, t in buckets.items()]
                for g, buckets in self.grains.items()
            }
        }
        if self.spans:
            doc["s"] = {s: [p, str(c)] for s, (p, c) in self.spans.items()}
        if self.touched_s:
            doc["t"] = self.touched_s
        if self.applied:
            doc["w"] = [[p, o] for p, o in self.applied.items()]
        if self.loop is not None:
            doc["l"] = self.loop.dump()
        if self.flags is not None:
            doc["q"] = [self.flags.alerted, self.flags.seen]
        return orjson.dumps(doc)

    @classmethod
    def loads(cls, raw: bytes | str | dict[str, Any]) -> Rollup:
        """From our bytes, or from the dict a changelog reader already decoded them into."""
        doc = raw if isinstance(raw, dict) else orjson.loads(raw)
        r = cls()
        for g, rows in doc.get("g", {}).items():
            r.grains[g] = {int(b): Totals(Decimal(c), tok, calls, unp) for b, c, tok, calls, unp in rows}
        for s, (p, c) in doc.get("s", {}).items():
            r.spans[s] = (p, Decimal(c))
        r.touched_s = int(doc.get("t", 0))
        r.applied = {int(p): int(o) for p, o in doc.get("w", [])}
        loop = doc.get("l")
        if loop is not None:
            r.loop = TraceLoopState.load(loop)
        flags = doc.get("q")
        if flags is not None:
            r.flags = SourceFlags(flags[0], [(float(t), str(tr)) for t, tr in flags[1]])
        return r
