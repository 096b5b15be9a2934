"""Merge a date partition's small files into one, without losing or duplicating a row.

Per partition: read every visible file (older files without a newer column get NULLs),
drop repeated ids (keeping the first), write ONE new file atomically, and only then delete
the inputs. A reader at any moment sees the inputs, or the inputs plus the merged file (the
views' dedupe hides the overlap), or the merged file; a reader that listed a file just
before it was deleted gets an I/O error and ``Catalog`` runs its query again. A crash
between the write and the deletes leaves duplicates the views hide, and the next run merges
them away. File names come from the inputs' names, so a rerun is idempotent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agentledger.warehouse import rollup, tracesum
from agentledger.warehouse.schema import DEDUPE_KEYS
from agentledger.warehouse.storage import COMPACTED_PREFIX, DATASETS, DataFile, Store


@dataclass(slots=True)
class CompactResult:
    dataset: str
    date: str
    files_in: int
    rows_in: int
    rows_out: int
    path: str


def first_of_each(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Rows of ``table`` with a repeated ``keys`` tuple removed (the first one stays), order kept."""
    rows = table.select(list(keys)).append_column("__row", pa.array(np.arange(table.num_rows)))
    first = rows.group_by(list(keys), use_threads=False).aggregate([("__row", "min")])["__row_min"]
    if len(first) == table.num_rows:
        return table
    return table.take(pa.array(np.sort(first.to_numpy())))


def compact_partition(store: Store, dataset: str, files: list[DataFile]) -> CompactResult:
    """Merge ``files`` (all of one dataset and date) into one file; delete them after."""
    day = files[0].date
    tables = [store.read(f.path) for f in files]
    merged = pa.concat_tables(tables, promote_options="permissive")
    out = first_of_each(merged, DEDUPE_KEYS[dataset])
    digest = hashlib.sha1("\n".join(f.name for f in files).encode()).hexdigest()[:16]
    name = f"{COMPACTED_PREFIX}{digest}"
    if dataset == "events":  # before the events file: a reader never sees it without them
        write_summaries(store, day, name, out)
    path = store.write(dataset, day, name, out)
    store.delete([f.path for f in files if f.path != path])
    if dataset == "events":
        _drop_stale_summaries(store, day, name)
    return CompactResult(dataset, day, len(files), merged.num_rows, out.num_rows, path)


def write_rollup(store: Store, day: str, name: str, events: pa.Table) -> str:
    """The minute rollup of one compacted events file (``rollup.DATASET/date=day/name``)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("compacted", events)
        table = con.sql(rollup.select("compacted", with_date=False)).to_arrow_table()
    finally:
        con.close()
    return store.write(rollup.DATASET, day, name, table)


def write_summaries(store: Store, day: str, name: str, events: pa.Table, only: tuple[str, ...] = ()) -> None:
    """The minute rollup and the trace summaries (parts, edges, totals) of one compacted
    events file; ``only``: just those of ``SUMMARIES`` (the ones a file compacted before
    they existed lacks)."""
    wanted = only or SUMMARIES
    if rollup.DATASET in wanted:
        write_rollup(store, day, name, events)
    if not set(wanted) & {tracesum.DATASET, tracesum.EDGES, tracesum.TOTALS, tracesum.AGENT_TOTALS}:
        return
    parts, edges, totals, by_agent = tracesum.summarise(
        events, _traces_elsewhere(store, day), with_edges=tracesum.EDGES in wanted
    )
    written = (
        (tracesum.DATASET, parts),
        (tracesum.EDGES, edges),
        (tracesum.TOTALS, totals),
        (tracesum.AGENT_TOTALS, by_agent),
    )
    for dataset, table in written:
        if dataset in wanted:
            store.write(dataset, day, name, table, **_layout(dataset))
    for dataset in (tracesum.TOTALS, tracesum.AGENT_TOTALS):
        if dataset in wanted:
            _flag_shared_elsewhere(store, day, totals, dataset)


def _layout(dataset: str) -> dict[str, int]:
    """``trace_totals`` and ``trace_agent_totals`` (rows in ``tracesum.sort_totals`` order) in
    small row groups: the traces list's top-N by cost skips every group below its page
    (min/max), and with an agent filter every group of other agents."""
    sorted_totals = (tracesum.TOTALS, tracesum.AGENT_TOTALS)
    return {"row_group_size": tracesum.TOTALS_ROW_GROUP} if dataset in sorted_totals else {}


def _flag_shared_elsewhere(store: Store, day: str, totals: pa.Table, dataset: str = tracesum.TOTALS) -> None:
    """Set ``shared`` on the other dates' ``dataset`` rows (``trace_totals`` or
    ``trace_agent_totals``) of the traces ``totals`` (of ``day``) also has: every row of a
    trace on several dates says so, and the queries read the others as whole traces
    without a join (each file rewritten atomically)."""
    import pyarrow.compute as pc

    ids = totals["trace_id"]
    for f in store.files(dataset):
        if f.date == day:
            continue
        table = pq.read_table(f.path, filesystem=store.fs)
        hit = pc.and_(pc.is_in(table["trace_id"], value_set=ids), pc.invert(table["shared"]))
        if pc.any(hit).as_py():
            shared = pc.or_(table["shared"], hit)
            store.write(
                dataset,
                f.date,
                f.name,
                tracesum.sort_totals(
                    table.set_column(table.schema.get_field_index("shared"), "shared", shared)
                ),
                **_layout(dataset),
            )


def _traces_elsewhere(store: Store, day: str) -> pa.Table | None:
    """The trace ids of the other dates' ``trace_totals`` files (this date's rows of those
    traces are ``shared``: the queries merge a trace's rows)."""
    files = [f for f in store.files(tracesum.TOTALS) if f.date != day]
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f.path, columns=["trace_id"], filesystem=store.fs) for f in files])


SUMMARIES = (rollup.DATASET, tracesum.DATASET, tracesum.EDGES, tracesum.TOTALS, tracesum.AGENT_TOTALS)
"""What compaction writes beside each compacted events file, named like it."""


def _drop_stale_summaries(store: Store, day: str, keep: str) -> None:
    for dataset in SUMMARIES:
        store.delete([f.path for f in store.files(dataset, day) if f.name != keep])


def compact(
    store: Store, datasets: tuple[str, ...] = DATASETS, day: str | None = None
) -> list[CompactResult]:
    """Compact every date partition (or only ``day``) that is not one compacted file already."""
    results = []
    for dataset in datasets:
        by_day: dict[str, list[DataFile]] = {}
        for f in store.files(dataset, day):
            by_day.setdefault(f.date, []).append(f)
        for files in by_day.values():
            if len(files) > 1 or not files[0].name.startswith(COMPACTED_PREFIX):
                results.append(compact_partition(store, dataset, files))
            elif dataset == "events" and (
                missing := _missing_summaries(store, files[0])
            ):  # compacted before them
                write_summaries(store, files[0].date, files[0].name, store.read(files[0].path), missing)
                _drop_stale_summaries(store, files[0].date, files[0].name)
    return results


def _missing_summaries(store: Store, events_file: DataFile) -> tuple[str, ...]:
    """The summaries ``events_file`` has no file of (named like it)."""
    return tuple(
        dataset
        for dataset in SUMMARIES
        if not any(f.name == events_file.name for f in store.files(dataset, events_file.date))
    )
