"""The trace summaries written at compaction give the figures of the raw events: the traces
list (every sort, filter and window shape), the top traces, tasks per version, cost per
successful task and the agent chain. With one date summarised and another holding newer,
uncompacted files, traces across midnight (a parent on one date, its child on the next; an
edge seen on both dates) and a replayed file (duplicates)."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dashboard_data import LOOP_START, LOOP_TRACE, LOOP_USER, land_agent_chain, land_loop_trace

from agentledger.api.testing import land_demo_warehouse
from agentledger.events import PricedEvent, SpanEvent, SpanKind, UsageEvent
from agentledger.warehouse import queries, tracesum
from agentledger.warehouse.catalog import Catalog, rollup_files
from agentledger.warehouse.compact import SUMMARIES, compact
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import T0, priced_events

MIDNIGHT = T0 + timedelta(hours=2)  # T0 is 22:00 UTC
CROSS = "d" * 31 + "1"  # parent span after midnight, its child (another agent) before
TWICE = "d" * 31 + "2"  # the same edge seen on both dates (one span's events on each side)
WINDOWS: dict[str, tuple[datetime | None, datetime | None]] = {
    "all": (None, None),
    "inside": (T0 + timedelta(hours=3), T0 + timedelta(hours=30)),
    "through the loop trace": (LOOP_START + timedelta(seconds=4, milliseconds=500), None),
    "to mid loop": (None, LOOP_START + timedelta(seconds=5)),
    "across midnight": (MIDNIGHT - timedelta(seconds=30), MIDNIGHT + timedelta(seconds=30)),
    "from midnight": (MIDNIGHT, LOOP_START + timedelta(hours=1)),
}


def _event(
    cls: Any, n: int, trace: str, sid: str, parent: str | None, agent: str, at: datetime, **kw: Any
) -> Any:
    common = {"tenant": "acme", "agent": agent, "agent_version": "v1", "trace_id": trace}
    return cls(
        event_id=f"midnight-{trace[-1]}-{n}", ts=at, span_id=sid, parent_span_id=parent, **common, **kw
    )


def land_midnight_traces(root: str) -> None:
    def span(n: int, trace: str, sid: str, parent: str | None, agent: str, at: datetime) -> PricedEvent:
        e = _event(SpanEvent, n, trace, sid, parent, agent, at, name=agent, kind=SpanKind.AGENT,
                   start=at - timedelta(seconds=5), end=at)  # fmt: skip
        return PricedEvent(event=e, cost_usd=Decimal(0), priced=True, price_source="test")

    def usage(
        n: int, trace: str, sid: str, parent: str | None, agent: str, at: datetime, cost: str
    ) -> PricedEvent:
        e = _event(UsageEvent, n, trace, sid, parent, agent, at, provider="openai", model="gpt-4o",
                   input_tokens=10, output_tokens=5, reasoning_tokens=2)  # fmt: skip
        return PricedEvent(event=e, cost_usd=Decimal(cost), priced=True, price_source="test")

    before, after = MIDNIGHT - timedelta(seconds=2), MIDNIGHT + timedelta(seconds=2)
    events = [
        span(0, CROSS, "e" * 15 + "1", None, "planner", after),
        usage(1, CROSS, "e" * 15 + "1", None, "planner", after, "0.25"),
        span(2, CROSS, "e" * 15 + "2", "e" * 15 + "1", "coder", before),
        usage(3, CROSS, "e" * 15 + "2", "e" * 15 + "1", "coder", before, "1.5"),
        usage(4, TWICE, "f" * 15 + "1", None, "planner", before, "0.5"),
        span(5, TWICE, "f" * 15 + "2", "f" * 15 + "1", "critic", before),
        span(6, TWICE, "f" * 15 + "1", None, "planner", after),
        usage(7, TWICE, "f" * 15 + "2", "f" * 15 + "1", "critic", after, "2"),
    ]
    land_priced(Store(root), events, "midnight-events")
    land_priced(Store(root), events[:3], "midnight-replayed")  # at-least-once: a repeat


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, Catalog]:
    """(with trace summaries, the same events without them)."""
    base = tmp_path_factory.mktemp("tracesum")
    root = base / "wh"
    land_demo_warehouse(str(root), n_traces=300)
    land_loop_trace(str(root))
    land_agent_chain(str(root))
    land_midnight_traces(str(root))
    store = Store(str(root))
    compact(store)
    # newer files on one date after its compaction: that date is read from the events
    land_priced(store, priced_events(40, seed=9, t0=T0 + timedelta(hours=26), hours=3), "late-arrivals")
    covered = rollup_files(store.files("events"), store.files(tracesum.DATASET))
    days = {f.date for f in store.files("events")}
    assert 0 < len(covered) < len(days)  # some dates from their summary, some from events
    bare = base / "bare"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns(*SUMMARIES))
    return Catalog(str(root)), Catalog(str(bare))


def _same(fn: Any, cats: tuple[Catalog, Catalog], **kwargs: Any) -> list[dict[str, Any]]:
    summarised, raw = (fn(c, **kwargs) for c in cats)
    assert summarised == raw, kwargs
    return list(summarised)


def _raw_traces(cat: Catalog, start: datetime | None, end: datetime | None, **filters: Any) -> dict[str, Any]:
    """Per trace, straight from the deduplicated events: what the list must show."""
    rows = cat.query("SELECT * FROM events")
    people: dict[str, set[str]] = {}
    for r in rows:
        if r["attributes"] and LOOP_USER in r["attributes"]:
            people.setdefault(LOOP_USER, set()).add(r["trace_id"])
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if (start and r["ts"] < start) or (end and r["ts"] >= end):
            continue
        if any(r[k] != v for k, v in filters.items() if k != "user"):
            continue
        if "user" in filters and r["trace_id"] not in people.get(filters["user"], set()):
            continue
        t = out.setdefault(r["trace_id"], {"cost_usd": Decimal(0), "events": 0, "calls": 0, "tokens": 0,
                                           "errors": 0, "agents": set(), "start": None, "end": None})  # fmt: skip
        t["cost_usd"] += r["cost_usd"] or 0
        t["events"] += 1
        t["calls"] += r["type"] == "usage"
        t["tokens"] += (r["input_tokens"] or 0) + (r["output_tokens"] or 0)
        t["errors"] += r["type"] == "span" and r["status"] == "error"
        t["agents"].add(r["agent"])
        first, last = r["start"] or r["ts"], r["end"] or r["ts"]
        t["start"] = first if t["start"] is None else min(t["start"], first)
        t["end"] = last if t["end"] is None else max(t["end"], last)
    return out


FILTERS: list[dict[str, Any]] = [{}, {"agent": "planner"}, {"model": "gpt-4o"}, {"agent_version": "v2"},
                                 {"tenant": "acme"}, {"user": LOOP_USER}]  # fmt: skip


@pytest.mark.parametrize("window", list(WINDOWS))
def test_trace_figures_from_the_summaries_equal_those_from_the_events(
    catalogs: tuple[Catalog, Catalog], window: str
) -> None:
    start, end = WINDOWS[window]
    for filters in FILTERS[::2] if window != "all" else FILTERS:
        listed = _same(queries.traces, catalogs, start=start, end=end, limit=100_000, **filters)
        truth = _raw_traces(catalogs[1], start, end, **filters)
        assert {r["trace_id"] for r in listed} == set(truth), (window, filters)
        for r in listed:
            t = truth[r["trace_id"]]
            got = {k: r[k] for k in ("cost_usd", "events", "calls", "tokens", "errors", "start", "end")}
            assert got == {k: t[k] for k in got}, (window, filters, r["trace_id"])
            assert set(r["agents"]) == t["agents"]
    _same(queries.cost_per_successful_task, catalogs, start=start, end=end)
    _same(queries.version_tasks, catalogs, start=start, end=end, agent="coder")
    _same(queries.agent_calls, catalogs, start=start, end=end)


@pytest.mark.parametrize("window", ["all", "through the loop trace"])
def test_sorts_searches_and_top_traces_from_the_summaries_equal_those_from_the_events(
    catalogs: tuple[Catalog, Catalog], window: str
) -> None:
    start, end = WINDOWS[window]
    for sort in queries.TRACE_SORTS:
        _same(queries.traces, catalogs, start=start, end=end, sort=sort, limit=25)
    for filters in FILTERS[1::2]:
        _same(queries.top_traces, catalogs, start=start, end=end, limit=15, **filters)
    for search in ("killed", LOOP_USER, "c" * 8):
        assert _same(queries.traces, catalogs, start=start, end=end, search=search, limit=50)
    _same(queries.agent_calls, catalogs, start=start, end=end, agent="coder", max_traces=3)


def test_a_trace_across_midnight_counts_each_edge_once_with_its_whole_cost(
    catalogs: tuple[Catalog, Catalog],
) -> None:
    summarised, raw = catalogs
    edges = {(e["caller"], e["callee"]): e for e in queries.agent_calls(summarised)}
    assert edges == {(e["caller"], e["callee"]): e for e in queries.agent_calls(raw)}
    # the chain traces (planner->coder twice, coder->critic once) plus the two midnight traces
    assert (edges["planner", "coder"]["calls"], edges["planner", "coder"]["traces"]) == (3, 3)
    assert edges["planner", "coder"]["cost_usd"] == Decimal("2.5") + Decimal("3") + Decimal("1.5")
    assert (edges["planner", "critic"]["calls"], edges["planner", "critic"]["cost_usd"]) == (1, Decimal("2"))
    rows = {r["trace_id"]: r for r in queries.traces(summarised, limit=100_000)}
    assert rows[CROSS]["cost_usd"] == Decimal("1.75") and rows[CROSS]["events"] == 4  # the replay dropped
    assert rows[CROSS]["root_agent"] == "planner" and rows[TWICE]["reasoning_tokens"] == 4


def test_one_trace_reads_only_its_dates_and_matches_the_events(catalogs: tuple[Catalog, Catalog]) -> None:
    for trace_id in (LOOP_TRACE, CROSS, TWICE):
        spans = _same(queries.trace_spans, catalogs, trace_id=trace_id)
        assert spans and sum(s["direct_cost_usd"] for s in spans) == next(
            r["cost_usd"] for r in queries.traces(catalogs[0], search=trace_id[-8:], limit=5)
            if r["trace_id"] == trace_id
        )  # fmt: skip
    plan = catalogs[0].query(
        f"EXPLAIN ANALYZE SELECT count(*) FROM events {queries._one_trace(LOOP_TRACE, None).sql()}",
        [LOOP_TRACE, LOOP_TRACE],
    )
    text = "\n".join(str(v) for r in plan for v in r.values())
    # the loop trace's date is one compacted file of the five dates: the others are not read
    assert "Total Files Read: 1" in text or "Total Files Read: 2" in text, text


def test_the_summaries_are_what_the_queries_read(catalogs: tuple[Catalog, Catalog], tmp_path: Path) -> None:
    # Proof they are used: a copy whose trace parts say a trace cost more answers so (the
    # midnight trace: both its dates are summarised).
    root = Path(catalogs[0].store.root)
    copy = tmp_path / "wh"
    shutil.copytree(root, copy)
    for dataset in (tracesum.DATASET, tracesum.TOTALS):
        for f in Store(str(copy)).files(dataset):
            table = pq.read_table(f.path)
            rows = table.to_pylist()
            for r in rows:
                if r["trace_id"] == CROSS:
                    r["cost_usd"] *= 2
            pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), f.path)
    altered = {r["trace_id"]: r for r in queries.traces(Catalog(str(copy)), limit=100_000)}
    truth = {r["trace_id"]: r for r in queries.traces(catalogs[1], limit=100_000)}
    assert altered[CROSS]["cost_usd"] == 2 * truth[CROSS]["cost_usd"]
    window = {"start": LOOP_START - timedelta(days=9), "end": LOOP_START + timedelta(days=1)}
    in_window = {r["trace_id"]: r for r in queries.traces(Catalog(str(copy)), limit=100_000, **window)}
    assert in_window[CROSS]["cost_usd"] == 2 * truth[CROSS]["cost_usd"]  # windows read the parts


def test_the_whole_run_list_reads_one_stored_row_per_trace(
    catalogs: tuple[Catalog, Catalog], tmp_path: Path
) -> None:
    # A trace on one compacted date: its trace_totals row is read as the whole trace (its
    # parts are not grouped again), so a copy whose row says more answers so.
    copy = tmp_path / "wh"
    shutil.copytree(Path(catalogs[0].store.root), copy)
    store = Store(str(copy))
    f = rollup_files(store.files("events"), store.files(tracesum.TOTALS))[0]
    table = pq.read_table(f.path)
    rows = table.to_pylist()
    shared = {
        r["trace_id"]
        for g in store.files(tracesum.TOTALS)
        for r in pq.read_table(g.path).to_pylist()
        if r["shared"]
    }
    trace_id = next(r["trace_id"] for r in rows if r["trace_id"] not in shared)
    for r in rows:
        if r["trace_id"] == trace_id:
            r["cost_usd"] *= 3
            r["events"] += 1000
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), f.path)
    truth = next(r for r in queries.top_traces(catalogs[1], limit=100_000) if r["trace_id"] == trace_id)
    got = next(r for r in queries.top_traces(Catalog(str(copy)), limit=100_000) if r["trace_id"] == trace_id)
    assert (got["cost_usd"], got["events"]) == (3 * truth["cost_usd"], truth["events"] + 1000)
    listed = next(r for r in queries.traces(Catalog(str(copy)), limit=100_000) if r["trace_id"] == trace_id)
    assert (listed["cost_usd"], listed["events"]) == (got["cost_usd"], got["events"])


def test_a_trace_on_two_dates_compacted_later_date_first_is_merged(tmp_path: Path) -> None:
    # The date written last flags the trace shared in both dates' rows: here the later date first.
    root = tmp_path / "wh"
    land_midnight_traces(str(root))
    store = Store(str(root))
    days = sorted({f.date for f in store.files("events")})
    assert len(days) == 2
    for day in reversed(days):
        compact(store, day=day)
    shared = {
        (f.date, r["trace_id"]): r["shared"]
        for f in store.files(tracesum.TOTALS)
        for r in pq.read_table(f.path).to_pylist()
    }
    assert shared == {(d, t): True for d in days for t in (CROSS, TWICE)}
    summarised = {r["trace_id"]: r for r in queries.traces(Catalog(str(root)), limit=10)}
    truth = _raw_traces(Catalog(str(root)), None, None)
    assert {t: (r["cost_usd"], r["events"], r["start"], r["end"]) for t, r in summarised.items()} == {
        t: (v["cost_usd"], v["events"], v["start"], v["end"]) for t, v in truth.items()
    }
    assert summarised[CROSS]["cost_usd"] == Decimal("1.75") and summarised[CROSS]["root_agent"] == "planner"


def test_the_costliest_traces_read_few_row_groups_and_equal_the_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trace_totals is written most costly first in small row groups: the list sorted by cost
    # (and top traces) reads the groups above its page's cheapest trace only, and still
    # lists exactly the traces and figures of the raw events, whatever the page size.
    monkeypatch.setattr(tracesum, "TOTALS_ROW_GROUP", 4)
    root = tmp_path / "wh"
    land_demo_warehouse(str(root), n_traces=120)
    land_midnight_traces(str(root))  # two traces on two dates: merged, never cut by the floor
    store = Store(str(root))
    compact(store)
    for f in store.files(tracesum.TOTALS):
        meta = pq.ParquetFile(f.path).metadata
        assert meta.num_rows <= 4 or meta.num_row_groups > 1, f.path
        rows = pq.read_table(f.path).to_pylist()
        shared = [r["shared"] for r in rows]
        assert shared == sorted(shared, reverse=True), f.path  # the few shared rows first
        costs = [r["cost_usd"] for r in rows if not r["shared"] and r["cost_usd"] is not None]
        assert costs == sorted(costs, reverse=True), f.path
    bare = tmp_path / "bare"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns(*SUMMARIES))
    cats = (Catalog(str(root)), Catalog(str(bare)))
    truth = _raw_traces(cats[1], None, None)
    by_cost = sorted(truth, key=lambda t: (-truth[t]["cost_usd"], t))
    for limit in (1, 2, 5, 40, 100_000):
        for tenant in (None, "acme"):
            listed = _same(queries.traces, cats, limit=limit, tenant=tenant)
            top = _same(queries.top_traces, cats, limit=limit, tenant=tenant)
            assert [r["trace_id"] for r in top] == [r["trace_id"] for r in listed][: len(top)]
            if tenant is None:
                assert [r["trace_id"] for r in listed] == by_cost[:limit]
                assert [r["cost_usd"] for r in listed] == [truth[t]["cost_usd"] for t in by_cost[:limit]]
                assert [r["events"] for r in listed] == [truth[t]["events"] for t in by_cost[:limit]]
    assert {CROSS, TWICE} <= {r["trace_id"] for r in queries.traces(cats[0], limit=100_000)}
    plan = cats[0].query(
        "EXPLAIN ANALYZE SELECT trace_id FROM trace_totals WHERE summarised AND NOT shared "
        "ORDER BY cost_usd DESC LIMIT 2"
    )
    text = "\n".join(str(v) for r in plan for v in r.values())
    scanned = [(int(a), int(b)) for a, b in re.findall(r"Row Groups Scanned: (\d+) / (\d+)", text)]
    assert scanned and all(read < total for read, total in scanned), text  # the cheap groups skipped
    plan = cats[0].query("EXPLAIN ANALYZE SELECT * FROM trace_totals WHERE shared")
    text = "\n".join(str(v) for r in plan for v in r.values())
    scanned = [(int(a), int(b)) for a, b in re.findall(r"Row Groups Scanned: (\d+) / (\d+)", text)]
    assert scanned and all(read < total for read, total in scanned), text  # the unshared skipped


def test_the_chain_reads_stored_edges_of_a_one_date_trace_whose_parent_never_came(tmp_path: Path) -> None:
    # A trace on one compacted date with a span whose parent was never reported: its stored
    # edges are its whole tree (no other date can add to it), so the chain reads them (a copy
    # whose stored edge says more answers so) and they equal the tree of its events.
    trace, at = "c" * 31 + "9", T0 + timedelta(hours=5)
    events = [
        _event(
            SpanEvent,
            0,
            trace,
            "a" * 15 + "1",
            "b" * 16,
            "planner",
            at,
            name="planner",
            kind=SpanKind.AGENT,
            start=at - timedelta(seconds=3),
            end=at,
        ),
        _event(
            SpanEvent,
            1,
            trace,
            "a" * 15 + "2",
            "a" * 15 + "1",
            "coder",
            at,
            name="coder",
            kind=SpanKind.AGENT,
            start=at - timedelta(seconds=2),
            end=at,
        ),
        _event(
            UsageEvent,
            2,
            trace,
            "a" * 15 + "2",
            "a" * 15 + "1",
            "coder",
            at,
            provider="openai",
            model="gpt-4o",
            input_tokens=10,
            output_tokens=5,
        ),
    ]
    priced = [PricedEvent(event=e, cost_usd=Decimal("0.75" if i == 2 else 0), priced=True, price_source="test")
              for i, e in enumerate(events)]  # fmt: skip
    root = tmp_path / "wh"
    land_priced(Store(str(root)), priced, "orphan")
    compact(Store(str(root)))
    expected = [
        {"caller": "planner", "callee": "coder", "calls": 1, "cost_usd": Decimal("0.75"), "traces": 1}
    ]
    assert queries.agent_calls(Catalog(str(root))) == expected
    bare = tmp_path / "bare"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns(*SUMMARIES))
    assert queries.agent_calls(Catalog(str(bare))) == expected
    (f,) = Store(str(root)).files(tracesum.EDGES)
    table = pq.read_table(f.path)
    rows = [{**r, "cost_usd": r["cost_usd"] * 2} for r in table.to_pylist()]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), f.path)
    assert queries.agent_calls(Catalog(str(root)))[0]["cost_usd"] == Decimal("1.5")


def land_named_chain(root: str) -> None:
    """A trace whose planner root span names its user, and a coder under it that does not."""
    trace, at = "a" * 31 + "7", T0 + timedelta(hours=5)
    common = {"tenant": "acme", "agent_version": "v1", "trace_id": trace}
    root_span = SpanEvent(
        event_id="named-chain-0", ts=at, span_id="a" * 16, agent="planner", name="plan", kind=SpanKind.AGENT,
        start=at - timedelta(seconds=3), end=at, attributes={"user.id": "named-user"}, **common,
    )  # fmt: skip
    call = UsageEvent(
        event_id="named-chain-1", ts=at, span_id="b" * 16, parent_span_id="a" * 16, agent="coder",
        provider="openai", model="gpt-4o", input_tokens=10, output_tokens=5, **common,
    )  # fmt: skip
    land_priced(
        Store(root),
        [PricedEvent(event=e, cost_usd=Decimal(c), priced=True, price_source="test")
         for e, c in ((root_span, "0"), (call, "9.5"))],
    "named-chain")  # fmt: skip


def test_an_agent_filter_reads_the_agents_stored_rows_and_equals_the_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trace_agent_totals: per trace and agent, written per agent most costly first in small
    # row groups. The list with an agent filter (no window) reads them: exactly the traces
    # and figures of that agent's raw events, whatever the page size, the users of the whole
    # trace, the other agents' row groups and the cheap ones skipped.
    monkeypatch.setattr(tracesum, "TOTALS_ROW_GROUP", 4)
    root = tmp_path / "wh"
    land_demo_warehouse(str(root), n_traces=120)
    land_midnight_traces(str(root))  # on two dates: merged, never cut by the floor
    land_named_chain(str(root))
    store = Store(str(root))
    compact(store)
    for f in store.files(tracesum.AGENT_TOTALS):
        rows = pq.read_table(f.path).to_pylist()
        keys = [(not r["shared"], r["agent"]) for r in rows]
        assert keys == sorted(keys), f.path  # shared first, then agent by agent
        for agent in {r["agent"] for r in rows}:
            costs = [r["cost_usd"] for r in rows if r["agent"] == agent and not r["shared"]]
            assert costs == sorted(costs, reverse=True), f.path
    bare = tmp_path / "bare"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns(*SUMMARIES))
    cats = (Catalog(str(root)), Catalog(str(bare)))
    for agent in ("planner", "coder", "critic"):
        truth = _raw_traces(cats[1], None, None, agent=agent)
        by_cost = sorted(truth, key=lambda t: (-truth[t]["cost_usd"], t))
        for limit in (1, 3, 40, 100_000):
            for tenant in (None, "acme"):
                listed = _same(queries.traces, cats, limit=limit, tenant=tenant, agent=agent)
                top = _same(queries.top_traces, cats, limit=limit, tenant=tenant, agent=agent)
                assert [r["trace_id"] for r in top] == [r["trace_id"] for r in listed][: len(top)]
                if tenant is None:
                    assert [r["trace_id"] for r in listed] == by_cost[:limit]
                    assert [r["cost_usd"] for r in listed] == [truth[t]["cost_usd"] for t in by_cost[:limit]]
                    assert [r["events"] for r in listed] == [truth[t]["events"] for t in by_cost[:limit]]
                    assert all(r["agents"] == [agent] for r in listed)
        for sort in queries.TRACE_SORTS:
            _same(queries.traces, cats, limit=7, agent=agent, sort=sort)
    coder = {r["trace_id"]: r for r in queries.traces(cats[0], agent="coder", limit=100_000)}
    assert coder["a" * 31 + "7"]["users"] == ["named-user"]  # named by the planner's span
    assert coder["a" * 31 + "7"]["cost_usd"] == Decimal("9.5") and coder[CROSS]["cost_usd"] == Decimal("1.5")
    plan = cats[0].query(
        "EXPLAIN ANALYZE SELECT trace_id FROM trace_agent_totals WHERE agent = 'critic' "
        "AND summarised AND NOT shared ORDER BY cost_usd DESC LIMIT 2"
    )
    text = "\n".join(str(v) for r in plan for v in r.values())
    scanned = [(int(a), int(b)) for a, b in re.findall(r"Row Groups Scanned: (\d+) / (\d+)", text)]
    assert scanned and all(read < total for read, total in scanned), text  # other agents skipped
    # Proof the stored rows are read: a copy whose coder row of a one-date trace says more answers so.
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    f = next(g for g in Store(str(copy)).files(tracesum.AGENT_TOTALS) if g.date == "2026-11-21")
    table = pq.read_table(f.path)
    rows = table.to_pylist()
    for r in rows:
        if r["trace_id"] == "a" * 31 + "7" and r["agent"] == "coder":
            r["cost_usd"] *= 3
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), f.path)
    altered = {r["trace_id"]: r for r in queries.traces(Catalog(str(copy)), agent="coder", limit=100_000)}
    assert altered["a" * 31 + "7"]["cost_usd"] == Decimal("28.5")
    # A warehouse compacted before these files existed: those dates from their parts, exact.
    older = tmp_path / "older"
    shutil.copytree(root, older, ignore=shutil.ignore_patterns(tracesum.AGENT_TOTALS))
    for agent in ("planner", "coder"):
        _same(queries.traces, (Catalog(str(older)), cats[1]), limit=100_000, agent=agent)
        _same(queries.top_traces, (Catalog(str(older)), cats[1]), limit=5, agent=agent)
