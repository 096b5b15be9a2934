"""Budget run-out forecasts: the arithmetic, the window resets, which scopes get one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agentledger.dashboards.forecast import forecasts, recent_rate, run_out, window_end

NOW = datetime(2026, 11, 21, 14, 0, tzinfo=UTC)


def budget(
    scope: str = "agent/globex/writer", spend: str = "8", limit: str = "10", **extra: str
) -> dict[str, str]:
    return {
        "policy_id": "daily",
        "scope_key": scope,
        "window": "calendar_day",
        "window_start": "2026-11-21T00:00:00+00:00",
        "spend": spend,
        "limit": limit,
        "unit": "usd",
        **extra,
    }


def spent(cost: str, tenant: str = "globex", agent: str = "writer", **extra: object) -> dict[str, object]:
    return {
        "tenant": tenant,
        "agent": agent,
        "agent_version": "v1",
        "workflow": "wf",
        "cost_usd": cost,
        **extra,
    }


def test_two_dollars_left_at_a_dollar_twenty_an_hour_runs_out_in_100_minutes() -> None:
    resets = NOW + timedelta(hours=10)
    assert run_out(Decimal(8), Decimal(10), Decimal("1.2"), NOW, resets) == NOW + timedelta(minutes=100)


def test_no_forecast_when_the_window_resets_first_or_nothing_is_spent() -> None:
    resets = NOW + timedelta(hours=1)
    assert run_out(Decimal(8), Decimal(10), Decimal(1), NOW, resets) is None  # 2 h left, resets in 1 h
    assert run_out(Decimal(8), Decimal(10), Decimal(0), NOW, NOW + timedelta(days=1)) is None
    assert run_out(Decimal(10), Decimal(10), Decimal(5), NOW, NOW + timedelta(days=1)) is None  # spent


def test_windows_reset_at_their_end() -> None:
    assert window_end(budget()) == datetime(2026, 11, 22, tzinfo=UTC)
    month = budget(window="calendar_month", window_start="2026-11-01T00:00:00+00:00")
    assert window_end(month) == datetime(2026, 12, 1, tzinfo=UTC)
    rolling = budget(window="1h", window_start="2026-11-21T13:30:00+00:00")
    assert window_end(rolling) == datetime(2026, 11, 21, 14, 30, tzinfo=UTC)
    assert window_end(budget(window_end="2026-11-21T18:00:00+00:00")) == datetime(
        2026, 11, 21, 18, tzinfo=UTC
    )


def test_the_rate_is_the_scopes_own_spend() -> None:
    recent = [
        spent("0.70"),
        spent("0.50", agent_version="v2"),
        spent("9", agent="reader"),
        spent("4", tenant="acme"),
    ]
    assert recent_rate("agent/globex/writer", "usd", recent) == Decimal("1.20")
    assert recent_rate("tenant/globex", "usd", recent) == Decimal("10.20")
    assert recent_rate("agent_version/globex/writer/v2", "usd", recent) == Decimal("0.50")
    assert recent_rate("trace/globex/" + "a" * 32, "usd", recent) is None  # not per trace
    tokens = [spent("0", input_tokens=900, output_tokens=100)]
    assert recent_rate("agent/globex/writer", "tokens", tokens) == Decimal(1000)


def test_the_sentence_names_the_scope_the_window_and_the_time() -> None:
    found = forecasts(
        [budget(), budget("agent/globex/reader", spend="1"), budget("agent/acme/idle")],
        [spent("0.70"), spent("0.50", agent_version="v2"), spent("0.10", agent="reader")],
        NOW,
    )
    assert [s for _, s in found] == [
        "at the last hour's rate, globex/writer's daily budget runs out at 15:40 UTC"
    ]
    assert found[0][0].runs_out == datetime(2026, 11, 21, 15, 40, tzinfo=UTC)


def test_soonest_first_and_another_day_is_named() -> None:
    late = budget("tenant/acme", spend="0", limit="100", window="calendar_month",
                  window_start="2026-11-01T00:00:00+00:00")  # fmt: skip
    found = forecasts([late, budget()], [spent("1.2"), spent("5", tenant="acme")], NOW)
    assert [f.scope for f, _ in found] == ["globex/writer", "acme"]
    assert found[1][1].endswith("acme's monthly budget runs out at Nov 22 10:00 UTC")
