"""DuckDB over the Parquet: views ``events``, ``commands``, ``alerts`` without duplicates.

``raw_<dataset>`` reads every file of a dataset with ``union_by_name`` (a file written before
a new optional contract field simply has NULL there) and the hive ``date`` column; the plain
view keeps one row per id ((``tenant``, ``event_id``), ``command_id``, ``alert_id``), because the sink and
the streams worker are at-least-once and a replay may land a row twice.

Local roots are read by DuckDB's own Parquet reader; other URIs (``s3://``...) through a
``pyarrow.dataset`` on the same ``pyarrow.fs`` filesystem the sink writes with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa

from agentledger.warehouse import rollup, schema, tracesum
from agentledger.warehouse.storage import COMPACTED_PREFIX, DATASETS, DataFile, Store

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
    """A DuckDB connection with the warehouse views. ``query`` returns a list of dicts.

    The views follow the files: before each statement the catalog lists the datasets (a few
    milliseconds on a local disk) and rebinds a view whose files changed.
    """

    def __init__(self, root: str | Store, threads: int | None = None) -> None:
        import duckdb

        self.store = root if isinstance(root, Store) else Store(root)
        self.con = duckdb.connect()
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute("SET parquet_metadata_cache = true")
        self.con.execute("SET TimeZone = 'UTC'")  # days and hours are UTC, whatever the host
        self._listing: dict[str, tuple[str, ...]] = {}
        _retrying(self.refresh)

    def refresh(self) -> None:
        """Make the views match the files present now (nothing to do when none changed)."""
        events: list[DataFile] = []
        for dataset in DATASETS:
            files = self.store.files(dataset)
            if dataset == "events":
                events = files
            paths = tuple(f.path for f in files)
            if self._listing.get(dataset) == paths:
                continue
            for statement in self._statements(dataset, files):
                self.con.execute(statement)
            self._listing[dataset] = paths
        for derived, view in (
            (rollup.DATASET, self._minutes),
            (tracesum.DATASET, self._trace_parts),
            (tracesum.EDGES, self._trace_edges),
            (tracesum.TOTALS, self._trace_totals),
            (tracesum.AGENT_TOTALS, self._trace_agent_totals),
        ):
            covered = rollup_files(events, self.store.files(derived)) if self.store.local else []
            paths = (*self._listing["events"], "|", *(f.path for f in covered))
            if self._listing.get(derived) != paths:
                self.con.execute(f"CREATE OR REPLACE VIEW {derived} AS {view(covered)}")
                self._listing[derived] = paths

    def _trace_parts(self, covered: list[DataFile]) -> str:
        """``trace_parts``: the summary files of the dates they cover (``summarised`` true),
        the events of the other dates summarised the same way now."""
        days = ", ".join(f"DATE '{f.date}'" for f in covered)
        live = tracesum.select("events", f"WHERE date NOT IN ({days})" if covered else "")
        if not covered:
            return live
        files = self._read(tracesum.DATASET, "summary", covered)
        return f"SELECT *, TRUE AS summarised FROM {files} UNION ALL BY NAME {live}"

    def _trace_totals(self, covered: list[DataFile]) -> str:
        """``trace_totals``: one row per trace and covered date (``summarised`` true), and
        for the traces with a part on a date not covered, their id only (``summarised``
        false: the queries merge those traces from ``trace_parts``)."""
        live = tracesum.totals_select(tracesum.DATASET, "WHERE NOT summarised")
        live = f"SELECT *, FALSE AS summarised, NULL::DATE AS date FROM ({live})"
        if not covered:
            return live
        files = self._read(tracesum.TOTALS, "summary", covered)
        return f"SELECT *, TRUE AS summarised FROM {files} UNION ALL BY NAME {live}"

    def _trace_agent_totals(self, covered: list[DataFile]) -> str:
        """``trace_agent_totals``: as ``trace_totals``, one row per trace, agent and covered
        date, and those of every other date from its trace parts now (``summarised`` false: a
        date compacted before these files existed too)."""
        # the dates whose parts are summarised but not these totals (compacted before they
        # existed): their parts too. Usually none: ``NOT summarised`` alone, which DuckDB
        # folds away for the parts' files (a date filter would read every part's date)
        parts = (
            rollup_files(self.store.files("events"), self.store.files(tracesum.DATASET))
            if self.store.local
            else []
        )
        missing = sorted({f.date for f in parts} - {f.date for f in covered})
        also = "".join(f" OR date = DATE '{day}'" for day in missing)
        live = tracesum.agent_totals_select(tracesum.DATASET, f"WHERE NOT summarised{also}")
        live = f"SELECT *, FALSE AS summarised, NULL::DATE AS date FROM ({live})"
        if not covered:
            return live
        files = self._read(tracesum.AGENT_TOTALS, "summary", covered)
        return f"SELECT *, TRUE AS summarised FROM {files} UNION ALL BY NAME {live}"

    def _trace_edges(self, covered: list[DataFile]) -> str:
        """``trace_edges``: the agent edges of the covered dates' traces (the chain builds the
        other traces' edges from their events)."""
        if covered:
            return f"SELECT * FROM {self._read(tracesum.EDGES, 'summary', covered)}"
        empty = tracesum.edge_schema().append(pa.field("date", pa.date32())).empty_table()
        self.con.register("_empty_trace_edges", empty)
        return "SELECT * FROM _empty_trace_edges"

    def _minutes(self, covered: list[DataFile]) -> str:
        """``events_minute``: the rollup files of the dates they cover, the events of the
        other dates aggregated the same way now."""
        days = ", ".join(f"DATE '{f.date}'" for f in covered)
        live = rollup.select("events", f"WHERE date NOT IN ({days})" if covered else "")
        if not covered:
            return live
        return f"SELECT * FROM {self._read(rollup.DATASET, 'rollup', covered)} UNION ALL BY NAME {live}"

    def _statements(self, dataset: str, files: list[DataFile]) -> list[str]:
        if not files:
            self.con.register(f"_empty_{dataset}", _empty(dataset))
            empty = f"SELECT * FROM _empty_{dataset}"
            return [
                f"CREATE OR REPLACE VIEW raw_{dataset} AS {empty}",
                f"CREATE OR REPLACE VIEW {dataset} AS {empty}",
            ]
        clean, dirty = split_clean(files)
        key = ", ".join(schema.DEDUPE_KEYS[dataset])
        parts = []
        if clean:  # one compacted file per date: already one row per id
            parts.append(f"SELECT * FROM {self._read(dataset, 'clean', clean)}")
        if dirty:
            parts.append(
                f"SELECT * FROM {self._read(dataset, 'dirty', dirty)} "
                f"QUALIFY row_number() OVER (PARTITION BY {key}) = 1"
            )
        return [
            f"CREATE OR REPLACE VIEW raw_{dataset} AS SELECT * FROM {self._read(dataset, 'all', files)}",
            f"CREATE OR REPLACE VIEW {dataset} AS " + " UNION ALL BY NAME ".join(parts),
        ]

    def _read(self, dataset: str, part: str, files: list[DataFile]) -> str:
        """A table expression over exactly ``files`` (with the hive ``date`` column)."""
        if self.store.local:
            listed = ", ".join("'" + f.path.replace("'", "''") + "'" for f in files)
            return (
                f"read_parquet([{listed}], hive_partitioning = true, union_by_name = true, "
                "hive_types = {'date': DATE})"
            )
        import pyarrow.dataset as pads

        full = pa.schema([*schema.SCHEMAS[dataset], pa.field("date", pa.date32())])
        data = pads.dataset(
            [f.path for f in files],
            filesystem=self.store.fs,
            format="parquet",
            schema=full,
            partitioning=pads.partitioning(pa.schema([pa.field("date", pa.date32())]), flavor="hive"),
            partition_base_dir=self.store.dataset_dir(dataset),
        )
        name = f"_arrow_{dataset}_{part}"
        self.con.register(name, data)
        return name

    def arrow(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run ``sql`` and return an Arrow table (again if a compaction raced it)."""

        def run() -> pa.Table:
            self.refresh()
            rel = self.con.sql(sql, params=params)
            return pa.table({}) if rel is None else rel.to_arrow_table()

        return _retrying(run)

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


def split_clean(files: list[DataFile]) -> tuple[list[DataFile], list[DataFile]]:
    """(files of dates holding only one compacted file, every other file).

    Copies of a row share its ``ts``, hence its date partition; compaction removes repeats
    within the partition, so a date whose only file is a compacted one needs no dedupe.
    """
    by_day: dict[str, list[DataFile]] = {}
    for f in files:
        by_day.setdefault(f.date, []).append(f)
    clean: list[DataFile] = []
    dirty: list[DataFile] = []
    for day_files in by_day.values():
        alone = len(day_files) == 1 and day_files[0].name.startswith(COMPACTED_PREFIX)
        (clean if alone else dirty).extend(day_files)
    return clean, dirty


def rollup_files(events: list[DataFile], rollups: list[DataFile]) -> list[DataFile]:
    """The rollup files that stand for their date's events: the date is one compacted file
    and the rollup bears its name (written from exactly that file)."""
    by_day: dict[str, list[DataFile]] = {}
    for f in events:
        by_day.setdefault(f.date, []).append(f)
    covered = []
    for r in rollups:
        files = by_day.get(r.date, [])
        if len(files) == 1 and files[0].name == r.name and r.name.startswith(COMPACTED_PREFIX):
            covered.append(r)
    return covered
