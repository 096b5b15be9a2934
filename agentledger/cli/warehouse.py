"""``agentledger warehouse compact|query|files``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from agentledger.cli._common import console, settings

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
    from agentledger.warehouse.storage import DATASETS, Store

    store = Store(_root(root))
    for dataset in DATASETS:
        per_day: dict[str, list[int]] = {}
        for f in store.files(dataset):
            per_day.setdefault(f.date, []).append(f.size)
        for day, sizes in sorted(per_day.items()):
            console.print(f"{dataset:<9} date={day}  {len(sizes):>5} files  {sum(sizes):>12,} bytes")


@warehouse_app.command("query")
def query(
    name: str = typer.Argument(..., help="A named query: see `agentledger warehouse query --help`."),
    tenant: str = typer.Option(None, help="Only this tenant."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path = typer.Option(None, "--out", "-o", help="File for csv/json/parquet."),
    root: str = typer.Option(None, help="Warehouse root (default: settings)."),
) -> None:
    """Run a named analyst query (cost_by_agent_day, top_traces, cost_per_successful_task,
    token_efficiency, budget_utilisation, unpriced_usage, costs, agents)."""

    from agentledger.warehouse.catalog import Catalog
    from agentledger.warehouse.queries import NAMED

    if name not in NAMED:
        raise typer.BadParameter(f"unknown query {name!r}; choose from {', '.join(NAMED)}")
    rows = NAMED[name](Catalog(_root(root)), tenant=tenant)
    _emit(rows, fmt, out)


@warehouse_app.command("reprice")
def reprice(
    overrides: Path = typer.Option(None, help="Prices file (YAML/JSON), see agentledger.pricing."),
    group_by: str = typer.Option("tenant,agent,provider,model", help="Comma-separated grouping."),
    tenant: str = typer.Option(None, help="Only this tenant."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path = typer.Option(None, "--out", "-o", help="File for csv/json/parquet."),
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
    """Print rows as a table, or write them as csv/json/parquet to ``out``."""
    import pyarrow as pa

    from agentledger.cli.sql import _print
    from agentledger.warehouse.export import write

    table = pa.Table.from_pylist(rows)
    if fmt == "table":
        _print(table)
    elif out is None:
        raise typer.BadParameter(f"--format {fmt} needs --out FILE")
    else:
        write(table, str(out), fmt)
        console.print(f"{table.num_rows} rows written to {out}")
