"""Named queries: plain functions ``(catalog, **params) -> list[dict]``.

They read the deduplicated views only, take every value as a bound parameter, and accept an
optional ``tenant``: the API passes the caller's tenant and must never see another's rows.
Money comes back as ``Decimal`` (exact sums of ``decimal(28,12)``). ``start`` is inclusive,
``end`` exclusive, both on event time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from agentledger.errors import ConfigError
from agentledger.warehouse import rollup, tracesum

if TYPE_CHECKING:  # importing the queries (the CLI's help) loads no pyarrow or DuckDB
    from agentledger.warehouse.catalog import Catalog

Rows = list[dict[str, Any]]
GROUPABLE = ("tenant", "agent", "agent_version", "workflow", "model", "provider")
BUCKETS = ("second", "minute", "hour", "day", "week", "month")


class _Where:
    """AND-ed conditions with positional parameters."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []

    def add(self, sql: str, *values: Any) -> _Where:
        self.parts.append(sql)
        self.params.extend(values)
        return self

    def when(self, value: Any, sql: str) -> _Where:
        return self.add(sql, value) if value is not None else self

    def sql(self) -> str:
        return ("WHERE " + " AND ".join(self.parts)) if self.parts else ""


def _window(tenant: str | None, start: datetime | None, end: datetime | None, col: str = "ts") -> _Where:
    where = _Where().when(tenant, "tenant = ?")
    where.when(start, f"{col} >= ?").when(end, f"{col} < ?")
    return where


USER_KEYS = tracesum.USER_KEYS
CONVERSATION_KEYS = tracesum.CONVERSATION_KEYS
_attribute = tracesum.attribute


@dataclass(frozen=True, slots=True)
class Filters:
    """The dashboards' view of the events, each None for no filter: ``tenant``, the window
    (``start`` inclusive, ``end`` exclusive, on event time), ``agent``, ``agent_version``,
    ``model`` (keeps the rows of that model only, so a trace's cost under it is what that
    model cost), ``user`` and ``conversation`` (keep whole traces: those where any event
    names them in its attributes; an SDK usually tags the root span only)."""

    tenant: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    agent: str | None = None
    agent_version: str | None = None
    model: str | None = None
    user: str | None = None
    conversation: str | None = None

    @property
    def people(self) -> bool:
        """Whether a user or conversation filter applies (not in the rollup's columns)."""
        return self.user is not None or self.conversation is not None

    def window(self, col: str = "ts") -> _Where:
        """The tenant and the time range as conditions on the events."""
        return _window(self.tenant, self.start, self.end, col)

    def tenant_only(self) -> _Where:
        return _Where().when(self.tenant, "tenant = ?")


def _filter(w: _Where, f: Filters, prefix: str = "", people: bool = True) -> _Where:
    """``f``'s agent, version and model filters on ``w`` (and with ``people`` its user and
    conversation filters, as the traces whose events name them)."""
    w.when(f.agent, f"{prefix}agent = ?").when(f.agent_version, f"{prefix}agent_version = ?")
    w.when(f.model, f"{prefix}model = ?")
    if not people:
        return w
    for value, keys in ((f.user, USER_KEYS), (f.conversation, CONVERSATION_KEYS)):
        if value is not None:
            sub = _traces_naming(value, keys)
            w.add(f"{prefix}trace_id IN (SELECT trace_id FROM events {sub.sql()})", *sub.params)
    return w


def _traces_naming(value: str, keys: Sequence[str], tenant: str | None = None) -> _Where:
    """Events whose attributes name ``value`` under one of ``keys`` (their traces are the
    user's or conversation's)."""
    # contains() first: a cheap scan that skips the JSON parse of every other row
    # (orjson escapes only quotes, backslashes and control characters in a value)
    cheap = '"' not in value and "\\" not in value and value.isprintable()
    sub = _Where().when(tenant, "tenant = ?").when(value if cheap else None, "contains(attributes, ?)")
    return sub.add(f"{_attribute(keys)} = ?", value)


def _people(w: _Where, f: Filters) -> _Where:
    """Keep whole traces whose events name ``f.user`` / ``f.conversation`` (from the trace parts)."""
    for value, column in ((f.user, "users"), (f.conversation, "conversations")):
        if value is not None:
            sub = f.tenant_only().add(f"list_contains({column}, ?)", value)
            w.add(f"trace_id IN (SELECT trace_id FROM {tracesum.DATASET} {sub.sql()})", *sub.params)
    return w


def _parts(f: Filters) -> tuple[str, list[Any]]:
    """A table expression of trace parts (``tracesum``) holding exactly the events between
    ``start`` and ``end`` that pass the filters: parts wholly inside the window as stored;
    the traces with a part across ``start`` or ``end`` (on those two dates only) summarised
    from their events in the window (``f``'s user and conversation are not applied: ``_people``)."""
    start, end = f.start, f.end
    base = _filter(f.tenant_only(), f, people=False)
    if start is None and end is None:
        return f"(SELECT * FROM {tracesum.DATASET} {base.sql()})", base.params
    bounds = [_utc(t).date() for t in (start, end) if t is not None]
    marks = ", ".join("?" for _ in bounds)
    across = _filter(f.tenant_only(), f, people=False)
    across.add(f"date IN ({marks})", *bounds)
    edges = [(t, "first_ts < ? AND last_ts >= ?") for t in (start, end) if t is not None]
    across.add("(" + " OR ".join(c for _, c in edges) + ")", *[v for t, _ in edges for v in (t, t)])
    straddling = f"SELECT trace_id FROM {tracesum.DATASET} {across.sql()}"
    inside = _filter(f.tenant_only(), f, people=False)
    inside.when(None if start is None else _utc(start).date(), "date >= ?")
    inside.when(None if end is None else _utc(end).date(), "date <= ?")
    inside.when(start, "first_ts >= ?").when(end, "last_ts < ?")
    inside.add(f"NOT (date IN ({marks}) AND trace_id IN ({straddling}))", *bounds, *across.params)
    raw = _filter(f.window(), f, people=False).add(f"date IN ({marks})", *bounds)
    raw.add(f"trace_id IN ({straddling})", *across.params)
    sql = (
        f"(SELECT * FROM {tracesum.DATASET} {inside.sql()} UNION ALL BY NAME "
        f"{tracesum.select('events', raw.sql())})"
    )
    return sql, [*inside.params, *raw.params]


_RANK = tracesum.RANK
_ROOT_AGENT = tracesum.ROOT_AGENT
_DESCRIBE = tracesum.DESCRIBE


