"""Query results out: a readable table for a terminal, or a CSV / JSON / Parquet file."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa

FORMATS = ("table", "csv", "json", "parquet")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        # Money: strip the 12-place padding but never round.
        return format(value.normalize(), "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def rows_as_text(table: pa.Table) -> tuple[list[str], list[list[str]]]:
    """Header and string cells, ready for a terminal table."""
    return table.column_names, [[_cell(v) for v in row.values()] for row in table.to_pylist()]


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def write(table: pa.Table, path: str, fmt: str) -> None:
    """Write ``table`` to ``path`` as csv, json (an array of objects) or parquet."""
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    elif fmt == "json":
        with open(path, "wb") as out:
            out.write(orjson.dumps(table.to_pylist(), default=_json_default, option=orjson.OPT_UTC_Z))
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        raise ValueError(f"format must be one of csv, json, parquet, not {fmt!r}")
