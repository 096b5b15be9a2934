"""Per-trace summaries written at compaction: trace parts and agent edges.

``compact`` writes, beside each compacted events file, two files named like it:

- ``trace_parts/date=D/<name>.parquet``: one row per tenant, trace, agent, agent version and
  model of that date, with sums, counts, minimum and maximum only (cost, events, calls,
  errors, every token kind, first and last ``ts``, span start and end, whether the root span
  is there) and the users and conversations the events name. A trace's figures are its
  parts re-aggregated: exact whatever dates, agents or models it spans, and a filter on
  agent, version or model keeps exactly the parts of those events.
- ``trace_edges/date=D/<name>.parquet``: per trace of that date, the agents calling agents in
  its span tree (caller, callee, calls, inclusive cost), and ``orphaned`` when a span names a
  parent that is not in the date (the tree continues on another date: the chain then
  rebuilds that trace from its events).

``Catalog`` reads a date's files only while its events are exactly the compacted file they
are named after (as for the minute rollup); other dates are summarised from the events at
query time with the same SQL (docs/adr/0020-trace-summaries.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

DATASET = "trace_parts"
EDGES = "trace_edges"
TOTALS = "trace_totals"
AGENT_TOTALS = "trace_agent_totals"
TOTALS_ROW_GROUP = 8192
"""Rows per row group of a ``trace_totals`` file (written most costly first)."""
KEYS = ("tenant", "trace_id", "agent", "agent_version", "model")
USER_KEYS = ("user.id", "enduser.id")
"""Event attributes naming the end user (OpenTelemetry's ``user.id``, its older ``enduser.id``)."""
CONVERSATION_KEYS = ("gen_ai.conversation.id", "session.id")
"""Event attributes naming the conversation (OpenTelemetry GenAI's, or a session id)."""


def attribute(keys: Sequence[str], prefix: str = "") -> str:
    """The first of ``keys`` present in an event's attributes (a JSON string column)."""
    parts = ", ".join(f"json_extract_string({prefix}attributes, '$.\"{k}\"')" for k in keys)
    return f"coalesce({parts})"


_USER = attribute(USER_KEYS)
_CONVERSATION = attribute(CONVERSATION_KEYS)

AGGREGATES = f"""sum(cost_usd) AS cost_usd, count(*) AS events,
    count(*) FILTER (WHERE type = 'usage') AS calls,
    count(*) FILTER (WHERE type = 'usage' AND NOT priced) AS unpriced_calls,
    count(*) FILTER (WHERE type = 'span' AND status = 'error') AS errors,
    coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
    coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
    coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
    coalesce(sum(cache_write_tokens), 0)::BIGINT AS cache_write_tokens,
    coalesce(sum(reasoning_tokens), 0)::BIGINT AS reasoning_tokens,
    bool_or(parent_span_id IS NULL) AS has_root,
    min(workflow) FILTER (WHERE parent_span_id IS NULL) AS root_workflow,
    min(ts) AS first_ts, max(ts) AS last_ts,
    min(coalesce(start, ts)) AS start, max(coalesce("end", ts)) AS "end",
    list(DISTINCT {_USER}) FILTER (WHERE attributes IS NOT NULL AND {_USER} IS NOT NULL) AS users,
    list(DISTINCT {_CONVERSATION})
        FILTER (WHERE attributes IS NOT NULL AND {_CONVERSATION} IS NOT NULL) AS conversations"""
"""Per trace part: what the named queries re-aggregate (sums, counts, min, max, set unions)."""


_SUMS = """sum(cost_usd) AS cost_usd, sum(errors)::BIGINT AS errors, min(start) AS start,
    max("end") AS "end" """
RANK = f"any_value(tenant) AS tenant, {_SUMS}"
"""What the traces list filters and sorts on, per trace (over its parts)."""
ROOT_AGENT = "coalesce(min(agent) FILTER (WHERE has_root), min(agent)) AS root_agent"
_FIGURES = """sum(events)::BIGINT AS events, sum(calls)::BIGINT AS calls,
    (sum(input_tokens) + sum(output_tokens))::BIGINT AS tokens,
    sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
    sum(cache_read_tokens)::BIGINT AS cache_read_tokens,
    sum(cache_write_tokens)::BIGINT AS cache_write_tokens,
    sum(reasoning_tokens)::BIGINT AS reasoning_tokens,
    list(DISTINCT agent ORDER BY agent) AS agents,
    coalesce(list(DISTINCT model ORDER BY model) FILTER (WHERE model IS NOT NULL), []) AS models"""
"""A trace's counts, tokens, agents and models, summed over its parts."""
DESCRIBE = f"""{_FIGURES},
    coalesce(min(agent_version) FILTER (WHERE has_root), min(agent_version)) AS root_version,
    min(root_workflow) AS root_workflow, min(first_ts) AS first_ts, max(last_ts) AS last_ts"""
"""The rest of a listed trace's figures (over its parts)."""
PEOPLE = """list_sort(list_distinct(flatten(list(users)))) AS users,
    list_sort(list_distinct(flatten(list(conversations)))) AS conversations"""
"""The users and conversations a trace's parts name."""
TOTAL = f"""{_SUMS}, {_FIGURES},
    min(agent) FILTER (WHERE has_root) AS rooted_agent, min(agent) AS first_agent,
    min(agent_version) FILTER (WHERE has_root) AS rooted_version, min(agent_version) AS first_version,
    min(root_workflow) AS root_workflow, min(first_ts) AS first_ts, max(last_ts) AS last_ts, {PEOPLE}"""
"""A trace's row in ``trace_totals`` (per tenant and date), over its parts of that date."""
MERGE = f"""any_value(tenant) AS tenant, {_SUMS}, sum(events)::BIGINT AS events, sum(calls)::BIGINT AS calls,
    sum(tokens)::BIGINT AS tokens, sum(input_tokens)::BIGINT AS input_tokens,
    sum(output_tokens)::BIGINT AS output_tokens, sum(cache_read_tokens)::BIGINT AS cache_read_tokens,
    sum(cache_write_tokens)::BIGINT AS cache_write_tokens,
    sum(reasoning_tokens)::BIGINT AS reasoning_tokens,
    list_sort(list_distinct(flatten(list(agents)))) AS agents,
    list_sort(list_distinct(flatten(list(models)))) AS models,
    min(rooted_agent) AS rooted_agent, min(first_agent) AS first_agent,
    min(rooted_version) AS rooted_version, min(first_version) AS first_version,
    min(root_workflow) AS root_workflow, min(first_ts) AS first_ts, max(last_ts) AS last_ts, {PEOPLE}"""
"""The ``TOTAL`` rows of one trace (several dates or tenants) merged: the whole trace."""
ROOTS = """coalesce(rooted_agent, first_agent) AS root_agent,
    coalesce(rooted_version, first_version) AS root_version"""
"""The root agent and version of a ``TOTAL`` or ``MERGE`` row (as ``ROOT_AGENT`` over parts)."""


def totals_select(parts: str, where: str = "") -> str:
    """Per tenant and trace of ``parts`` (trace part rows), its ``TOTAL`` row and ``shared``:
    the trace id has rows under another tenant too (a date's file is then not the whole
    trace; ``compact`` also sets it when another date has the trace)."""
    return f"""SELECT *, count(*) OVER (PARTITION BY trace_id) > 1 AS shared
        FROM (SELECT tenant, trace_id, {TOTAL} FROM {parts} {where} GROUP BY tenant, trace_id)"""


def agent_totals_select(parts: str, where: str = "") -> str:
    """Per tenant, trace and agent of ``parts``, the ``TOTAL`` row of that agent's parts and
    ``shared``: the trace and agent have rows under another tenant too (``compact`` also
    sets it when another date has the trace); ``trace_users`` and ``trace_conversations``:
    those of every agent's parts of the trace (of the row's tenant and date: the whole
    trace's where the row is not shared). What the traces list shows with an agent filter."""
    same = "a.tenant IS NOT DISTINCT FROM t.tenant AND a.trace_id IS NOT DISTINCT FROM t.trace_id"
    return f"""SELECT a.*, count(*) OVER (PARTITION BY a.trace_id, a.agent) > 1 AS shared,
               t.users AS trace_users, t.conversations AS trace_conversations
        FROM (SELECT tenant, trace_id, agent, {TOTAL} FROM {parts} {where} GROUP BY tenant, trace_id, agent) a
        JOIN (SELECT tenant, trace_id, {PEOPLE} FROM {parts} {where} GROUP BY tenant, trace_id) t ON {same}"""


def select(source: str, where: str = "", with_date: bool = True, summarised: bool = False) -> str:
    """The trace parts of ``source`` (events), optionally with the hive ``date`` column;
    ``summarised``: the value of that column (True for rows read from the summary files)."""
    keys = ", ".join(KEYS)
    date = "date, " if with_date else ""
    flag = f"{str(summarised).upper()} AS summarised, " if with_date else ""
    return f"SELECT {keys}, {date}{flag}{AGGREGATES} FROM {source} {where} GROUP BY ALL"


def spans_select(source: str, where: str = "") -> str:
    """One row per span of ``source``'s traces, in the order ``edges`` expects."""
    return f"""SELECT tenant, trace_id, span_id, any_value(parent_span_id) AS parent_span_id,
               any_value(agent) AS agent, sum(cost_usd) AS direct_cost_usd
            FROM {source} {where} GROUP BY tenant, trace_id, span_id ORDER BY tenant, trace_id, span_id"""


def tree(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order spans parents-first with ``depth`` and ``inclusive_cost_usd``.

    Iterative and cycle-proof: telemetry is input, and a span that names itself (or a
    descendant) as parent must not hang or crash the API. Such a span becomes a root.
    """
    by_id = {r["span_id"]: r for r in rows if r["span_id"] is not None}
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for sid, r in by_id.items():
        parent = r["parent_span_id"]
        if parent in by_id and parent != sid:
            children.setdefault(parent, []).append(sid)
        else:
            roots.append(sid)
    order: list[tuple[str, int, str | None]] = []  # (span, depth, parent in the tree)
    seen: set[str] = set()
    for start in [*roots, *by_id]:  # then whatever only a cycle reaches
        stack = [(start, 0, None)] if start not in seen else []
        while stack:
            sid, depth, parent = stack.pop()
            if sid in seen:
                continue
            seen.add(sid)
            order.append((sid, depth, parent))
            stack.extend((c, depth + 1, sid) for c in reversed(children.get(sid, [])))
    for sid, _, _ in order:
        by_id[sid]["inclusive_cost_usd"] = Decimal(by_id[sid]["direct_cost_usd"] or 0)
    for sid, depth, parent in reversed(order):  # children before their parents
        by_id[sid]["depth"] = depth
        if parent is not None:
            by_id[parent]["inclusive_cost_usd"] += by_id[sid]["inclusive_cost_usd"]
    return [by_id[sid] for sid, _, _ in order]


def edges(spans: list[dict[str, Any]]) -> tuple[dict[tuple[Any, Any], list[Any]], bool]:
    """One trace's agent edges from its spans: ``{(caller, callee): [calls, inclusive cost]}``,
    and whether a span names a parent that is not among ``spans`` (orphaned)."""
    ordered = tree(spans)
    by_id = {r["span_id"]: r for r in ordered}
    orphaned = any(r["parent_span_id"] is not None and r["parent_span_id"] not in by_id for r in ordered)
    out: dict[tuple[Any, Any], list[Any]] = {}
    for r in ordered:
        parent = by_id.get(r["parent_span_id"]) if r["depth"] else None
        if parent is None or parent["agent"] == r["agent"]:
            continue
        e = out.setdefault((parent["agent"], r["agent"]), [0, Decimal(0)])
        e[0] += 1
        e[1] += r["inclusive_cost_usd"]
    return out, orphaned


def edge_rows(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``trace_edges`` rows of ``spans`` (``spans_select`` rows, several traces): per
    trace its edges, or one row without caller and callee when it has none but is orphaned."""
    per_trace: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for r in spans:
        per_trace.setdefault((r["tenant"], r["trace_id"]), []).append(r)
    out: list[dict[str, Any]] = []
    for (tenant, trace_id), rows in per_trace.items():
        found, orphaned = edges(rows)
        base = {"tenant": tenant, "trace_id": trace_id, "orphaned": orphaned}
        for (caller, callee), (calls, cost) in found.items():
            out.append({**base, "caller": caller, "callee": callee, "calls": calls, "cost_usd": cost})
        if orphaned and not found:
            out.append({**base, "caller": None, "callee": None, "calls": 0, "cost_usd": Decimal(0)})
    return out


EDGE_SPANS = """WITH s AS ({spans}),
    known AS (SELECT DISTINCT tenant, trace_id, span_id FROM s),
    orphans AS (
      SELECT DISTINCT s.tenant, s.trace_id FROM s
      WHERE s.parent_span_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM known k WHERE k.tenant IS NOT DISTINCT FROM s.tenant
          AND k.trace_id IS NOT DISTINCT FROM s.trace_id AND k.span_id = s.parent_span_id)),
    mixed AS (
      SELECT tenant, trace_id FROM s GROUP BY ALL
      HAVING count(DISTINCT agent) + max(CASE WHEN agent IS NULL THEN 1 ELSE 0 END) > 1)
    SELECT s.* FROM s SEMI JOIN (SELECT * FROM orphans UNION SELECT * FROM mixed) t
      ON t.tenant IS NOT DISTINCT FROM s.tenant AND t.trace_id IS NOT DISTINCT FROM s.trace_id
    ORDER BY s.tenant, s.trace_id, s.span_id"""
"""The spans of the traces that can have an edge or are orphaned (several agents, or a span
whose parent is not there): a trace of one agent with a whole tree has no edge."""


def edge_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("tenant", pa.string()),
            pa.field("trace_id", pa.string()),
            pa.field("orphaned", pa.bool_()),
            pa.field("caller", pa.string()),
            pa.field("callee", pa.string()),
            pa.field("calls", pa.int64()),
            pa.field("cost_usd", pa.decimal128(38, 12)),
        ]
    )


