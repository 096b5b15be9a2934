"""The minute rollup of events: spend, calls, tokens, errors, scores and latency sketches per
minute and dimension.

``compact`` writes one rollup file per compacted date partition of ``events``, named like
that compacted file (``events_minute_v2/date=D/compacted-<digest>.parquet``). ``Catalog`` reads
a date from its rollup only while the date's events are exactly that one compacted file;
every other date (new files since, no rollup yet) is aggregated from the events at query
time with the same SQL, so an answer from the rollup equals one from the raw events
(docs/adr/0017-minute-rollups.md); percentiles from the sketches are within ``SKETCH_ERROR``
(docs/adr/0027-latency-sketches.md).
"""

from __future__ import annotations

DATASET = "events_minute_v2"
"""Named by version: a rollup written before a column was added is not read (``compact``
writes the new one beside each compacted file, the old folder is left unread)."""
DIMENSIONS = ("tenant", "agent", "agent_version", "workflow", "model", "provider", "metric")
MINUTE_US = 60_000_000

GAMMA = 1.02
"""Latency sketch: bucket ``i >= 1`` holds the latencies in ``[GAMMA**(i-1), GAMMA**i)`` ms
(``-i`` the negative ones, ``0`` zero) and reads back as the bucket's relative middle
``2 GAMMA**i / (1 + GAMMA)``: within ``(GAMMA - 1) / (GAMMA + 1)`` (under 1 %) of any latency
in it. Per-minute sketches merge by adding counts (docs/adr/0027-latency-sketches.md)."""
SKETCH_ERROR = (GAMMA - 1) / (GAMMA + 1)
LATENCY_MS = 'epoch_ms("end") - epoch_ms(start)'
LLM_CALL = "type = 'span' AND kind = 'llm' AND provider IS NOT NULL"
OK = "status IS DISTINCT FROM 'error'"


def sketch_key(ms: str) -> str:
    """SQL: the sketch bucket of the latency ``ms`` (an integer expression)."""
    return (
        f"(sign({ms}) * CASE WHEN {ms} = 0 THEN 0 ELSE 1 + floor(ln(abs({ms})) / ln({GAMMA})) END)::INTEGER"
    )


def sketch_value(key: str) -> str:
    """SQL: the latency (ms) a sketch bucket ``key`` reads back as."""
    return f"(sign({key}) * 2 * pow({GAMMA}, abs({key})) / (1 + {GAMMA}))"


AGGREGATES = (
    """sum(cost_usd) AS cost_usd, count(*) AS events,
    count(*) FILTER (WHERE type = 'usage') AS calls,
    sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
    count(*) FILTER (WHERE type = 'usage' AND NOT priced) AS unpriced_calls,
    min(ts) AS first_ts, max(ts) AS last_ts,
    count(*) FILTER (WHERE type = 'span') AS spans,
    count(*) FILTER (WHERE type = 'span' AND status = 'error') AS span_errors,
    histogram("""
    + sketch_key(LATENCY_MS)
    + f""") FILTER (WHERE type = 'span' AND {LATENCY_MS} IS NOT NULL)
        AS span_ms,
    count(*) FILTER (WHERE {LLM_CALL}) AS llm_calls,
    count(*) FILTER (WHERE {LLM_CALL} AND NOT ({OK})) AS llm_errors,
    histogram({sketch_key(LATENCY_MS)}) FILTER (WHERE {LLM_CALL} AND {OK} AND {LATENCY_MS} IS NOT NULL)
        AS llm_ok_ms,
    max({LATENCY_MS}) FILTER (WHERE {LLM_CALL} AND {OK}) AS llm_ok_max_ms,
    sum(score) FILTER (WHERE type = 'quality') AS score_sum,
    count(score) FILTER (WHERE type = 'quality') AS scores,
    min(score) FILTER (WHERE type = 'quality') AS score_min"""
)
"""Per (dimensions, minute): what the named queries re-aggregate (sums, counts, min, max, and
latency sketches: maps of sketch bucket to count, merged by adding counts)."""


def select(source: str, where: str = "", with_date: bool = True, extra: str = "") -> str:
    """The rollup's rows of ``source`` (events), optionally with the hive ``date`` column;
    ``extra``: one more grouping column (``expr AS name``), finer than the minute."""
    dims = ", ".join(DIMENSIONS)
    date = "date, " if with_date else ""
    more = f"{extra}, " if extra else ""
    return (
        f"SELECT {dims}, {date}{more}epoch_us(ts) // {MINUTE_US} AS minute, {AGGREGATES} "
        f"FROM {source} {where} GROUP BY ALL"
    )
