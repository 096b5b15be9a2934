"""``agentledger warehouse compact|query|files``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from agentledger.cli._common import console, settings
from agentledger.warehouse.queries import NAMED

warehouse_app = typer.Typer(help="Maintain and query the Parquet warehouse.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(warehouse_app, name="warehouse")


def _root(root: str | None) -> str:
    return root or settings().warehouse_root


@warehouse_app.command("compact")
def compact(
    root: str = typer.Option(None, help="Warehouse root (default: settings)."),
    dataset: list[str] = typer.Option(None, help="events, commands, alerts (default: all)."),
    day: str = typer.Option(None, help="Only this date partition (YYYY-MM-DD)."),
) -> None:
    """Merge each date partition's files into one without repeated ids (no row lost)."""
    from agentledger.warehouse.compact import compact as run
    from agentledger.warehouse.storage import DATASETS, Store

    chosen = tuple(dataset) if dataset else DATASETS
    bad = [d for d in chosen if d not in DATASETS]
    if bad:
        raise typer.BadParameter(f"unknown dataset(s) {bad}; choose from {', '.join(DATASETS)}")
    results = run(Store(_root(root)), chosen, day=day)
    for r in results:
        console.print(
            f"{r.dataset} date={r.date}: {r.files_in} files, {r.rows_in} rows -> 1 file, {r.rows_out} rows"
        )
    if not results:
        console.print("nothing to compact")


@warehouse_app.command("files")
def files(root: str = typer.Option(None, help="Warehouse root (default: settings).")) -> None:
    """Count the visible files and bytes per dataset and date."""
    from agentledger.cli._output import print_table
    from agentledger.warehouse.storage import DATASETS, Store

    store = Store(_root(root))
    rows: list[list[Any]] = []
    for dataset in DATASETS:
        per_day: dict[str, list[int]] = {}
        for f in store.files(dataset):
            per_day.setdefault(f.date, []).append(f.size)
        rows += [[dataset, day, len(sizes), sum(sizes)] for day, sizes in sorted(per_day.items())]
    print_table(["dataset", "date", "files", "bytes"], rows)


_FLAG = {
    "daily_limit_usd": "--daily-limit",
    "trace_id": "--trace-id",
    "group_by": "--group-by",
    "agent_version": "--agent-version",
    "min_cost_usd": "--min-cost",
    "max_traces": "--max-traces",
    "threshold_ms": "--threshold-ms",
}


def _flag(param: str) -> str:
    return _FLAG.get(param, "--" + param)


def _query_help() -> str:
    lines = ["Run a named analyst query. Every query takes --tenant; the others:", ""]
    for name, q in NAMED.items():
        takes = " ".join(_flag(p) for p in q.params) or "-"
        lines.append(f"{name}  [{takes}]: {q.what}.")
    return "\n\n".join(lines)


