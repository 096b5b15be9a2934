"""Where the Parquet lives: one root, three datasets, hive partitions by UTC date.

Everything goes through ``pyarrow.fs``: a local path (the default) and a URI such as
``file:///data/wh`` or ``s3://bucket/wh`` use the same code. A file is written under a
hidden temporary name (``.<name>.parquet.tmp``, which no ``*.parquet`` glob matches), made
durable, then renamed into place, so a reader sees either the whole file or nothing. On a
local disk "durable" means fsync of the file and then of its folder (the rename itself);
object stores publish an object atomically when its upload completes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

DATASETS = ("events", "commands", "alerts")
TMP_SUFFIX = ".parquet.tmp"
COMPACTED_PREFIX = "compacted-"
"""Names of files ``compact`` wrote: no id twice within the file."""


@dataclass(frozen=True, slots=True)
class DataFile:
    path: str
    dataset: str
    date: str
    name: str
    size: int


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """The warehouse root: write files atomically, list and delete them."""

    def __init__(self, root: str, filesystem: pafs.FileSystem | None = None) -> None:
        if filesystem is not None:  # an already configured filesystem (credentials, a subtree)
            self.fs, path = filesystem, root
        elif "://" in root:
            self.fs, path = pafs.FileSystem.from_uri(root)
        else:
            self.fs, path = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
        self.root = path.rstrip("/")
        self.uri = root
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def dataset_dir(self, dataset: str) -> str:
        return f"{self.root}/{dataset}"

    def partition_dir(self, dataset: str, day: str) -> str:
        return f"{self.root}/{dataset}/date={day}"

    def write(
        self, dataset: str, day: str, name: str, table: pa.Table, row_group_size: int = 1_000_000
    ) -> str:
        """Write ``table`` as ``<dataset>/date=<day>/<name>.parquet``, atomically and durably
        (``row_group_size``: rows per Parquet row group, the unit DuckDB's min/max skips)."""
        folder = self.partition_dir(dataset, day)
        self.fs.create_dir(folder, recursive=True)
        final = f"{folder}/{name}.parquet"
        tmp = f"{folder}/.{name}{TMP_SUFFIX}"
        with self.fs.open_output_stream(tmp) as out:
            pq.write_table(table, out, compression="zstd", row_group_size=row_group_size)
        if self.local:
            _fsync(tmp)
        self.fs.move(tmp, final)
        if self.local:
            _fsync(folder)  # the rename is durable only once the folder is
        return final

    def files(self, dataset: str, day: str | None = None) -> list[DataFile]:
        """Every visible Parquet file of a dataset (optionally one date), sorted by path."""
        base = self.partition_dir(dataset, day) if day else self.dataset_dir(dataset)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
                continue
            if info.base_name.startswith("."):
                continue
            parent = info.path.rsplit("/", 2)[-2]
            if not parent.startswith("date="):
                continue
            out.append(DataFile(info.path, dataset, parent[5:], info.base_name[:-8], info.size or 0))
        return sorted(out, key=lambda f: f.path)

    def days(self, dataset: str) -> list[str]:
        return sorted({f.date for f in self.files(dataset)})

    def temp_files(self, dataset: str) -> list[str]:
        selector = pafs.FileSelector(self.dataset_dir(dataset), recursive=True, allow_not_found=True)
        return [i.path for i in self.fs.get_file_info(selector) if i.base_name.endswith(TMP_SUFFIX)]

    def remove_stale_temps(self, older_than_s: float = 3600.0) -> int:
        """Delete temporaries a crashed writer left (old enough that no writer still owns them)."""
        import time

        cutoff = time.time() - older_than_s
        stale = []
        for dataset in DATASETS:
            selector = pafs.FileSelector(self.dataset_dir(dataset), recursive=True, allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.base_name.endswith(TMP_SUFFIX) and info.mtime and info.mtime.timestamp() < cutoff:
                    stale.append(info.path)
        self.delete(stale)
        return len(stale)

    def delete(self, paths: list[str]) -> None:
        for path in paths:
            self.fs.delete_file(path)

    def read(self, path: str) -> pa.Table:
        return pq.read_table(path, filesystem=self.fs)

    def glob(self, dataset: str) -> str:
        """A glob DuckDB can read (local roots only)."""
        return f"{self.dataset_dir(dataset)}/*/*.parquet"


def split_by_day(table: pa.Table, ts_column: str = "ts") -> list[tuple[str, pa.Table]]:
    """Rows grouped by the UTC date of ``ts_column``, in date order."""
    days = pc.cast(table[ts_column], pa.date32())
    unique = pc.unique(days).to_pylist()
    if len(unique) == 1:
        return [(_iso(unique[0]), table)]
    return [(_iso(d), table.filter(pc.equal(days, pa.scalar(d, pa.date32())))) for d in sorted(unique)]


def _iso(value: date) -> str:
    return value.isoformat()