def sort_totals(totals: Any) -> Any:
    """``trace_totals`` rows in file order: the shared ones (few: the queries merge them)
    first, then the most costly first (``trace_agent_totals``: per agent, most costly first).
    In small row groups (``TOTALS_ROW_GROUP``) DuckDB's min/max then skips all but a few
    groups for the shared rows, for another agent, and for a top-N by cost."""
    import pyarrow.compute as pc

    keys = [
        ("shared", "descending"),
        *([("agent", "ascending")] if "agent" in totals.column_names else []),
        ("cost_usd", "descending"),
        ("tenant", "ascending"),
        ("trace_id", "ascending"),
    ]
    order = pc.sort_indices(totals, sort_keys=[(k, o, "at_end") for k, o in keys])
    return totals.take(order)


def summarise(events: Any, elsewhere: Any = None, with_edges: bool = True) -> tuple[Any, Any, Any, Any]:
    """(trace parts, trace edges, trace totals, trace agent totals) of an Arrow table of
    events (one compacted file); ``elsewhere``: the ``trace_id`` column of the other dates'
    totals files (a trace there is ``shared``: its totals here are not the whole trace);
    without ``with_edges`` the edges are not computed (an empty table)."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("compacted", events)
        parts = con.sql(select("compacted", with_date=False)).to_arrow_table()
        con.register("parts", parts)
        totals = con.sql(totals_select("parts")).to_arrow_table()
        by_agent = con.sql(agent_totals_select("parts")).to_arrow_table()
        if elsewhere is not None and len(elsewhere):
            con.register("elsewhere", elsewhere)
            flagged = []
            for table in (totals, by_agent):
                con.register("totals", table)
                flagged.append(
                    con.sql(
                        """SELECT * REPLACE (shared OR trace_id IN (SELECT trace_id FROM elsewhere) AS shared)
                        FROM totals"""
                    ).to_arrow_table()
                )
            totals, by_agent = flagged
        totals, by_agent = sort_totals(totals), sort_totals(by_agent)
        spans = (
            []
            if not with_edges
            else con.sql(EDGE_SPANS.format(spans=spans_select("compacted"))).to_arrow_table().to_pylist()
        )
    finally:
        con.close()
    return parts, pa.Table.from_pylist(edge_rows(spans), schema=edge_schema()), totals, by_agent