def _time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{flag} takes an ISO date or time, e.g. 2026-11-24 or 2026-11-24T10:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@warehouse_app.command("query", help=_query_help())
def query(
    name: str = typer.Argument(..., help="The query: one of the names above."),
    tenant: str = typer.Option(None, help="Only this tenant."),
    start: str = typer.Option(None, help="From this event time, inclusive (ISO; UTC if no zone)."),
    end: str = typer.Option(None, help="Until this event time, exclusive (ISO; UTC if no zone)."),
    group_by: str = typer.Option(
        None,
        "--group-by",
        help="costs: comma list of tenant, agent, agent_version, workflow, model, provider.",
    ),
    bucket: str = typer.Option(None, help="costs, quality_series: minute, hour, day, week or month."),
    limit: int = typer.Option(None, min=1, help="top_traces, alerts, commands, command_latency: rows."),
    daily_limit: float = typer.Option(None, "--daily-limit", help="budget_utilisation: USD per agent-day."),
    trace_id: str = typer.Option(None, "--trace-id", help="trace_tree: the trace."),
    agent: str = typer.Option(None, help="quality_series, commands, and the filtered ones: the agent."),
    agent_version: str = typer.Option(None, "--agent-version", help="Only this agent version."),
    model: str = typer.Option(None, help="Only this model's events."),
    metric: str = typer.Option(None, help="quality_series: the quality metric."),
    state: str = typer.Option(None, help="alerts: ok, warn, alert or resolved."),
    rule: str = typer.Option(None, help="alerts: the rule name."),
    action: str = typer.Option(None, help="commands: kill, throttle, resume, failover or rollback."),
    search: str = typer.Option(None, help="traces: part of a trace id, an agent, a status or a kill reason."),
    status: str = typer.Option(None, help="traces: ok, error or killed."),
    min_cost: float = typer.Option(None, "--min-cost", help="traces: USD at least."),
    sort: str = typer.Option(None, help="traces: cost, duration, errors, agent or start."),
    max_traces: int = typer.Option(None, "--max-traces", min=1, help="agent_calls: newest traces read."),
    target: float = typer.Option(None, help="slo_attainment: share of good calls, e.g. 0.95."),
    threshold_ms: float = typer.Option(
        None, "--threshold-ms", help="slo_attainment: latency bound (without it: availability)."
    ),
    user: str = typer.Option(None, help="Only the traces of this user (attribute user.id)."),
    conversation: str = typer.Option(
        None, help="Only the traces of this conversation (gen_ai.conversation.id)."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path = typer.Option(None, "--out", "-o", help="File (csv/json go to stdout without it)."),
    root: str = typer.Option(None, help="Warehouse root (default: settings)."),
) -> None:
    from decimal import Decimal

    from agentledger.cli._output import check_format, emit_rows
    from agentledger.warehouse.catalog import Catalog

    chosen = NAMED.get(name)
    if chosen is None:
        raise typer.BadParameter(f"unknown query {name!r}; choose from {', '.join(NAMED)}")
    check_format(fmt, out)
    given: dict[str, Any] = {
        "start": _time(start, "--start"),
        "end": _time(end, "--end"),
        "group_by": [g.strip() for g in group_by.split(",") if g.strip()] if group_by else None,
        "bucket": bucket,
        "limit": limit,
        "daily_limit_usd": Decimal(str(daily_limit)) if daily_limit is not None else None,
        "trace_id": trace_id,
        "agent": agent,
        "agent_version": agent_version,
        "model": model,
        "metric": metric,
        "state": state,
        "rule": rule,
        "action": action,
        "search": search,
        "status": status,
        "min_cost_usd": Decimal(str(min_cost)) if min_cost is not None else None,
        "sort": sort,
        "max_traces": max_traces,
        "target": target,
        "threshold_ms": threshold_ms,
        "user": user,
        "conversation": conversation,
    }
    takes = chosen.params
    extra = [_flag(k) for k, v in given.items() if v is not None and k not in takes]
    if extra:
        accepted = " ".join(_flag(p) for p in takes) or "only --tenant"
        raise typer.BadParameter(f"{name} does not take {' '.join(extra)} (it takes {accepted})")
    missing = [_flag(k) for k in chosen.required if given[k] is None]
    if missing:
        raise typer.BadParameter(f"{name} needs {' '.join(missing)}")
    kwargs = {k: v for k, v in given.items() if v is not None}
    rows = chosen.run(Catalog(_root(root)), tenant=tenant, **kwargs)
    emit_rows(rows, fmt, out)


@warehouse_app.command("reprice")
def reprice(
    overrides: Path = typer.Option(None, help="Prices file (YAML/JSON), see agentledger.pricing."),
    group_by: str = typer.Option("tenant,agent,provider,model", help="Comma-separated grouping."),
    tenant: str = typer.Option(None, help="Only this tenant."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path = typer.Option(None, "--out", "-o", help="File (csv/json go to stdout without it)."),
    root: str = typer.Option(None, help="Warehouse root (default: settings)."),
) -> None:
    """Cost again from raw tokens with today's snapshot (and overrides), next to the recorded
    cost. Nothing is rewritten."""

    from agentledger.pricing import PriceBook
    from agentledger.warehouse.catalog import Catalog
    from agentledger.warehouse.repricing import reprice as run

    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    rows = run(Catalog(_root(root)), PriceBook.load(overrides), group_by=groups, tenant=tenant)
    _emit(rows, fmt, out)


def _emit(rows: list[dict[str, Any]], fmt: str, out: Path | None) -> None:
    from agentledger.cli._output import emit_rows

    emit_rows(rows, fmt, out)
