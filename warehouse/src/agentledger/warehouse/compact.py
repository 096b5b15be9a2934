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
    path = store.write(dataset, day, f"{COMPACTED_PREFIX}{digest}", out)
    store.delete([f.path for f in files if f.path != path])
    return CompactResult(dataset, day, len(files), merged.num_rows, out.num_rows, path)


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
    return results
