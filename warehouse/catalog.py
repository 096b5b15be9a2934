"""DuckDB over the Parquet: views ``events``, ``commands``, ``alerts`` without duplicates.

``raw_<dataset>`` reads every file of a dataset with ``union_by_name`` (a file written before
a new optional contract field simply has NULL there) and the hive ``date`` column; the plain
view keeps one row per id (``event_id``, ``command_id``, ``alert_id``), because the sink and
the streams worker are at-least-once and a replay may land a row twice.

Local roots are read by DuckDB's own Parquet reader; other URIs (``s3://``...) through a
``pyarrow.dataset`` on the same ``pyarrow.fs`` filesystem the sink writes with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import pyarrow as pa

from agentledger.warehouse import schema
from agentledger.warehouse.storage import DATASETS, Store

_RETRIES = 9
T = TypeVar("T")


def _retrying(call: Callable[[], T]) -> T:
    """Run ``call``, again after a short pause when a file vanished under it.

    A compaction may delete a file between DuckDB listing a folder and opening it; its rows
    are in the compacted file by then, so running the statement again is correct.
    """
    import duckdb

    for attempt in range(_RETRIES):
        try:
            return call()
        except duckdb.IOException:
            if attempt == _RETRIES - 1:
                raise
            time.sleep(0.01 * 2**attempt)  # about 2.5 s in all: compactions are short
    raise AssertionError("unreachable")


def _empty(dataset: str) -> pa.Table:
    fields = [*schema.SCHEMAS[dataset], pa.field("date", pa.date32())]
    return pa.schema(fields).empty_table()


class Catalog:
    """A DuckDB connection with the warehouse views. ``query`` returns a list of dicts."""

    def __init__(self, root: str | Store, threads: int | None = None) -> None:
        import duckdb

        self.store = root if isinstance(root, Store) else Store(root)
        self.con = duckdb.connect()
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute("SET parquet_metadata_cache = true")
        self._empty: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """(Re)create the views; call after the first file of a dataset appears."""
        self._empty = set()
        for dataset in DATASETS:
            key = schema.DEDUPE_KEYS[dataset]
            statements = (
                f"CREATE OR REPLACE VIEW raw_{dataset} AS {self._source(dataset)}",
                f"CREATE OR REPLACE VIEW {dataset} AS SELECT * FROM raw_{dataset} "
                f"QUALIFY row_number() OVER (PARTITION BY {key}) = 1",
            )
            for statement in statements:  # binding a view reads file footers: may race too
                _retrying(partial(self.con.execute, statement))

    def _source(self, dataset: str) -> str:
        if not self.store.files(dataset):
            self._empty.add(dataset)
            self.con.register(f"_empty_{dataset}", _empty(dataset))
            return f"SELECT * FROM _empty_{dataset}"
        if self.store.local:
            glob = self.store.glob(dataset).replace("'", "''")
            return (
                f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
                "union_by_name = true, hive_types = {'date': DATE})"
            )
        import pyarrow.dataset as pads

        full = pa.schema([*schema.SCHEMAS[dataset], pa.field("date", pa.date32())])
        data = pads.dataset(
            self.store.dataset_dir(dataset),
            filesystem=self.store.fs,
            format="parquet",
            schema=full,
            partitioning=pads.partitioning(pa.schema([pa.field("date", pa.date32())]), flavor="hive"),
        )
        self.con.register(f"_arrow_{dataset}", data)
        return f"SELECT * FROM _arrow_{dataset}"

    def arrow(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run ``sql`` and return an Arrow table (again if a compaction raced it)."""
        if self._empty:
            self.refresh()
        rel = _retrying(lambda: self.con.sql(sql, params=params))
        return pa.table({}) if rel is None else _retrying(rel.to_arrow_table)

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql``; rows as dicts (decimals stay ``Decimal``)."""
        rows: list[dict[str, Any]] = self.arrow(sql, params).to_pylist()
        return rows

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
