"""Rows out of a command: a table with headers for people, CSV or JSON for programs.

Tables show money (``Decimal``) at 6 decimals, right-aligned; CSV, JSON and Parquet keep the
exact values. Without ``--out``, CSV and JSON go to stdout (pipe them); Parquet needs a file.
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from agentledger.cli._common import console

FORMATS = ("table", "csv", "json", "parquet")
MONEY_PLACES = 6


def cell(value: Any) -> str:
    """A value as a table cell (money at 6 decimals, times in ISO 8601 UTC)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:,.{MONEY_PLACES}f}" if value != value.to_integral_value() else f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:,.4f}"
    if isinstance(value, datetime | date):
        return value.isoformat(timespec="seconds") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def check_format(fmt: str, out: Path | None) -> None:
    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None:
        raise typer.BadParameter("--format parquet needs --out FILE")


def print_table(header: list[str], rows: list[list[Any]], *, title: str | None = None) -> None:
    from rich.table import Table

    view = Table(title=title, show_lines=False, header_style="bold")
    numeric = [bool(rows) and all(isinstance(r[i], int | float | Decimal) or r[i] is None for r in rows)
               for i in range(len(header))]  # fmt: skip
    for name, right in zip(header, numeric, strict=True):
        # money and ids are folded, never cut short
        view.add_column(name, overflow="fold", justify="right" if right else "left", min_width=len(name))
    for row in rows:
        view.add_row(*(cell(v) for v in row))
    if console.is_terminal:
        console.print(view)
    else:  # to a pipe or a file, rows are not folded to 80 columns
        from rich.console import Console

        Console(highlight=False, width=1000).print(view)
    console.print(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")


def emit_table(table: Any, fmt: str, out: Path | None) -> None:
    """A pyarrow table as a terminal table, or CSV/JSON (stdout or ``out``), or Parquet."""
    from agentledger.warehouse.export import write

    check_format(fmt, out)
    if fmt == "csv":
        table = _flat(table)
    if fmt == "table":
        rows = table.to_pylist()
        print_table(table.column_names, [list(r.values()) for r in rows])
    elif out is None:
        _to_stdout(table, fmt)
    else:
        write(table, str(out), fmt)
        console.print(f"{table.num_rows} rows written to {out}")


def _flat(table: Any) -> Any:
    """CSV has no lists: a nested column (a trace's agents, say) becomes its JSON text."""
    import json

    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            texts = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, f.name, pa.array(texts, pa.string()))
    return table


def emit_rows(
    rows: list[dict[str, Any]], fmt: str, out: Path | None, header: list[str] | None = None
) -> None:
    import pyarrow as pa

    if not rows and header:
        table = pa.table({h: pa.array([], pa.string()) for h in header})
    else:
        table = pa.Table.from_pylist(rows)
    emit_table(table, fmt, out)


def _to_stdout(table: Any, fmt: str) -> None:
    sys.stdout.flush()
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, sys.stdout.buffer)
    else:
        import orjson

        def exact(value: Any) -> Any:
            if isinstance(value, Decimal):
                return str(value)  # money stays exact
            raise TypeError(f"cannot serialise {type(value).__name__}")

        sys.stdout.buffer.write(
            orjson.dumps(table.to_pylist(), default=exact, option=orjson.OPT_UTC_Z) + b"\n"
        )
    sys.stdout.buffer.flush()
