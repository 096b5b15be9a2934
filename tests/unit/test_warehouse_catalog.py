"""Files, views and compaction on a real local folder and a real DuckDB."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.compact import compact
from agentledger.warehouse.landing import land_priced, priced_table
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import priced_events


def _truth(events):  # type: ignore[no-untyped-def]
    return sum((pe.cost_usd for pe in events), Decimal(0)), len({pe.event.event_id for pe in events})


def test_empty_warehouse_answers_with_no_rows(tmp_path: Path) -> None:
    cat = Catalog(str(tmp_path))
    assert cat.query("SELECT count(*) AS n FROM events")[0]["n"] == 0
    assert cat.query("SELECT count(*) AS n FROM commands")[0]["n"] == 0
    land_priced(Store(str(tmp_path)), priced_events(5), "p0-1-1")
    assert cat.query("SELECT count(*) AS n FROM events")[0]["n"] > 0  # picked up without a restart


def test_write_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    store = Store(f"file://{tmp_path}")  # a URI goes through the same code as a path
    paths = land_priced(store, priced_events(20), "p0-0-9")
    assert paths and all(Path(p).exists() for p in paths)
    assert store.temp_files("events") == []
    assert not list(tmp_path.rglob("*.tmp"))
    # a leftover temporary (a crash mid-write) is invisible to listing and to the views
    (tmp_path / "events" / "date=2026-11-21" / ".p0-10-19.parquet.tmp").write_bytes(b"PAR1 partial")
    assert all(not f.name.startswith(".") for f in store.files("events"))
    total, n = _truth(priced_events(20))
    row = Catalog(store).query("SELECT sum(cost_usd) AS c, count(*) AS n FROM events")[0]
    assert (row["c"], row["n"]) == (total, n)


def test_views_remove_duplicates_the_raw_views_keep(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    events = priced_events(50)
    land_priced(store, events, "p0-0-49")
    land_priced(store, events[:100], "p0-0-12")  # a replay of the first records
    cat = Catalog(store)
    total, n = _truth(events)
    row = cat.query("SELECT sum(cost_usd) AS c, count(*) AS n FROM events")[0]
    assert (row["c"], row["n"]) == (total, n)
    assert cat.query("SELECT count(*) AS n FROM raw_events")[0]["n"] == n + 100


def test_old_and_new_files_read_together(tmp_path: Path) -> None:
    """A file written before an optional field existed, one from a newer writer with a field
    this reader does not know yet, and a current one: all readable through the same views."""
    store = Store(str(tmp_path))
    old_events, new_events, now_events = (
        priced_events(10, seed=1),
        priced_events(10, seed=2),
        priced_events(10, seed=3),
    )
    old = priced_table(old_events).drop_columns(["reported_cost_usd", "reasoning_tokens"])
    store.write("events", "2026-11-21", "old", old)
    newer = priced_table(new_events)
    newer = newer.append_column("carbon_g", pa.array([1.5] * newer.num_rows, pa.float64()))
    store.write("events", "2026-11-21", "newer", newer)
    store.write("events", "2026-11-21", "now", priced_table(now_events))
    cat = Catalog(store)
    rows = cat.query(
        "SELECT count(*) AS n, sum(cost_usd) AS c, count(reasoning_tokens) AS reasoning,"
        " count(carbon_g) AS carbon FROM events"
    )[0]
    usage = lambda evs: sum(1 for e in evs if e.event.type == "usage")  # noqa: E731
    assert rows["n"] == len(old_events) + len(new_events) + len(now_events)
    assert rows["c"] == sum(_truth(e)[0] for e in (old_events, new_events, now_events))
    assert rows["reasoning"] == usage(new_events) + usage(now_events)  # NULL in the old file
    assert rows["carbon"] == len(new_events)
    assert "reported_cost_usd" in pq.read_schema(str(next(tmp_path.rglob("now.parquet")))).names


def test_compaction_keeps_every_row_once(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    events = priced_events(120, hours=30)
    for i in range(0, len(events), 40):
        land_priced(store, events[i : i + 40], f"p0-{i:06d}-{i + 39:06d}")
    land_priced(store, events[:40], "p0-000000-000039-replay")  # duplicates
    before = len(store.files("events"))
    results = compact(store)
    assert results and all(r.rows_out <= r.rows_in for r in results)
    files = store.files("events")
    assert len(files) == len(store.days("events")) < before
    merged = pa.concat_tables([store.read(f.path) for f in files])
    assert merged.num_rows == len(events)  # compaction itself dropped the duplicates
    assert sorted(merged.column("event_id").to_pylist()) == sorted(e.event.event_id for e in events)
    total, n = _truth(events)
    row = Catalog(store).query("SELECT sum(cost_usd) AS c, count(*) AS n FROM events")[0]
    assert (row["c"], row["n"]) == (total, n)
    assert compact(store) == []  # idempotent: nothing left to merge


def test_a_reader_during_compaction_always_sees_every_row_once(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    events = priced_events(200, hours=4)
    chunks = [events[i : i + 20] for i in range(0, len(events), 20)]
    for i, chunk in enumerate(chunks):
        land_priced(store, chunk, f"p0-{i:06d}")
    total, n = _truth(events)
    seen: list[tuple[Decimal, int]] = []
    done = threading.Event()

    def reader() -> None:
        cat = Catalog(store)
        while not done.is_set():
            row = cat.query("SELECT sum(cost_usd) AS c, count(*) AS n FROM events")[0]
            seen.append((row["c"], row["n"]))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(6):  # compact, add a few files, compact again...
            compact(store)
            for j, chunk in enumerate(chunks[:3]):
                land_priced(store, chunk, f"again-{round_}-{j}")
    finally:
        done.set()
        thread.join()
    assert seen and set(seen) == {(total, n)}


def test_only_dates_that_are_one_compacted_file_skip_the_dedupe(tmp_path: Path) -> None:
    from agentledger.warehouse.catalog import split_clean

    store = Store(str(tmp_path))
    events = priced_events(80, hours=30)
    land_priced(store, events, "p0-a")
    compact(store)
    clean, dirty = split_clean(store.files("events"))
    assert clean and not dirty
    cat = Catalog(store)
    total, n = _truth(events)
    # a replay lands after compaction: that date is deduplicated again, the others are not
    replay = [e for e in events if e.event.ts.date() == events[0].event.ts.date()][:30]
    land_priced(store, replay + replay, "p0-replay")  # repeats inside one file, too
    clean, dirty = split_clean(store.files("events"))
    assert {f.date for f in dirty} == {events[0].event.ts.date().isoformat()}
    row = cat.query("SELECT sum(cost_usd) AS c, count(*) AS n FROM events")[0]
    assert (row["c"], row["n"]) == (total, n)
    assert cat.query("SELECT count(*) AS n FROM raw_events")[0]["n"] == n + 60


def test_a_non_local_filesystem_goes_through_pyarrow(tmp_path: Path) -> None:
    """Object stores take the other branch (no fsync, pyarrow.dataset under DuckDB): the same
    writes, views, dedupe and old+new schemas, on a filesystem that is not LocalFileSystem."""
    import pyarrow.fs as pafs

    (tmp_path / "bucket").mkdir()
    fs = pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem())
    store = Store("wh", filesystem=fs)
    assert not store.local
    events = priced_events(40)
    land_priced(store, events, "p0-a")
    land_priced(store, events[:30], "p0-replay")
    old = priced_table(priced_events(5, seed=99)).drop_columns(["reasoning_tokens"])
    store.write("events", "2026-11-21", "old", old)
    assert (tmp_path / "bucket" / "wh" / "events").is_dir()
    cat = Catalog(store)
    total, n = _truth(events)
    old_total, old_n = _truth(priced_events(5, seed=99))
    row = cat.query("SELECT sum(cost_usd) AS c, count(*) AS n, count(DISTINCT date) AS days FROM events")[0]
    assert (row["c"], row["n"]) == (total + old_total, n + old_n) and row["days"] >= 1
    compact(store)
    assert cat.query("SELECT count(*) AS n FROM raw_events")[0]["n"] == n + old_n


def test_an_event_id_is_unique_per_tenant_only(tmp_path: Path) -> None:
    """globex reusing acme's event_id is another event: both stay, in the views and after
    compaction; a replay of either is still one row."""
    store = Store(str(tmp_path))
    acme = [pe for pe in priced_events(20) if pe.event.tenant == "acme"][:5]
    assert acme
    globex = [
        pe.model_copy(update={"event": pe.event.model_copy(update={"tenant": "globex"})}) for pe in acme
    ]
    land_priced(store, acme, "p0-0-4")
    land_priced(store, globex, "p1-0-4")
    land_priced(store, globex[:2], "p1-0-1")  # a replay
    cat = Catalog(store)
    want = {(pe.event.tenant, pe.event.event_id) for pe in acme + globex}
    rows = cat.query("SELECT tenant, event_id FROM events")
    assert sorted((r["tenant"], r["event_id"]) for r in rows) == sorted(want)
    compact(store)
    merged = pa.concat_tables([store.read(f.path) for f in store.files("events")])
    assert sorted(zip(merged["tenant"].to_pylist(), merged["event_id"].to_pylist(), strict=True)) == sorted(
        want
    )
