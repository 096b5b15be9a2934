"""The minute rollup of events: spend, calls and tokens per minute and dimension.

``compact`` writes one rollup file per compacted date partition of ``events``, named like
that compacted file (``events_minute/date=D/compacted-<digest>.parquet``). ``Catalog`` reads
a date from its rollup only while the date's events are exactly that one compacted file;
every other date (new files since, no rollup yet) is aggregated from the events at query
time with the same SQL, so an answer from the rollup equals one from the raw events
(docs/adr/0017-minute-rollups.md).
"""

from __future__ import annotations

DATASET = "events_minute"
DIMENSIONS = ("tenant", "agent", "agent_version", "workflow", "model", "provider")
MINUTE_US = 60_000_000

AGGREGATES = """sum(cost_usd) AS cost_usd, count(*) AS events,
    count(*) FILTER (WHERE type = 'usage') AS calls,
    sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
    count(*) FILTER (WHERE type = 'usage' AND NOT priced) AS unpriced_calls,
    min(ts) AS first_ts, max(ts) AS last_ts"""
"""Per (dimensions, minute): what the named queries re-aggregate (sums, counts, min, max)."""


def select(source: str, where: str = "", with_date: bool = True) -> str:
    """The rollup's rows of ``source`` (events), optionally with the hive ``date`` column."""
    dims = ", ".join(DIMENSIONS)
    date = "date, " if with_date else ""
    return (
        f"SELECT {dims}, {date}epoch_us(ts) // {MINUTE_US} AS minute, {AGGREGATES} "
        f"FROM {source} {where} GROUP BY ALL"
    )
