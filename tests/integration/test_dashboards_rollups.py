"""The minute rollup written at compaction gives the same figures as the raw events: every
grouping, bucket, filter and window (whole minutes, partial ones, under two minutes), with
one date compacted and rolled up and another holding newer, uncompacted files."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dashboard_data import land_loop_trace

from agentledger.api.testing import land_demo_warehouse
from agentledger.warehouse import queries, rollup
from agentledger.warehouse.catalog import Catalog, rollup_files
from agentledger.warehouse.compact import compact
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import T0, priced_events

WINDOWS: dict[str, tuple[datetime | None, datetime | None]] = {
    "all": (None, None),
    "whole minutes": (T0 + timedelta(hours=3), T0 + timedelta(hours=30)),
    "partial minutes": (
        T0 + timedelta(hours=3, minutes=17, seconds=23, microseconds=500),
        T0 + timedelta(hours=29, minutes=2, seconds=1),
    ),
    "from only": (T0 + timedelta(hours=20, seconds=7), None),
    "to only": (None, T0 + timedelta(hours=20, seconds=7)),
    "under two minutes": (T0 + timedelta(hours=5, seconds=10), T0 + timedelta(hours=5, seconds=70)),
}
GROUPS = (["agent"], ["tenant", "agent_version"], ["model", "provider", "workflow"], [])


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, Catalog]:
    """(with rollups, the same events without them)."""
    base = tmp_path_factory.mktemp("rollups")
    root = base / "wh"
    land_demo_warehouse(str(root), n_traces=300)
    land_loop_trace(str(root))
    store = Store(str(root))
    compact(store)
    # newer files on one date after its compaction: that date is read from the events
    land_priced(store, priced_events(40, seed=9, t0=T0 + timedelta(hours=26), hours=3), "late-arrivals")
    covered = rollup_files(store.files("events"), store.files(rollup.DATASET))
    days = {f.date for f in store.files("events")}
    assert 0 < len(covered) < len(days)  # some dates from their rollup, some from events
    bare = base / "bare"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns(rollup.DATASET))
    return Catalog(str(root)), Catalog(str(bare))


def _same(fn: Any, cats: tuple[Catalog, Catalog], **kwargs: Any) -> list[dict[str, Any]]:
    rolled, raw = (fn(c, **kwargs) for c in cats)
    assert rolled == raw, kwargs
    return list(rolled)


@pytest.mark.parametrize("window", list(WINDOWS))
def test_costs_and_agents_from_the_rollup_equal_those_from_the_events(
    catalogs: tuple[Catalog, Catalog], window: str
) -> None:
    start, end = WINDOWS[window]
    for bucket in (None, "minute", "hour", "day", "week"):
        for group_by in GROUPS:
            rows = _same(queries.costs, catalogs, group_by=group_by, bucket=bucket, start=start, end=end)
            if window != "under two minutes":
                assert rows and sum(r["events"] for r in rows) > 0
    for filters in ({"agent": "planner"}, {"model": "gpt-4o"}, {"agent_version": "v2"}, {"tenant": "acme"}):
        _same(queries.costs, catalogs, group_by=["agent"], bucket="hour", start=start, end=end, **filters)
        _same(queries.agents, catalogs, start=start, end=end, **filters)
    assert _same(queries.agents, catalogs, start=start, end=end) or window == "under two minutes"


def test_the_rollup_is_what_the_query_reads(catalogs: tuple[Catalog, Catalog], tmp_path: Path) -> None:
    # Proof the rollup is used: a copy whose rollup files are altered answers differently.
    rolled, _ = catalogs
    root = tmp_path / "wh"
    shutil.copytree(rolled.store.root, root)
    store = Store(str(root))
    for f in store.files(rollup.DATASET):
        table = store.read(f.path)
        store.delete([f.path])
        store.write(rollup.DATASET, f.date, f.name, table.slice(0, 0))
    tampered = Catalog(str(root))
    assert queries.costs(tampered, group_by=["agent"]) != queries.costs(rolled, group_by=["agent"])