def _whole(f: Filters, floor: Decimal | None = None) -> tuple[str, list[Any]] | None:
    """A table expression of whole traces (one row each: ``tracesum.TOTAL``'s columns with
    ``root_agent`` and ``root_version``) for a view of whole traces (no window, no version or
    model filter; ``tenant`` kept; with ``agent``, each trace's events of that agent, from
    ``trace_agent_totals``), else None. A trace's stored row as is where it is the whole
    trace; the rows of a trace on several dates, under two tenants, on a date not
    summarised (or without a trace id) merged. Ranking 1.4 M stored rows then needs no
    group-by of 3 M parts (docs/adr/0020-trace-summaries.md). ``floor``: leave out the rows
    stored whole that cost less (``_cost_floor``)."""
    if not _is_whole(f):
        return None
    hidden = "rooted_agent, first_agent, rooted_version, first_version"
    table, drop = _totals(f)
    fast = _stored_whole(f)
    fast.when(floor, "cost_usd >= ?")
    # the rows to merge, as conjunctions DuckDB pushes into the scan (the files' min/max and
    # null counts skip the rest; one OR of the three would read every row of the files)
    merged = [
        _mine(f).add("shared"),
        _mine(f).add("NOT shared AND NOT summarised"),
        _mine(f).add("NOT shared AND summarised AND trace_id IS NULL"),
    ]
    stored = _mine(f).add("summarised AND NOT shared")
    live, live_params = _live(f)
    unmerged = "".join(f"SELECT * FROM {table} {m.sql()} UNION ALL BY NAME " for m in merged)
    sql = f"""(SELECT * EXCLUDE (shared, summarised, date, {hidden}{drop}), {tracesum.ROOTS}
        FROM {table} {fast.sql()}
        UNION ALL BY NAME
        SELECT * EXCLUDE ({hidden}), {tracesum.ROOTS} FROM (
          SELECT trace_id, {tracesum.MERGE} FROM (
            {unmerged}
            SELECT * FROM {table} SEMI JOIN ({live}) l USING (trace_id) {stored.sql()})
          GROUP BY trace_id))"""
    return sql, [*fast.params, *(p for m in merged for p in m.params), *live_params, *stored.params]


def _totals(f: Filters) -> tuple[str, str]:
    """(the stored rows ``_whole`` reads for ``f``, the extra column to leave out of them)."""
    return (tracesum.TOTALS, "") if f.agent is None else (tracesum.AGENT_TOTALS, ", agent")


def _mine(f: Filters) -> _Where:
    """The tenant and the agent of ``f`` as conditions on ``_totals(f)``'s rows."""
    return f.tenant_only().when(f.agent, "agent = ?")


def _live(f: Filters) -> tuple[str, list[Any]]:
    """Traces with a row on a date not summarised (their stored rows are not flagged shared)."""
    w = _mine(f).add("NOT summarised AND trace_id IS NOT NULL")
    return f"SELECT trace_id FROM {_totals(f)[0]} {w.sql()}", w.params


def _is_whole(f: Filters) -> bool:
    """Whether ``f`` keeps whole traces, or an agent's part of each (no window; no version or
    model filter)."""
    return f.start is None and f.end is None and not (f.agent_version or f.model)


def _stored_whole(f: Filters) -> _Where:
    """The ``_totals(f)`` rows that are a whole trace as stored (``_whole``'s fast rows)."""
    w = _mine(f).add("summarised AND NOT shared AND trace_id IS NOT NULL")
    live, params = _live(f)
    return w.add(f"trace_id NOT IN ({live})", *params)


def _cost_floor(cat: Catalog, f: Filters, w: _Where, limit: int) -> Decimal | None:
    """The ``limit``-th highest cost of the traces stored whole that pass ``f`` and ``w``, if
    any: no such trace costing less can be in a top ``limit`` by cost (``limit`` of them cost
    at least as much), so ``_whole(f, floor)`` ranks exactly the same first ``limit``. The
    files are written most costly first (per agent) in small row groups (``compact``):
    DuckDB's top-N and this floor skip the row groups below it by their min/max."""
    if not _is_whole(f) or limit < 1:
        return None
    fast = _stored_whole(f)
    rows = _rows(
        cat,
        f"""SELECT cost_usd FROM (SELECT * FROM {_totals(f)[0]} {fast.sql()}) {w.sql()}
            ORDER BY cost_usd DESC NULLS LAST LIMIT 1 OFFSET ?""",
        [*fast.params, *w.params, int(limit) - 1],
    )
    floor: Decimal | None = rows[0]["cost_usd"] if rows else None
    return floor


def _rows(cat: Catalog, sql: str, params: list[Any]) -> Rows:
    rows: Rows = cat.query(sql, params)
    return rows


