"""``agentledger sql``: SQL over the warehouse views (``events``, ``commands``, ``alerts``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from agentledger.cli._common import console, err, settings


def register(app: typer.Typer) -> None:
    app.command("sql")(sql)


def sql(
    query: str = typer.Argument(None, help="The SQL; without it an interactive prompt opens."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path = typer.Option(None, "--out", "-o", help="File (csv/json go to stdout without it)."),
    root: str = typer.Option(None, help="Warehouse root (default: settings)."),
) -> None:
    """Run SQL on the deduplicated views events, commands, alerts (raw_* keep duplicates)."""
    from agentledger.cli._output import check_format
    from agentledger.warehouse.catalog import Catalog

    check_format(fmt, out)
    cat = Catalog(root or settings().warehouse_root)
    if query is None:
        _prompt(cat)
        return
    _run(cat, query, fmt, out)


def _run(cat: Any, query: str, fmt: str, out: Path | None) -> None:
    import duckdb

    from agentledger.cli._output import emit_table

    try:
        table = cat.arrow(query)
    except duckdb.Error as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None
    emit_table(table, fmt, out)


def _print(table: Any) -> None:
    from agentledger.cli._output import emit_table

    emit_table(table, "table", None)


def _prompt(cat: Any) -> None:
    """A small REPL: statements end with ``;``; history kept in ~/.agentledger/sql_history."""
    import readline

    import duckdb

    history = settings().home / "sql_history"
    try:
        readline.read_history_file(history)
    except OSError:
        pass
    console.print("agentledger sql: views events, commands, alerts. End with ';'. Ctrl-D quits.")
    buf: list[str] = []
    while True:
        try:
            line = input("sql> " if not buf else "...> ")
        except EOFError:
            break
        except KeyboardInterrupt:
            buf = []
            console.print()
            continue
        buf.append(line)
        text = "\n".join(buf).strip()
        if not text.endswith(";"):
            continue
        buf = []
        try:
            _print(cat.arrow(text))
        except duckdb.Error as exc:
            err.print(f"error: {exc}")
    history.parent.mkdir(parents=True, exist_ok=True)
    readline.write_history_file(history)
