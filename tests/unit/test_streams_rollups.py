"""Rollup buckets: rolling and calendar windows, pruning, the span tree, serialisation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from agentledger.events import Window
from agentledger.streams.worker.rollups import Rollup, window_bounds

NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC).timestamp()


def test_rolling_and_calendar_windows() -> None:
    r = Rollup()
    r.add(int(NOW) - 10, Decimal("1.5"), 100, 1, 0)  # 10 s ago
    r.add(int(NOW) - 600, Decimal("2"), 200, 1, 0)  # 10 min ago
    r.add(int(NOW) - 7200, Decimal("4"), 400, 1, 0)  # 2 h ago, same UTC day
    r.add(int(NOW) - 13 * 3600, Decimal("8"), 800, 1, 0)  # yesterday 23:00, same month
    assert r.total(Window.MINUTE, NOW).cost == Decimal("1.5")
    assert r.total(Window.HOUR, NOW).cost == Decimal("3.5")
    assert r.total(Window.DAY, NOW).cost == Decimal("15.5")
    assert r.total(Window.CALENDAR_DAY, NOW).cost == Decimal("7.5")
    assert r.total(Window.CALENDAR_MONTH, NOW).cost == Decimal("15.5")
    assert r.total(Window.CALENDAR_DAY, NOW).tokens == 700
    # the minute slides: 70 s later the first amount is gone
    assert r.total(Window.MINUTE, NOW + 70).cost == 0
    # next day: the calendar day starts from zero
    assert r.total(Window.CALENDAR_DAY, NOW + 86400).cost == 0


def test_prune_keeps_what_windows_see_and_roundtrip() -> None:
    r = Rollup()
    r.add(int(NOW) - 100, Decimal("1"), 1, 1, 0)
    r.add(int(NOW), Decimal("0.000000000001"), 1, 0, 1)
    r.add_span("b" * 16, "a" * 16, Decimal("1"))
    r.add_span("a" * 16, None, Decimal("0.5"))
    r.add_span("c" * 16, "b" * 16, Decimal("0.25"))
    before = {w: r.total(w, NOW) for w in Window}
    r.prune(NOW)
    assert len(r.grains["1m"]) == 1  # the 100 s old second bucket went
    assert {w: r.total(w, NOW) for w in Window} == {
        **before,
        Window.MINUTE: r.total(Window.MINUTE, NOW),
    }
    back = Rollup.loads(r.dumps())
    assert {w: back.total(w, NOW) for w in Window} == {w: r.total(w, NOW) for w in Window}
    inc = back.inclusive_costs()
    assert (
        inc["a" * 16] == Decimal("1.75")
        and inc["b" * 16] == Decimal("1.25")
        and inc["c" * 16] == Decimal("0.25")
    )


def test_window_bounds() -> None:
    start, end = window_bounds(Window.CALENDAR_MONTH, NOW)
    assert (start, end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    start, end = window_bounds(Window.HOUR, NOW)
    assert end is None and (NOW - start.timestamp()) == 3600
