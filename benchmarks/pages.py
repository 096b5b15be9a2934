"""Dashboard pages on a large warehouse: each page's queries, timed, on N synthetic events.

    .venv/bin/python benchmarks/pages.py [--events N] [--root DIR] [--repeat R] [--json PATH]

Builds a warehouse of N events (10 million by default) from the seeded, vectorised synthetic
generator (``agentledger.warehouse.synthetic.tables``: trace trees with spans, usage, tool calls, quality
scores, each trace tagged with a user and a conversation), compacts it (one file per date,
the steady state), then builds every dashboard page (``agentledger.dashboards.pagedata``)
R times over the whole run and over one agent, and reports the median page time, the
median time its queries took together, and its slowest query. The anchors, measured in the same run: a plain ``count(*)`` of
the events, and a scan that reads them (spend and distinct traces per agent). ``--root`` keeps the warehouse (built once, reused by later runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from agentledger.dashboards import pagedata
from agentledger.warehouse import synthetic
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.compact import compact
from agentledger.warehouse.reader import P, Query, Row, WarehouseReader
from agentledger.warehouse.storage import Store, split_by_day

EVENTS_PER_TRACE = 7.0  # the generator's mean (1-3 LLM calls of 2 events, tool, root, score)
CHUNK_TRACES = 200_000


class TimedReader(WarehouseReader):
    """A reader that records how long each named query took (milliseconds, by name)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.times: dict[str, list[float]] = defaultdict(list)
        self.spent = 0.0  # milliseconds in queries since the last reset

    def rows(self, query: Query[P], /, *args: P.args, **kwargs: P.kwargs) -> list[Row]:
        t = time.perf_counter()
        try:
            return super().rows(query, *args, **kwargs)
        finally:
            ms = (time.perf_counter() - t) * 1000
            self.times[query.__name__].append(ms)
            self.spent += ms


def build(root: str, n_events: int, then_compact: bool = True) -> dict[str, float]:
    """Write about ``n_events`` synthetic events to ``root`` (sink layout: files per chunk and
    UTC date), then compact them with the product's ``compact`` (rollups, trace summaries)."""
    store = Store(root)
    n_traces = max(1, int(n_events / EVENTS_PER_TRACE))
    t0 = time.perf_counter()
    written = 0
    for part, table in enumerate(synthetic.tables(n_traces, seed=3, hours=24.0 * 10, chunk=CHUNK_TRACES)):
        for day, rows in split_by_day(table):
            store.write("events", day, f"bench-{part:06d}", rows)
        written += table.num_rows
    generated = time.perf_counter() - t0
    t = time.perf_counter()
    if then_compact:
        compact(store)
    return {"events": written, "build_s": generated, "compact_s": time.perf_counter() - t}


def _median_ms(fn: Any, repeat: int) -> float:
    fn()  # warm: file listing, footers
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs)


PAGES = {
    "overview": pagedata.overview,
    "agent": pagedata.agent,
    "trace": pagedata.trace,
    "traces": pagedata.traces,
    "agent_chain": pagedata.agent_chain,
    "providers": pagedata.providers,
    "decisions": pagedata.timeline,
}


def time_pages(root: str, repeat: int) -> dict[str, Any]:
    cat = Catalog(root)
    out: dict[str, Any] = {
        "anchor_count_ms": _median_ms(lambda: cat.query("SELECT count(*) FROM events"), repeat),
        "anchor_events": cat.query("SELECT count(*) AS n FROM events")[0]["n"],
        # a scan that reads columns (count(*) alone is answered from the Parquet footers)
        "anchor_scan_ms": _median_ms(
            lambda: cat.query(
                "SELECT agent, sum(cost_usd), count(DISTINCT trace_id) FROM events GROUP BY agent"
            ),
            repeat,
        ),
        "pages": {},
    }
    views = {"run": pagedata.View(), "agent": pagedata.View(agent="planner")}
    for view_name, view in views.items():
        for name, page in PAGES.items():
            reader = TimedReader(root)
            src = pagedata.Sources(warehouse=reader, view=view)
            spent: list[float] = []

            def run(
                page: Any = page,
                src: pagedata.Sources = src,
                reader: TimedReader = reader,
                spent: list[float] = spent,
            ) -> None:
                reader.spent = 0.0
                page(src)
                spent.append(reader.spent)

            ms = _median_ms(run, repeat)
            slowest = max(reader.times.items(), key=lambda kv: statistics.median(kv[1]), default=("", [0.0]))
            out["pages"][f"{name} ({view_name})"] = {
                "page_ms": ms,
                "queries_ms": statistics.median(spent[1:] or spent),  # the warm-up run left out
                "slowest_query": slowest[0],
                "slowest_query_ms": statistics.median(slowest[1]),
                "queries": {k: statistics.median(v) for k, v in reader.times.items()},
                "notes": list(src.notes),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="events to build (default 10M)")
    parser.add_argument("--quick", action="store_true", help="20k events, 1 repeat (checks it works)")
    parser.add_argument("--root", type=Path, help="keep the warehouse here (reused when it has data)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per page (median)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.events
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="al-bench-pages-") as tmp:
        root = str(args.root or Path(tmp) / "wh")
        built: dict[str, float] = {}
        if not (Path(root) / "events").exists():
            built = build(root, n)
            print(f"built {built['events']:,} events in {built['build_s']:.0f} s, compacted in "
                  f"{built['compact_s']:.0f} s")  # fmt: skip
        else:  # a kept warehouse: write the rollups of dates compacted before they existed
            t = time.perf_counter()
            compact(Store(root))
            built["compact_s"] = time.perf_counter() - t
        results = {**built, **time_pages(root, repeat)}
    _report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    return 0


def _report(r: dict[str, Any]) -> None:
    anchor = r["anchor_scan_ms"]
    print(f"{r['anchor_events']:,} events; anchors: count(*) {r['anchor_count_ms']:,.1f} ms, "
          f"scan (spend and distinct traces per agent) {anchor:,.1f} ms")  # fmt: skip
    print(f"{'page (view)':<26} {'page ms':>9} {'queries ms':>11} {'x scan':>7}   slowest query (ms)")
    for name, p in r["pages"].items():
        print(f"{name:<26} {p['page_ms']:>9,.1f} {p['queries_ms']:>11,.1f} {p['queries_ms'] / anchor:>7.1f}   "
              f"{p['slowest_query']} ({p['slowest_query_ms']:,.1f})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
