"""Budget run-out forecasts: when a live budget runs out at its scope's recent spend rate.

Pure arithmetic on the live budget statuses (rows of ``BudgetStatus``) and the spend of the
last hour per tenant, agent, version and workflow (rows of the warehouse's ``costs``): no
SQL, no clock (``now`` is given). A budget gets a forecast only when that rate exhausts it
before its window resets.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

Row = dict[str, Any]

WINDOW_LENGTH = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}
WINDOW_NAME = {
    "1m": "per-minute",
    "1h": "hourly",
    "24h": "daily",
    "calendar_day": "daily",
    "calendar_month": "monthly",
}
# scope kind -> the fields of the recent-spend rows its key names, in key order
_SCOPE_FIELDS = {
    "tenant": ("tenant",),
    "agent": ("tenant", "agent"),
    "agent_version": ("tenant", "agent", "agent_version"),
    "workflow": ("tenant", "workflow"),
}


@dataclass(frozen=True)
class Forecast:
    policy_id: str
    scope_key: str
    spend: Decimal
    limit: Decimal
    unit: str
    rate_per_hour: Decimal
    runs_out: datetime
    resets: datetime

    @property
    def scope(self) -> str:
        """``agent/globex/writer`` -> ``globex/writer``."""
        return self.scope_key.split("/", 1)[-1]

    def sentence(self, window: str, now: datetime) -> str:
        when = self.runs_out.astimezone(UTC)
        at = (
            when.strftime("%H:%M UTC")
            if when.date() == now.astimezone(UTC).date()
            else when.strftime("%b %d %H:%M UTC")
        )
        return f"at the last hour's rate, {self.scope}'s {WINDOW_NAME.get(window, window)} budget runs out at {at}"


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


def window_end(status: Row) -> datetime | None:
    """When the budget's window resets: its ``window_end``, else its start plus its length
    (a calendar day or month ends at the next UTC midnight or first of the month)."""
    end = _time(status.get("window_end"))
    if end is not None:
        return end
    start, window = _time(status.get("window_start")), str(status.get("window") or "")
    if start is None:
        return None
    start = start.astimezone(UTC)
    if window in WINDOW_LENGTH:
        return start + WINDOW_LENGTH[window]
    if window == "calendar_day":
        return start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    if window == "calendar_month":
        days = calendar.monthrange(start.year, start.month)[1]
        return start.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=days)
    return None


def run_out(
    spend: Decimal, limit: Decimal, rate_per_hour: Decimal, now: datetime, resets: datetime
) -> datetime | None:
    """When ``spend`` reaches ``limit`` at ``rate_per_hour`` from ``now``; None when the
    rate is zero, the budget is already spent, or that is not before ``resets``."""
    left = limit - spend
    if rate_per_hour <= 0 or left <= 0:
        return None
    at = now + timedelta(hours=float(left / rate_per_hour))
    return at if at < resets else None


def recent_rate(scope_key: str, unit: str, recent: Iterable[Row], hours: float = 1.0) -> Decimal | None:
    """The scope's spend (USD, or input + output tokens) per hour over ``recent`` rows (one
    per tenant, agent, agent_version and workflow, covering the last ``hours``); None for a
    scope the rows cannot tell apart (a trace, a provider)."""
    kind, _, rest = scope_key.partition("/")
    fields = _SCOPE_FIELDS.get(kind)
    if fields is None:
        return None
    wanted = rest.split("/")
    if len(wanted) != len(fields):
        return None
    total = Decimal(0)
    for r in recent:
        if [str(r.get(f)) for f in fields] != wanted:
            continue
        if unit == "tokens":
            total += Decimal(int(r.get("input_tokens") or 0) + int(r.get("output_tokens") or 0))
        else:
            total += _dec(r.get("cost_usd")) or Decimal(0)
    return total / Decimal(str(hours))


def forecasts(budgets: Iterable[Row], recent: list[Row], now: datetime) -> list[tuple[Forecast, str]]:
    """Each budget that runs out before its window resets at the last hour's rate, soonest
    first, with its sentence."""
    out: list[tuple[Forecast, str]] = []
    for b in budgets:
        spend, limit, resets = _dec(b.get("spend")), _dec(b.get("limit")), window_end(b)
        unit, key = str(b.get("unit") or "usd"), str(b.get("scope_key") or "")
        rate = recent_rate(key, unit, recent)
        if spend is None or limit is None or resets is None or rate is None:
            continue
        at = run_out(spend, limit, rate, now, resets)
        if at is None:
            continue
        f = Forecast(str(b.get("policy_id") or ""), key, spend, limit, unit, rate, at, resets)
        out.append((f, f.sentence(str(b.get("window") or ""), now)))
    out.sort(key=lambda fs: (fs[0].runs_out, fs[0].scope_key))
    return out