def _bucket(bucket: str | None) -> str | None:
    if bucket is None:
        return None
    if bucket not in BUCKETS:
        raise ConfigError(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    return bucket


_MICROS = {"second": 1_000_000, "minute": 60_000_000, "hour": 3_600_000_000}


def _bucket_sql(unit: str) -> tuple[str, str]:
    """(per-row key, that key as the bucket's UTC start): integer math and the hive ``date``
    column, because ``date_trunc`` on a TIMESTAMPTZ costs ~150 ns a row (ICU)."""
    if unit in _MICROS:
        return f"epoch_us(ts) // {_MICROS[unit]}", f"to_timestamp(_b * {_MICROS[unit] // 1_000_000})"
    return f"date_trunc('{unit}', date)", "CAST(CAST(_b AS TIMESTAMP) AS TIMESTAMPTZ)"


def _minutes(f: Filters) -> tuple[str, list[Any]] | None:
    """A table expression over the minute rollup for the window and filters, as a ``FROM``
    of rollup rows: whole minutes from ``events_minute``, the partial minutes at either end
    of the window aggregated from the events (so the sums are those of the events between
    ``start`` and ``end``). None when the window is under two minutes (read the events).
    ``f``'s user and conversation are not applied (the rollup has no attributes)."""
    start, end = f.start, f.end
    lo = None if start is None else -(-_epoch_us(start) // rollup.MINUTE_US)  # first whole minute
    hi = None if end is None else _epoch_us(end) // rollup.MINUTE_US  # first minute not whole
    if lo is not None and hi is not None and lo >= hi:
        return None
    parts: list[str] = []
    params: list[Any] = []
    main = _filter(f.tenant_only(), f, people=False)
    main.when(lo, "minute >= ?").when(hi, "minute < ?")
    # the hive date first: files of other dates are not opened
    main.when(None if start is None else _utc(start).date(), "date >= ?")
    main.when(None if end is None else _utc(end).date(), "date <= ?")
    parts.append(f"SELECT * FROM {rollup.DATASET} {main.sql()}")
    params += main.params
    edges = []
    if start is not None and lo is not None and _epoch_us(start) % rollup.MINUTE_US:
        edges.append((start, _at_minute(lo)))
    if end is not None and hi is not None and _epoch_us(end) % rollup.MINUTE_US:
        edges.append((_at_minute(hi), end))
    for a, b in edges:
        w = _filter(_window(f.tenant, a, b), f, people=False).add("date = ?", _utc(a).date())
        parts.append(rollup.select("events", w.sql()))
        params += w.params
    return "(" + " UNION ALL BY NAME ".join(parts) + ")", params


def _utc(t: datetime) -> datetime:
    """``t`` in UTC (a naive time is taken as UTC, as the catalog's DuckDB takes it)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _epoch_us(t: datetime) -> int:
    delta = _utc(t) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _at_minute(minute: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=minute * rollup.MINUTE_US)


def _rolled(f: Filters, unit: str | None) -> tuple[str, list[Any], str]:
    """(a ``FROM`` of rollup rows holding exactly the events of the window and filters, its
    parameters, the SQL of the ``unit`` bucket key over those rows; ``NULL`` for no unit).
    The minute rollup where it can (``_minutes``); else the same rows aggregated from the
    events now (a user or conversation filter, a window under two minutes, ``second``)."""
    minutes = None if f.people or unit == "second" else _minutes(f)
    if unit is None:
        key = "NULL"
    elif unit in _MICROS and unit != "second":
        key = f"minute // {_MICROS[unit] // rollup.MINUTE_US}"
    else:
        key = _bucket_sql(unit)[0] if unit != "second" else "_second"
    if minutes is not None:
        return minutes[0], minutes[1], key
    w = _filter(f.window(), f)
    extra = f"epoch_us(ts) // {_MICROS['second']} AS _second" if unit == "second" else ""
    return f"({rollup.select('events', w.sql(), extra=extra)})", w.params, key


def _sketch_quantiles(rows: str, names: Sequence[str], quantiles: dict[str, float]) -> str:
    """Per group of ``names`` in ``rows`` (a CTE with those columns and ``h``, latency
    sketches), each of ``quantiles`` (column name -> p) at the nearest rank (as
    ``quantile_disc``: the first bucket whose cumulative count reaches ``n * p``), read back
    as its bucket's value (within ``rollup.SKETCH_ERROR`` of the exact latency)."""
    g = ", ".join(names)
    picks = ", ".join(
        f"{rollup.sketch_value(f'min(k) FILTER (WHERE cum >= n * {p})')} AS {name}"
        for name, p in quantiles.items()
    )
    return f"""SELECT {g}, {picks} FROM (
          SELECT {g}, k, sum(c) OVER (PARTITION BY {g} ORDER BY k) AS cum,
                 sum(c) OVER (PARTITION BY {g}) AS n
          FROM (SELECT {g}, k, sum(c) AS c
                FROM (SELECT {g}, unnest(map_keys(h)) AS k, unnest(map_values(h)) AS c
                      FROM {rows} WHERE h IS NOT NULL)
                GROUP BY ALL))
        GROUP BY ALL"""


def _same(names: Sequence[str], a: str, b: str) -> str:
    return " AND ".join(f"{a}.{n} IS NOT DISTINCT FROM {b}.{n}" for n in names)


def cost_by_agent_day(
    cat: Catalog, tenant: str | None = None, start: datetime | None = None, end: datetime | None = None
) -> Rows:
    """Spend per tenant, agent and UTC day, with the unpriced usage events counted apart."""
    w = _window(tenant, start, end)
    return _rows(
        cat,
        f"""SELECT tenant, agent, date AS day, sum(cost_usd) AS cost_usd, count(*) AS events,
               count(*) FILTER (WHERE type = 'usage' AND NOT priced) AS unpriced_usage
            FROM events {w.sql()} GROUP BY ALL ORDER BY day, tenant, agent""",
        w.params,
    )


def top_traces(
    cat: Catalog,
    limit: int = 10,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    agent: str | None = None,
    agent_version: str | None = None,
    model: str | None = None,
    user: str | None = None,
    conversation: str | None = None,
) -> Rows:
    """The most expensive traces (inclusive cost: every event of every agent in the trace),
    from the trace summaries."""
    f = Filters(tenant, start, end, agent, agent_version, model, user, conversation)
    w = _people(_Where(), f)
    whole = _whole(f, _cost_floor(cat, f, w, limit))
    if whole is not None:  # one row per trace already
        return _rows(
            cat,
            f"""SELECT trace_id, tenant, cost_usd, events, agents, first_ts, last_ts
                FROM {whole[0]} {w.sql()} ORDER BY cost_usd DESC, trace_id LIMIT ?""",
            [*whole[1], *w.params, int(limit)],
        )
    source, params = _parts(f)
    return _rows(
        cat,
        f"""WITH top AS (SELECT trace_id, sum(cost_usd) AS cost_usd FROM {source} {w.sql()}
                    GROUP BY trace_id ORDER BY cost_usd DESC, trace_id LIMIT ?)
            SELECT trace_id, any_value(p.tenant) AS tenant, any_value(top.cost_usd) AS cost_usd,
                   sum(events)::BIGINT AS events, list(DISTINCT agent ORDER BY agent) AS agents,
                   min(first_ts) AS first_ts, max(last_ts) AS last_ts
            FROM top JOIN (SELECT * FROM {source} {w.sql()}) p USING (trace_id)
            GROUP BY trace_id ORDER BY cost_usd DESC, trace_id""",
        [*params, *w.params, int(limit), *params, *w.params],
    )


def cost_per_successful_task(
    cat: Catalog,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    agent: str | None = None,
) -> Rows:
    """Per agent version: tasks (traces), successful ones (no span in error), their whole cost
    (failed tasks included: that is what a success really costs) divided by the successes;
    ``agent``: that agent's versions only."""
    source, params = _parts(Filters(tenant, start, end, agent))
    return _rows(
        cat,
        f"""WITH task AS (
              SELECT tenant, agent, agent_version, trace_id, sum(cost_usd) AS cost_usd,
                     sum(errors) > 0 AS failed
              FROM {source} GROUP BY ALL)
            SELECT tenant, agent, agent_version, count(*) AS tasks,
                   count(*) FILTER (WHERE NOT failed) AS successful, sum(cost_usd) AS cost_usd,
                   CAST(sum(cost_usd) / nullif(count(*) FILTER (WHERE NOT failed), 0)
                       AS DECIMAL(38, 12)) AS cost_per_success_usd
            FROM task GROUP BY ALL ORDER BY tenant, agent, agent_version""",
        params,
    )


def token_efficiency(
    cat: Catalog, tenant: str | None = None, start: datetime | None = None, end: datetime | None = None
) -> Rows:
    """Per agent and model: output tokens per input token, and the cache hit ratio
    (cached reads / input tokens, since input includes cached reads)."""
    w = _window(tenant, start, end).add("type = 'usage'")
    return _rows(
        cat,
        f"""SELECT tenant, agent, provider, model, count(*) AS calls,
               sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
               sum(cache_read_tokens)::BIGINT AS cache_read_tokens,
               sum(output_tokens) / nullif(sum(input_tokens), 0) AS output_per_input,
               sum(cache_read_tokens) / nullif(sum(input_tokens), 0) AS cache_hit_ratio
            FROM events {w.sql()} GROUP BY ALL ORDER BY tenant, agent, provider, model""",
        w.params,
    )


def budget_utilisation(
    cat: Catalog,
    daily_limit_usd: Decimal | None = None,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Rows:
    """Per tenant, agent and day: spend, share of ``daily_limit_usd`` (when given), the
    commands issued to that agent or its whole tenant, and the spend after the first of them
    ("who was throttled, and what did it save" is then one comparison)."""
    w = _window(tenant, start, end, col="e.ts")
    w.parts = [p.replace("tenant =", "e.tenant =") for p in w.parts]
    return _rows(
        cat,
        f"""WITH spend AS (
              SELECT tenant, agent, date AS day, sum(cost_usd) AS cost_usd
              FROM events e {w.sql()} GROUP BY ALL),
            cmd AS (
              SELECT s.tenant, s.agent, s.day, count(c.command_id) AS commands,
                     list(DISTINCT c.action ORDER BY c.action)
                         FILTER (WHERE c.action IS NOT NULL) AS actions,
                     min(c.ts) AS first_command_ts
              FROM spend s LEFT JOIN commands c
                ON c.tenant = s.tenant AND (c.agent IS NULL OR c.agent = s.agent)
               AND c.date = s.day AND c.action <> 'resume'
              GROUP BY ALL)
            SELECT s.tenant, s.agent, s.day, s.cost_usd,
                   CAST(s.cost_usd AS DOUBLE) / ? AS utilisation,
                   c.commands, coalesce(c.actions, []) AS actions, c.first_command_ts,
                   (SELECT sum(e2.cost_usd) FROM events e2
                     WHERE e2.tenant = s.tenant AND e2.agent = s.agent AND e2.date = s.day
                       AND e2.ts >= c.first_command_ts) AS cost_after_first_command_usd
            FROM spend s JOIN cmd c USING (tenant, agent, day)
            ORDER BY s.day, s.tenant, s.agent""",
        [*w.params, float(daily_limit_usd) if daily_limit_usd else None],
    )


def unpriced_usage(
    cat: Catalog, tenant: str | None = None, start: datetime | None = None, end: datetime | None = None
) -> Rows:
    """Usage the price step could not price (unknown model): never counted as $0."""
    w = _window(tenant, start, end).add("type = 'usage'").add("NOT priced")
    return _rows(
        cat,
        f"""SELECT tenant, provider, model, count(*) AS calls, sum(input_tokens)::BIGINT AS input_tokens,
               sum(output_tokens)::BIGINT AS output_tokens, min(ts) AS first_ts, max(ts) AS last_ts,
               list(DISTINCT agent ORDER BY agent) AS agents
            FROM events {w.sql()} GROUP BY ALL ORDER BY calls DESC, tenant, provider, model""",
        w.params,
    )


def costs(
    cat: Catalog,
    group_by: Sequence[str] = ("agent",),
    start: datetime | None = None,
    end: datetime | None = None,
    tenant: str | None = None,
    bucket: str | None = None,
    agent: str | None = None,
    agent_version: str | None = None,
    model: str | None = None,
    user: str | None = None,
    conversation: str | None = None,
) -> Rows:
    """Spend grouped by any of tenant/agent/agent_version/workflow/model/provider, optionally
    per time ``bucket`` (second/minute/hour/day/week/month, as column ``bucket``)."""
    bad = [g for g in group_by if g not in GROUPABLE]
    if bad:
        raise ConfigError(f"cannot group by {bad}: choose from {', '.join(GROUPABLE)}")
    cols = list(dict.fromkeys(group_by))
    unit = _bucket(bucket)
    key, start_of = _bucket_sql(unit) if unit else ("", "")
    inner = [*cols, *([f"{key} AS _b"] if unit else [])]
    outer = [*cols, *([f"{start_of} AS bucket"] if unit else [])]
    order = ", ".join(["bucket", *cols] if unit else cols) or "cost_usd DESC"
    f = Filters(tenant, start, end, agent, agent_version, model, user, conversation)
    minutes = None if f.people or unit == "second" else _minutes(f)
    if minutes is not None:  # the minute rollup: the same sums, from far fewer rows
        source, params = minutes
        if unit in _MICROS:
            key = f"minute // {_MICROS[unit] // rollup.MINUTE_US}"
            inner = [*cols, f"{key} AS _b"]
        return _rows(
            cat,
            f"""SELECT {"".join(c + ", " for c in outer)}cost_usd, events, calls, input_tokens,
                   output_tokens, unpriced_calls
                FROM (SELECT {"".join(c + ", " for c in inner)}sum(cost_usd) AS cost_usd,
                        coalesce(sum(events), 0)::BIGINT AS events,
                        coalesce(sum(calls), 0)::BIGINT AS calls,
                        coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
                        coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
                        coalesce(sum(unpriced_calls), 0)::BIGINT AS unpriced_calls
                      FROM {source} {"GROUP BY ALL" if inner else ""})
                ORDER BY {order}""",
            params,
        )
    w = _filter(f.window(), f)
    return _rows(
        cat,
        f"""SELECT {"".join(c + ", " for c in outer)}cost_usd, events, calls, input_tokens,
               output_tokens, unpriced_calls
            FROM (SELECT {"".join(c + ", " for c in inner)}sum(cost_usd) AS cost_usd,
                    count(*) AS events, count(*) FILTER (WHERE type = 'usage') AS calls,
                    coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
                    coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
                    count(*) FILTER (WHERE type = 'usage' AND NOT priced) AS unpriced_calls
                  FROM events {w.sql()} {"GROUP BY ALL" if inner else ""})
            ORDER BY {order}""",
        w.params,
    )


def _one_trace(trace_id: str, tenant: str | None) -> _Where:
    """The events of one trace, reading only the dates its summary names (each date's file
    is opened only when the trace has events there)."""
    where = _Where().add("trace_id = ?", trace_id).when(tenant, "tenant = ?")
    days = _Where().add("trace_id = ?", trace_id).when(tenant, "tenant = ?")
    return where.add(f"date IN (SELECT DISTINCT date FROM {tracesum.DATASET} {days.sql()})", *days.params)


def trace_tree(cat: Catalog, trace_id: str, tenant: str | None = None) -> Rows:
    """Every span of a trace with its direct cost (events of that span) and inclusive cost
    (its own plus all descendants'), parents before children."""
    w = _one_trace(trace_id, tenant)
    rows = _rows(
        cat,
        f"""SELECT span_id, any_value(parent_span_id) AS parent_span_id,
               any_value(name) FILTER (WHERE type = 'span') AS name,
               any_value(kind) FILTER (WHERE type = 'span') AS kind,
               any_value(status) FILTER (WHERE type = 'span') AS status,
               any_value(agent) AS agent, any_value(agent_version) AS agent_version,
               min(coalesce(start, ts)) AS start, max(coalesce("end", ts)) AS "end",
               sum(cost_usd) AS direct_cost_usd, count(*) AS events
            FROM events {w.sql()} GROUP BY span_id ORDER BY start, span_id""",
        w.params,
    )
    return _tree(rows)


_tree = tracesum.tree


def agents(
    cat: Catalog,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    agent: str | None = None,
    agent_version: str | None = None,
    model: str | None = None,
    user: str | None = None,
    conversation: str | None = None,
) -> Rows:
    """Every agent seen: versions, first/last event, events, spend."""
    f = Filters(tenant, start, end, agent, agent_version, model, user, conversation)
    minutes = None if f.people else _minutes(f)
    if minutes is not None:
        source, params = minutes
        return _rows(
            cat,
            f"""SELECT tenant, agent,
                   list(DISTINCT agent_version ORDER BY agent_version)
                       FILTER (WHERE agent_version IS NOT NULL) AS versions,
                   min(first_ts) AS first_ts, max(last_ts) AS last_ts,
                   coalesce(sum(events), 0)::BIGINT AS events, sum(cost_usd) AS cost_usd
                FROM {source} GROUP BY ALL ORDER BY tenant, agent""",
            params,
        )
    w = _filter(f.window(), f)
    return _rows(
        cat,
        f"""SELECT tenant, agent,
               list(DISTINCT agent_version ORDER BY agent_version)
                   FILTER (WHERE agent_version IS NOT NULL) AS versions,
               min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS events,
               sum(cost_usd) AS cost_usd
            FROM events {w.sql()} GROUP BY ALL ORDER BY tenant, agent""",
        w.params,
    )


def quality_series(
    cat: Catalog,
    agent: str,
    metric: str,
    tenant: str | None = None,
    bucket: str = "hour",
    start: datetime | None = None,
    end: datetime | None = None,
    user: str | None = None,
    conversation: str | None = None,
) -> Rows:
    """Mean score of one metric for one agent per time bucket and agent version (of the
    traces of ``user`` / ``conversation`` when given), from the minute rollup's score sums,
    counts and minimum (the mean is their quotient: equal to ``avg`` up to float rounding)."""
    unit = _bucket(bucket) or "hour"
    _, start_of = _bucket_sql(unit)
    f = Filters(tenant, start, end, agent, user=user, conversation=conversation)
    source, params, key = _rolled(f, unit)
    return _rows(
        cat,
        f"""SELECT {start_of} AS bucket, agent_version, score, min_score, n
            FROM (SELECT {key} AS _b, agent_version, sum(score_sum) / sum(scores) AS score,
                    min(score_min) AS min_score, sum(scores)::BIGINT AS n
                  FROM {source} WHERE metric = ? AND agent = ? GROUP BY ALL HAVING sum(scores) > 0)
            ORDER BY bucket, agent_version""",
        [*params, metric, agent],
    )


def alerts(
    cat: Catalog,
    tenant: str | None = None,
    state: str | None = None,
    rule: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
) -> Rows:
    """Alert transitions, newest first."""
    w = _window(tenant, start, end).when(state, "state = ?").when(rule, "rule = ?")
    return _rows(
        cat,
        f"SELECT * EXCLUDE (source_partition, source_offset) FROM alerts {w.sql()} "
        "ORDER BY ts DESC, alert_id LIMIT ?",
        [*w.params, int(limit)],
    )


def commands(
    cat: Catalog,
    tenant: str | None = None,
    action: str | None = None,
    agent: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    trace_id: str | None = None,
) -> Rows:
    """Control commands issued, newest first. With ``tenant``, only that tenant's commands
    (provider-wide commands carry no tenant and are left out); with ``trace_id``, those whose
    scope is that trace."""
    w = _window(tenant, start, end).when(action, "action = ?").when(agent, "agent = ?")
    w.when(trace_id, "trace_id = ?")
    return _rows(
        cat,
        f"SELECT * EXCLUDE (source_partition, source_offset) FROM commands {w.sql()} "
        "ORDER BY ts DESC, command_id LIMIT ?",
        [*w.params, int(limit)],
    )


def command_latency(cat: Catalog, tenant: str | None = None, limit: int = 100) -> Rows:
    """Each command with the event that caused it and the time between them: how fast the
    pipeline acted (``latency_ms`` is null when the cause is not in the warehouse)."""
    w = _Where().when(tenant, "c.tenant = ?")
    return _rows(
        cat,
        f"""SELECT c.ts, c.action, c.scope_key, c.reason, c.policy_id, c.kill_reason, c.cause_event_id,
                   date_diff('millisecond', e.ts, c.ts) AS latency_ms
            FROM commands c LEFT JOIN events e
              ON e.event_id = c.cause_event_id AND (c.tenant IS NULL OR e.tenant = c.tenant)
            {w.sql()} ORDER BY c.ts, c.command_id LIMIT ?""",
        [*w.params, int(limit)],
    )


def event_count(cat: Catalog, tenant: str | None = None) -> int:
    """Distinct events in the warehouse (after dedupe)."""
    w = _window(tenant, None, None)
    return int(_rows(cat, f"SELECT count(*) AS n FROM events {w.sql()}", w.params)[0]["n"])


def provider_health(
    cat: Catalog,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    agent: str | None = None,
    agent_version: str | None = None,
    model: str | None = None,
    user: str | None = None,
    conversation: str | None = None,
) -> Rows:
    """Per provider and model: calls, spend, LLM spans, errors, error rate, latency p50/p95
    (of every span with a provider, nearest rank, from the minute rollup's latency sketches:
    within ``rollup.SKETCH_ERROR`` of the exact latency at that rank)."""
    f = Filters(tenant, start, end, agent, agent_version, model, user, conversation)
    source, params, _ = _rolled(f, None)
    names = ("provider", "model")
    quantiles = _sketch_quantiles("r", names, {"p50_ms": 0.5, "p95_ms": 0.95})
    return _rows(
        cat,
        f"""WITH r AS (SELECT provider, model, calls, cost_usd, spans, span_errors, span_ms AS h
                       FROM {source} WHERE provider IS NOT NULL),
                 t AS (SELECT provider, model, sum(calls)::BIGINT AS calls, sum(cost_usd) AS cost_usd,
                              sum(spans)::BIGINT AS spans, sum(span_errors)::BIGINT AS errors
                       FROM r GROUP BY ALL),
                 q AS ({quantiles})
            SELECT t.provider, t.model, calls, cost_usd, spans, errors,
                   errors / nullif(spans, 0) AS error_rate, p50_ms, p95_ms
            FROM t LEFT JOIN q ON {_same(names, "t", "q")} ORDER BY t.provider, t.model""",
        params,
    )


_LLM_CALL = rollup.LLM_CALL
_LATENCY_MS = rollup.LATENCY_MS


def slo_attainment(
    cat: Catalog,
    target: float,
    threshold_ms: float | None = None,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    agent: str | None = None,
) -> Rows:
    """Per tenant, agent and UTC day, an objective over LLM calls: with ``threshold_ms`` a
    latency objective (of the successful calls, the share within it), without one an
    availability objective (the share not in error). ``budget_left`` is the share of that day's
    error budget (``1 - target`` of its calls) not spent; negative when overspent."""
    if not 0 < target < 1:
        raise ConfigError(f"target must be between 0 and 1 (exclusive), not {target!r}")
    w = _filter(_window(tenant, start, end), Filters(agent=agent)).add(_LLM_CALL)
    if threshold_ms is None:
        counted, good, params = "TRUE", "status IS DISTINCT FROM 'error'", [1 - target, *w.params]
    else:
        counted, good = "status IS DISTINCT FROM 'error'", f"{_LATENCY_MS} <= ?"
        params = [1 - target, threshold_ms, *w.params]
    return _rows(
        cat,
        f"""SELECT tenant, agent, day, calls, good, good / calls AS attainment,
                   1 - (calls - good) / (calls * ?) AS budget_left
            FROM (SELECT tenant, agent, date AS day,
                         count(*) FILTER (WHERE {counted}) AS calls,
                         count(*) FILTER (WHERE {counted} AND {good}) AS good
                  FROM events {w.sql()} GROUP BY ALL)
            WHERE calls > 0 ORDER BY day, tenant, agent""",
        params,
    )


def latency_percentiles(
    cat: Catalog,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: str | None = "day",
) -> Rows:
    """Per provider, model (and ``bucket``, None for the whole range): LLM calls, errors and
    the latency of the successful ones at p50, p90, p95 and p99 (nearest rank, from the
    minute rollup's latency sketches: within ``rollup.SKETCH_ERROR`` of the exact latency at
    that rank, and never above the max), and max (exact)."""
    unit = _bucket(bucket)
    label = _bucket_sql(unit)[1] if unit else "NULL"
    source, params, key = _rolled(Filters(tenant, start, end), unit)
    names = ("provider", "model", "_b")
    ps = {f"p{int(p * 100)}_ms": p for p in (0.5, 0.9, 0.95, 0.99)}
    quantiles = _sketch_quantiles("r", names, ps)
    capped = ", ".join(f"least({name}, max_ms) AS {name}" for name in ps)
    return _rows(
        cat,
        f"""WITH r AS (SELECT provider, model, {key} AS _b, llm_calls, llm_errors, llm_ok_ms AS h,
                              llm_ok_max_ms
                       FROM {source} WHERE provider IS NOT NULL),
                 t AS (SELECT provider, model, _b, sum(llm_calls)::BIGINT AS calls,
                              sum(llm_errors)::BIGINT AS errors, max(llm_ok_max_ms) AS max_ms
                       FROM r GROUP BY ALL HAVING sum(llm_calls) > 0),
                 q AS ({quantiles})
            SELECT provider, model, {label} AS bucket, calls, errors, {capped}, max_ms
            FROM (SELECT t.*, q.* EXCLUDE (provider, model, _b) FROM t LEFT JOIN q ON {_same(names, "t", "q")})
            ORDER BY provider, model, bucket""",
        params,
    )


TRACE_SORTS = {
    "cost": "cost_usd DESC",
    "duration": "duration_ms DESC",
    "errors": "errors DESC, cost_usd DESC",
    "agent": "root_agent, cost_usd DESC",
    "start": "start DESC",
}
TRACE_STATUSES = ("ok", "error", "killed")


def traces(
    cat: Catalog,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    agent: str | None = None,
    agent_version: str | None = None,
    model: str | None = None,
    search: str | None = None,
    status: str | None = None,
    min_cost_usd: Decimal | None = None,
    sort: str = "cost",
    limit: int = 100,
    user: str | None = None,
    conversation: str | None = None,
) -> Rows:
    """Traces to search and sort: cost (inclusive, every agent's), duration, calls, tokens,
    errors, the agents in it, and ``status``: ``killed`` when a kill command named the trace,
    else ``error`` when a span failed, else ``ok``. ``search`` matches part of the trace id,
    an agent, a user, a conversation, the status or the kill reason; ``sort`` is one of
    cost/duration/errors/agent/start. ``users`` and ``conversations``: those its events name."""
    if sort not in TRACE_SORTS:
        raise ConfigError(f"sort must be one of {', '.join(TRACE_SORTS)}, not {sort!r}")
    if status is not None and status not in TRACE_STATUSES:
        raise ConfigError(f"status must be one of {', '.join(TRACE_STATUSES)}, not {status!r}")
    f = Filters(tenant, start, end, agent, agent_version, model, user, conversation)
    source, params = _parts(f)
    w = _people(_Where(), f)
    p, pp = f"(SELECT * FROM {source} {w.sql()})", [*params, *w.params]
    k = _Where().add("trace_id IS NOT NULL").when(tenant, "tenant = ?")
    where = _Where().when(status, "status = ?").when(min_cost_usd, "cost_usd >= ?")
    people = _Where().when(tenant, "tenant = ?")
    if search:
        term = search.strip().lower()
        people.add(
            "(list_contains(users, ?) OR list_contains(conversations, ?))", search.strip(), search.strip()
        )
        where.add(
            f"(contains(lower(trace_id), ?) OR trace_id IN (SELECT trace_id FROM {p} WHERE contains(lower(agent), ?))"
            f" OR status = ? OR coalesce(kill_reason, '') = ?"
            f" OR trace_id IN (SELECT trace_id FROM {tracesum.DATASET} {people.sql()}))",
            term,
            *pp,
            term,
            term,
            term,
            *people.params,
        )
    rank_root, describe_root = (", " + _ROOT_AGENT, "") if sort == "agent" else ("", ", " + _ROOT_AGENT)
    rank, rank_params = f"SELECT trace_id, {_RANK}{rank_root} FROM {p} GROUP BY trace_id", pp
    describe = f"""SELECT trace_id, {_DESCRIBE}{describe_root}
              FROM {p} WHERE trace_id IN (SELECT trace_id FROM page) GROUP BY trace_id"""
    describe_params = pp
    # users and conversations of the whole trace (every part), for the listed traces
    named = f"""SELECT trace_id, {tracesum.PEOPLE}
              FROM {tracesum.DATASET} WHERE trace_id IN (SELECT trace_id FROM page)
              {"AND tenant = ?" if tenant is not None else ""} GROUP BY trace_id"""
    named_params = [tenant] if tenant is not None else []
    # unfiltered by status, cost or search, the page is the costliest traces
    ranked_by_cost = sort == "cost" and status is None and min_cost_usd is None and not search
    floor = _cost_floor(cat, f, w, limit) if ranked_by_cost else None
    whole = _whole(f, floor)
    pre, pre_params = "", list[Any]()
    if whole is not None and floor is not None:  # a few hundred rows: read (and planned) once
        pre, pre_params = f"wh AS MATERIALIZED (SELECT * FROM {whole[0]}),", whole[1]
        whole = ("wh", [])
    if whole is not None:  # one stored row per trace: no group-by of the parts
        root = ", root_agent" if sort == "agent" else ""
        rank = f'SELECT trace_id, tenant, cost_usd, errors, start, "end"{root} FROM {whole[0]} {w.sql()}'
        rank_params = [*whole[1], *w.params]
        columns = "events, calls, tokens, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"
        columns += ", reasoning_tokens, agents, models, root_version, root_workflow, first_ts, last_ts"
        columns += "" if sort == "agent" else ", root_agent"
        columns += "" if agent is None else ", trace_users, trace_conversations"
        describe = f"""SELECT trace_id, {columns}, users, conversations FROM {whole[0]}
              WHERE trace_id IN (SELECT trace_id FROM page)"""
        describe_params = whole[1]
        if agent is None:
            named, named_params = "SELECT trace_id, users, conversations FROM d", []
        else:  # an agent's row names its own events' people: the whole trace's stored beside,
            # the merged traces' (no such column) from their parts
            named = f"""SELECT trace_id, trace_users AS users, trace_conversations AS conversations
                  FROM d WHERE trace_users IS NOT NULL
                  UNION ALL BY NAME
                  SELECT trace_id, {tracesum.PEOPLE} FROM {tracesum.DATASET}
                  SEMI JOIN (SELECT trace_id FROM d WHERE trace_users IS NULL) n USING (trace_id)
                  {"WHERE tenant = ?" if tenant is not None else ""} GROUP BY trace_id"""
    exclude = "trace_id" if whole is None else "trace_id, users, conversations"
    exclude += "" if whole is None or agent is None else ", trace_users, trace_conversations"
    return _rows(
        cat,
        f"""WITH {pre} t AS ({rank}),
            k AS (
              SELECT trace_id, list(DISTINCT action ORDER BY action) AS commands,
                     any_value(coalesce(kill_reason, 'other')) FILTER (WHERE action = 'kill') AS kill_reason
              FROM commands {k.sql()} GROUP BY trace_id),
            r AS (
              SELECT t.*, epoch_ms(t."end") - epoch_ms(t.start) AS duration_ms,
                     CASE WHEN k.kill_reason IS NOT NULL THEN 'killed'
                          WHEN t.errors > 0 THEN 'error' ELSE 'ok' END AS status,
                     coalesce(k.commands, []) AS commands, k.kill_reason
              FROM t LEFT JOIN k USING (trace_id)),
            page AS (SELECT * FROM r {where.sql()} ORDER BY {TRACE_SORTS[sort]}, trace_id LIMIT ?),
            d AS ({describe}),
            u AS ({named})
            SELECT page.*, d.* EXCLUDE ({exclude}),
                   coalesce(u.users, []) AS users, coalesce(u.conversations, []) AS conversations
            FROM page LEFT JOIN d USING (trace_id) LEFT JOIN u USING (trace_id)
            ORDER BY {TRACE_SORTS[sort]}, trace_id""",
        [*pre_params, *rank_params, *k.params, *where.params, int(limit), *describe_params, *named_params],
    )


def trace_spans(cat: Catalog, trace_id: str, tenant: str | None = None) -> Rows:
    """``trace_tree`` with what a trace page shows per span: provider and model, calls,
    tokens (cached reads, cache writes and reasoning apart), latency, error type, tool."""
    w = _one_trace(trace_id, tenant)
    rows = _rows(
        cat,
        f"""SELECT span_id, any_value(parent_span_id) AS parent_span_id,
               any_value(name) FILTER (WHERE type = 'span') AS name,
               any_value(kind) FILTER (WHERE type = 'span') AS kind,
               any_value(status) FILTER (WHERE type IN ('span', 'tool_call')) AS status,
               any_value(error_type) AS error_type, any_value(tool) AS tool,
               any_value(agent) AS agent, any_value(agent_version) AS agent_version,
               any_value(provider) AS provider, any_value(model) AS model,
               min(coalesce(start, ts)) AS start, max(coalesce("end", ts)) AS "end",
               epoch_ms(max(coalesce("end", ts))) - epoch_ms(min(coalesce(start, ts))) AS latency_ms,
               count(*) FILTER (WHERE type = 'usage') AS calls,
               coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
               coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
               coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
               coalesce(sum(cache_write_tokens), 0)::BIGINT AS cache_write_tokens,
               coalesce(sum(reasoning_tokens), 0)::BIGINT AS reasoning_tokens,
               sum(cost_usd) AS direct_cost_usd, count(*) AS events
            FROM events {w.sql()} GROUP BY span_id ORDER BY start, span_id""",
        w.params,
    )
    return _tree(rows)


def decisions(
    cat: Catalog,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    agent: str | None = None,
    limit: int = 200,
    user: str | None = None,
    conversation: str | None = None,
) -> Rows:
    """Commands and alerts in one list, newest first: ``kind`` (command/alert), ``what`` (the
    action or the alert's state), scope, reason, the trace of the cause and ``latency_ms``
    from the cause event (an alert that issued a command shares that command's cause).
    ``user`` / ``conversation``: the decisions about them, i.e. whose trace (the command's
    scope or its cause's) belongs to them, or whose command's scope is that user or
    conversation (an alert follows the command it issued)."""
    w = _window(tenant, start, end, col="c.ts").when(agent, "c.agent = ?")
    w.parts = [p.replace("tenant =", "c.tenant =", 1) if p.startswith("tenant") else p for p in w.parts]
    a = _window(tenant, start, end, col="a.ts")
    a.parts = [p.replace("tenant =", "a.tenant =", 1) if p.startswith("tenant") else p for p in a.parts]
    if agent is not None:
        a.add("(contains(a.entity, '/' || ? || '@') OR a.entity LIKE '%/' || ?)", agent, agent)
    cause = "e.event_id = c.cause_event_id AND (c.tenant IS NULL OR e.tenant = c.tenant)"
    who = _Where()
    for value, kind, keys in ((user, "user", USER_KEYS), (conversation, "conversation", CONVERSATION_KEYS)):
        if value is not None:  # its traces (as the other pages' filters), or a scope naming it
            traces = _traces_naming(value, keys, tenant)
            who.add(
                f"(trace_id IN (SELECT trace_id FROM events {traces.sql()}) OR "
                "(split_part(cmd_scope_key, '/', 1) = ? AND split_part(cmd_scope_key, '/', 3) = ?))",
                *traces.params,
                kind,
                value,
            )
    return _rows(
        cat,
        f"""SELECT * EXCLUDE (cmd_scope_key) FROM (
              SELECT c.ts, 'command' AS kind, c.action AS what, c.scope_kind, c.scope_key,
                     c.reason, c.policy_id, c.issued_by, c.command_id AS id,
                     coalesce(c.trace_id, e.trace_id) AS trace_id,
                     date_diff('millisecond', e.ts, c.ts) AS latency_ms, c.scope_key AS cmd_scope_key
              FROM commands c LEFT JOIN events e ON {cause} {w.sql()}
              UNION ALL BY NAME
              SELECT a.ts, 'alert' AS kind, a.state AS what, a.rule AS scope_kind,
                     a.entity AS scope_key, a.summary AS reason, a.policy_id, NULL AS issued_by,
                     a.alert_id AS id, coalesce(c.trace_id, e.trace_id) AS trace_id,
                     date_diff('millisecond', e.ts, a.ts) AS latency_ms, c.scope_key AS cmd_scope_key
              FROM alerts a LEFT JOIN commands c ON c.command_id = a.command_id
                   LEFT JOIN events e ON {cause} {a.sql()})
            {who.sql()}
            ORDER BY ts DESC, id LIMIT ?""",
        [*w.params, *a.params, *who.params, int(limit)],
    )


def agent_calls(
    cat: Catalog,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    agent: str | None = None,
    max_traces: int | None = None,
    user: str | None = None,
    conversation: str | None = None,
) -> Rows:
    """Agents calling agents, from the span tree: one row per (caller, callee) with ``calls``
    (spans of the callee whose parent span is the caller's), ``traces``, and ``cost_usd``, the
    inclusive cost of those calls (all that ran under them). Over the traces with an event in
    the window (``max_traces``: only that many, the newest); with ``agent``, the edges that
    touch it. The whole trees are read (a filter on events would cut them), so no version or
    model filter here; ``user`` and ``conversation`` keep whole traces.

    Edges come from the trace summaries (``trace_edges``); a trace with several agents whose
    tree is not whole on one summarised date (a date not summarised yet, spans on several
    dates) is rebuilt from its events."""
    t = _Where().when(tenant, "tenant = ?")
    if start is None and end is None and user is None and conversation is None and max_traces is None:
        # every trace: each edge row and each trace to rebuild is one (no join with the list)
        chosen, params = "", list[Any]()
    else:
        f = Filters(tenant, start, end, user=user, conversation=conversation)
        source, params = _parts(f)
        w = _people(_Where(), f)
        chosen = f"SELECT tenant, trace_id FROM {source} {w.sql()} GROUP BY tenant, trace_id"
        params = [*params, *w.params]
        if max_traces is not None:
            chosen += " ORDER BY max(last_ts) DESC, trace_id LIMIT ?"
            params.append(int(max_traces))
    # Traces to rebuild: some part not summarised, or a trace with edges rows that is on several
    # dates (or under two tenants): its stored rows are ``shared``, a few row groups of
    # ``trace_totals``. Not rebuilt: a trace on one summarised date (its stored edges are its
    # whole tree, even with a parent never reported), and a shared trace whose every row
    # names one same agent (no span has a parent of another agent: it has no edge).
    also = t.sql().replace("WHERE", "AND")
    rebuild = f"""SELECT tenant, trace_id FROM {tracesum.DATASET} WHERE NOT summarised {also}
        UNION SELECT tenant, trace_id FROM {tracesum.TOTALS}
              SEMI JOIN (SELECT DISTINCT tenant, trace_id FROM {tracesum.EDGES} {t.sql()}) e
              USING (tenant, trace_id) WHERE shared {also}
              GROUP BY tenant, trace_id
              HAVING NOT (bool_and(len(agents) = 1 AND agents[1] IS NOT NULL)
                          AND count(DISTINCT agents[1]) = 1)"""
    rebuild_params = [*t.params, *t.params, *t.params]
    semi = f"SEMI JOIN ({chosen}) c USING (tenant, trace_id)" if chosen else ""
    found: dict[tuple[Any, Any], dict[str, Any]] = {}

    def add(caller: Any, callee: Any, calls: int, cost: Decimal, traces: int) -> None:
        e = found.setdefault(
            (caller, callee),
            {"caller": caller, "callee": callee, "calls": 0, "cost_usd": Decimal(0), "traces": 0},
        )
        e["calls"] += calls
        e["cost_usd"] += cost
        e["traces"] += traces

    stored = _rows(
        cat,
        f"""WITH rebuild AS ({rebuild})
            SELECT caller, callee, sum(calls)::BIGINT AS calls, sum(cost_usd) AS cost_usd,
                   count(DISTINCT (tenant, trace_id)) AS traces
            FROM {tracesum.EDGES} {semi}
            ANTI JOIN rebuild USING (tenant, trace_id)
            WHERE (caller IS NOT NULL OR callee IS NOT NULL OR calls > 0) {t.sql().replace("WHERE", "AND")}
            GROUP BY caller, callee""",
        [*rebuild_params, *params, *t.params],
    )
    for r in stored:
        add(r["caller"], r["callee"], int(r["calls"]), Decimal(r["cost_usd"] or 0), int(r["traces"]))
    pairs = {
        (r["tenant"], r["trace_id"])
        for r in _rows(
            cat,
            f"SELECT DISTINCT tenant, trace_id FROM ({rebuild}) r {semi}",
            [*rebuild_params, *params],
        )
    }
    ids = sorted({str(trace_id) for _, trace_id in pairs})
    if ids:  # rebuilt from their events, on the dates their parts name only
        e = _Where().when(tenant, "tenant = ?").add("trace_id IN (SELECT unnest(?::VARCHAR[]))", ids)
        # their dates: those of their shared rows and edges, and every date not summarised
        listed = "trace_id IN (SELECT unnest(?::VARCHAR[]))"
        e.add(
            f"""date IN (SELECT date FROM {tracesum.TOTALS} WHERE shared AND {listed}
                UNION SELECT date FROM {tracesum.EDGES} WHERE {listed}
                UNION SELECT date FROM {tracesum.DATASET} WHERE NOT summarised)""",
            ids,
            ids,
        )
        for r in tracesum.edge_rows(_rows(cat, tracesum.spans_select("events", e.sql()), e.params)):
            if (r["tenant"], r["trace_id"]) in pairs and (r["caller"] is not None or r["callee"] is not None):
                add(r["caller"], r["callee"], r["calls"], r["cost_usd"], 1)
    out = [e for e in found.values() if agent is None or agent in (e["caller"], e["callee"])]
    out.sort(key=lambda e: (-e["cost_usd"], str(e["caller"]), str(e["callee"])))
    return out


def version_tasks(
    cat: Catalog,
    tenant: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    agent: str | None = None,
) -> Rows:
    """Tasks (traces) per agent and version, with their spend and when they ran: after a rollout,
    how many tasks saw each version (docs/rollout.md)."""
    source, params = _parts(Filters(tenant, start, end, agent))
    return _rows(
        cat,
        f"""SELECT tenant, agent, agent_version, count(DISTINCT trace_id) AS tasks, sum(cost_usd) AS cost_usd,
                   min(first_ts) AS first_ts, max(last_ts) AS last_ts
            FROM {source} GROUP BY ALL ORDER BY tenant, agent, agent_version""",
        params,
    )


@dataclass(frozen=True)
class NamedQuery:
    """A named query as ``agentledger warehouse query`` offers it: the function, one line of
    what it answers, and its parameters besides the catalog and ``tenant`` (read from the
    function's signature, so they cannot drift from it)."""

    run: Callable[..., Rows]
    what: str

    @property
    def name(self) -> str:
        return self.run.__name__

    @property
    def params(self) -> tuple[str, ...]:
        sig = inspect.signature(self.run).parameters
        return tuple(p for p in list(sig)[1:] if p != "tenant")

    @property
    def required(self) -> tuple[str, ...]:
        sig = inspect.signature(self.run).parameters
        return tuple(p for p in self.params if sig[p].default is inspect.Parameter.empty)


NAMED: dict[str, NamedQuery] = {
    q.name: q
    for q in (
        NamedQuery(cost_by_agent_day, "spend per tenant, agent and UTC day"),
        NamedQuery(top_traces, "the most expensive traces, inclusive cost"),
        NamedQuery(cost_per_successful_task, "per agent version: cost of all tasks / successes"),
        NamedQuery(token_efficiency, "output per input token, cache hit ratio, per model"),
        NamedQuery(budget_utilisation, "spend per agent-day, share of --daily-limit, commands issued"),
        NamedQuery(unpriced_usage, "usage the price step could not price"),
        NamedQuery(costs, "spend grouped by --group-by, per --bucket"),
        NamedQuery(trace_tree, "one trace's spans: direct and inclusive cost"),
        NamedQuery(agents, "every agent seen: versions, first/last event, spend"),
        NamedQuery(quality_series, "mean score per bucket and version"),
        NamedQuery(alerts, "alert transitions, newest first"),
        NamedQuery(commands, "control commands, newest first"),
        NamedQuery(command_latency, "each command, its cause event and the time between them"),
        NamedQuery(provider_health, "calls, errors, latency p50/p95 per provider and model"),
        NamedQuery(traces, "traces to search and sort: cost, duration, errors, agents, status"),
        NamedQuery(trace_spans, "one trace's span table: tokens, direct and inclusive cost, latency"),
        NamedQuery(decisions, "commands and alerts, latency from their cause"),
        NamedQuery(agent_calls, "agents calling agents: calls, inclusive cost"),
        NamedQuery(slo_attainment, "objective attainment and error budget left per agent and day"),
        NamedQuery(latency_percentiles, "LLM latency p50/p90/p95/p99 per provider, model and bucket"),
        NamedQuery(version_tasks, "tasks per agent version (how many saw each), spend, first/last"),
    )
}
"""Every named query that ``agentledger warehouse query NAME`` runs, by name. Code calls the
functions themselves (a renamed query then fails type checking); only the command line, whose
user types a name, looks one up here."""
