"""Re-pricing: cost again from the raw token counts, side by side with the recorded cost.

Nothing is rewritten: the usage rows are read through the deduplicated view, each one is
priced again with a ``PriceBook`` (a newer genai-prices snapshot, or an overrides file with
negotiated or self-hosted rates) and the result is grouped next to what was recorded when
the event went through the worker. Each call is priced on its own, because tiered
("cliff") prices, per-request fees and time-conditional prices are not linear in a sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from agentledger.errors import ConfigError
from agentledger.events import UsageEvent
from agentledger.pricing import PriceBook
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.queries import GROUPABLE, Rows, _window

_COLUMNS = (
    "event_id, ts, tenant, agent, agent_version, workflow, trace_id, span_id, provider, model, "
    "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, "
    "cost_usd, priced"
)
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _usage(row: dict[str, Any]) -> UsageEvent:
    # Rows come from events the worker validated: skip validation (this is the hot loop).
    fields: dict[str, Any] = {name: row[name] or 0 for name in _TOKENS}
    return UsageEvent.model_construct(
        event_id=row["event_id"], ts=row["ts"], tenant=row["tenant"], agent=row["agent"],
        trace_id=row["trace_id"], span_id=row["span_id"], provider=row["provider"],
        model=row["model"], **fields,
    )  # fmt: skip


def reprice(
    cat: Catalog,
    book: PriceBook,
    group_by: Sequence[str] = ("tenant", "agent", "provider", "model"),
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Rows:
    """Per group: calls, recorded cost, re-priced cost, their difference, and how many calls
    change from unpriced to priced (or back). Money stays exact (``Decimal``)."""
    bad = [g for g in group_by if g not in GROUPABLE]
    if bad:
        raise ConfigError(f"cannot group by {bad}: choose from {', '.join(GROUPABLE)}")
    w = _window(tenant, start, end).add("type = 'usage'")
    table = cat.arrow(f"SELECT {_COLUMNS} FROM events {w.sql()}", w.params)
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in table.to_pylist():
        cost, priced, _ = book.price(_usage(row))
        key = tuple(row[g] for g in group_by)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {
                **dict(zip(group_by, key, strict=True)),
                "calls": 0,
                "recorded_cost_usd": Decimal(0),
                "repriced_cost_usd": Decimal(0),
                "newly_priced": 0,
                "newly_unpriced": 0,
            }
        g["calls"] += 1
        g["recorded_cost_usd"] += row["cost_usd"]
        g["repriced_cost_usd"] += cost
        g["newly_priced"] += int(priced and not row["priced"])
        g["newly_unpriced"] += int(row["priced"] and not priced)
    out = []
    for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        g = groups[key]
        g["difference_usd"] = g["repriced_cost_usd"] - g["recorded_cost_usd"]
        out.append(g)
    return out
