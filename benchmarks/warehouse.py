"""Warehouse benchmark: the sink end to end from Kafka, and the named queries on N events.

    .venv/bin/python benchmarks/warehouse.py [--quick] [--json PATH]

Part 1 produces synthetic priced envelopes to a real broker (its own, unless
AGENTLEDGER_KAFKA_BOOTSTRAP is set), runs the sink until every event is in Parquet and
committed, and writes the same rows with pyarrow directly as the anchor. Part 2 writes N
events (10 million in the full run) straight to Parquet in the sink's layout and schema,
times one query on the fresh files (every id deduplicated), compacts them (the steady
state: one file per date, no repeated id) and times the named queries through the DuckDB
views against the same query in pandas (read the same columns, drop duplicate ids, group)
as the anchor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from agentledger.warehouse import queries as q
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.compact import compact
from agentledger.warehouse.schema import EVENTS, USD
from agentledger.warehouse.sink import Sink, SinkConfig
from agentledger.warehouse.storage import Store
from agentledger.wire import record_timestamp_ms

AGENTS = [f"agent-{i:02d}" for i in range(40)]
TENANTS = [f"tenant-{i}" for i in range(8)]
ENVELOPE = 500


# --- part 1: the sink, end to end -------------------------------------------------------


def _envelopes(n_events: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """Priced envelopes as bytes (JSON built directly: pydantic would dominate the set-up)."""
    rng = np.random.default_rng(seed)
    out = []
    base = 1_763_985_600  # 2025-11-24T12:00:00Z
    for start in range(0, n_events, ENVELOPE):
        tenant, agent = TENANTS[int(rng.integers(8))], AGENTS[int(rng.integers(40))]
        events = []
        for i in range(start, min(start + ENVELOPE, n_events)):
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + i // 50)) + ".250000Z"
            common = {
                "v": 1, "event_id": f"bench-{i:010d}", "ts": ts, "tenant": tenant, "agent": agent,
                "agent_version": "v1", "workflow": "wf", "trace_id": f"{i // 20 + 1:032x}",
                "span_id": f"{i + 1:016x}", "parent_span_id": f"{i // 20 + 1:016x}", "attributes": {},
            }  # fmt: skip
            if i % 2:
                event = {**common, "type": "usage", "provider": "openai", "model": "gpt-4o",
                         "input_tokens": 1200, "output_tokens": 300, "cache_read_tokens": 200,
                         "cache_write_tokens": 0, "reasoning_tokens": 0, "reported_cost_usd": None}  # fmt: skip
                cost = f"0.{int(rng.integers(10**11, 10**12)):012d}"
            else:
                event = {**common, "type": "span", "name": "chat", "kind": "llm", "start": ts, "end": ts,
                         "status": "ok", "error_type": None, "provider": "openai", "model": "gpt-4o"}  # fmt: skip
                cost = "0"
            events.append({"event": event, "cost_usd": cost, "priced": True, "price_source": "bench"})
        key = f"{tenant}/{agent}"
        out.append((key.encode(), orjson.dumps({"v": 1, "key": key, "events": events})))
    return out


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        now = int(time.time() * 1000)
        futures = [
            await producer.send(topic, v, key=k, timestamp_ms=record_timestamp_ms(now, now))
            for k, v in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _run_sink(bootstrap: str, prefix: str, root: str, n_events: int) -> tuple[float, float, Sink]:
    """Run the sink until all ``n_events`` rows are written; (seconds from the first record,
    seconds from start-up including the group join, the sink)."""
    config = SinkConfig(bootstrap, root, prefix=prefix, group_id="bench", batch_rows=100_000, batch_seconds=1)
    sink = Sink(config)
    stop = asyncio.Event()
    first: list[float] = []

    async def watch() -> None:
        while sink.stats.rows < n_events:
            if not first and sink.stats.records:
                first.append(time.perf_counter())
            await asyncio.sleep(0.01)
        stop.set()

    started = time.perf_counter()
    watcher = asyncio.create_task(watch())
    await sink.run(stop=stop, max_seconds=600)
    watcher.cancel()
    done = time.perf_counter()
    return done - (first[0] if first else started), done - started, sink


def bench_sink(bootstrap: str, n_events: int, workdir: Path) -> dict[str, float]:
    from agentledger.admin import create_topics
    from agentledger.topics import PRICED

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    asyncio.run(create_topics(bootstrap, prefix=prefix))
    records = _envelopes(n_events)
    asyncio.run(_produce(bootstrap, prefix + PRICED.name, records))
    root = str(workdir / "sink")
    secs, wall, sink = asyncio.run(_run_sink(bootstrap, prefix, root, n_events))
    store = Store(root)
    table = pa.concat_tables([store.read(f.path) for f in store.files("events")])
    assert table.num_rows == n_events, (table.num_rows, n_events)
    t = time.perf_counter()
    pq.write_table(table, str(workdir / "direct.parquet"), compression="zstd", row_group_size=1_000_000)
    direct = time.perf_counter() - t
    return {
        "sink_events": n_events,
        "sink_events_per_s": n_events / secs,
        "sink_wall_s": wall,
        "sink_files": sink.stats.files,
        "pyarrow_write_rows_per_s": n_events / direct,
    }


# --- part 2: the queries on N events ----------------------------------------------------


def _micro_usd(values: np.ndarray) -> pa.Array:
    """Exact decimals from integer millionths of a dollar."""
    import pyarrow.compute as pc

    whole = pa.array(values, pa.int32()).cast(USD)
    return pc.multiply(whole, pa.scalar(Decimal("0.000001"), pa.decimal128(7, 6))).cast(USD)


def _day_table(rng: np.random.Generator, day: int, start: int, n: int) -> pa.Table:
    """``n`` events of one day in the sink's schema: half usage (priced), half spans."""
    idx = np.arange(start, start + n)
    usage = idx % 2 == 1
    day0 = np.datetime64("2026-11-01") + np.timedelta64(day, "D")
    ts = day0 + rng.integers(0, 86_400_000_000, n).astype("timedelta64[us]")
    cost_micro = np.where(usage, rng.integers(1, 50_000, n), 0)  # up to 5 cents, in 1e-6 USD
    tokens = np.where(usage, rng.integers(100, 20_000, n), 0)
    trace = idx // 20  # a trace is 20 events of one tenant's agent (one version)
    cols: dict[str, pa.Array] = {
        "event_id": pa.array(np.char.add("ev-", idx.astype(str))),
        "ts": pa.array(ts, EVENTS.field("ts").type),
        "tenant": pa.array(np.array(TENANTS)[trace % len(TENANTS)]),
        "agent": pa.array(np.array(AGENTS)[(trace * 7919) % len(AGENTS)]),
        "agent_version": pa.array(np.where((trace // 3) % 2 == 0, "v1", "v2")),
        "trace_id": pa.array(np.char.zfill((idx // 20).astype(str), 32)),
        "type": pa.array(np.where(usage, "usage", "span")),
        "provider": pa.array(np.full(n, "openai")),
        "model": pa.array(np.full(n, "gpt-4o")),
        "status": pa.array(
            np.where(usage, None, np.where((idx % 20 == 0) & (rng.random(n) < 0.1), "error", "ok"))
        ),
        "input_tokens": pa.array(np.where(usage, tokens, 0), mask=~usage),
        "output_tokens": pa.array(np.where(usage, tokens // 5, 0), mask=~usage),
        "cache_read_tokens": pa.array(np.where(usage, tokens // 4, 0), mask=~usage),
        "cost_usd": _micro_usd(cost_micro.astype("int32")),
        "priced": pa.array(np.ones(n, dtype=bool)),
    }
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in EVENTS]
    return pa.Table.from_arrays(arrays, schema=EVENTS)


def write_events(root: str, n: int, days: int = 10, files_per_day: int = 4) -> None:
    rng = np.random.default_rng(7)
    store = Store(root)
    per_file = n // (days * files_per_day)
    start = 0
    for day in range(days):
        for f in range(files_per_day):
            table = _day_table(rng, day, start, per_file)
            store.write("events", f"2026-11-{day + 1:02d}", f"p{f}-{start:012d}", table)
            start += per_file


def _timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    fn()  # warm: file listing, footers
    return statistics.median(_once(fn) for _ in range(repeat))


def _once(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def pandas_cost_by_agent_day(root: str) -> Any:
    import pandas as pd

    df = pd.read_parquet(f"{root}/events", columns=["event_id", "tenant", "agent", "ts", "cost_usd"])
    df = df.drop_duplicates("event_id")
    df["day"] = df["ts"].dt.date
    return df.groupby(["tenant", "agent", "day"])["cost_usd"].sum()


def bench_queries(n: int, workdir: Path) -> dict[str, float]:
    root = str(workdir / "wh")
    t = time.perf_counter()
    write_events(root, n)
    out: dict[str, float] = {"query_events": n, "generate_s": time.perf_counter() - t}
    cat = Catalog(root)
    # Fresh files (as the sink leaves them) pay the dedupe on every id...
    out["query_ms_cost_by_agent_day_uncompacted"] = _timed(lambda: q.cost_by_agent_day(cat), repeat=1)
    t = time.perf_counter()
    compact(Store(root))  # ...compacted dates (the steady state) need none.
    out["compact_rows_per_s"] = n / (time.perf_counter() - t)
    total = cat.query("SELECT count(*) AS n FROM events")[0]["n"]
    assert total == n, (total, n)
    named: dict[str, Callable[[], Any]] = {
        "cost_by_agent_day": lambda: q.cost_by_agent_day(cat),
        "top_traces": lambda: q.top_traces(cat, limit=20),
        "cost_per_successful_task": lambda: q.cost_per_successful_task(cat),
        "token_efficiency": lambda: q.token_efficiency(cat),
        "unpriced_usage": lambda: q.unpriced_usage(cat),
        "costs_by_model_day": lambda: q.costs(cat, group_by=["model"], bucket="day"),
        "agents": lambda: q.agents(cat),
        "budget_utilisation": lambda: q.budget_utilisation(cat, daily_limit_usd=Decimal(100)),
        "provider_health": lambda: q.provider_health(cat),
        "trace_tree": lambda: q.trace_tree(cat, trace_id=f"{12345:032d}"),
        "quality_series": lambda: q.quality_series(cat, agent=AGENTS[0], metric="faithfulness"),
        "commands": lambda: q.commands(cat, tenant=TENANTS[0]),
    }
    for name, fn in named.items():
        out[f"query_ms_{name}"] = _timed(fn)
    out["pandas_ms_cost_by_agent_day"] = _timed(lambda: pandas_cost_by_agent_day(root), repeat=1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (CI: checks it works)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--events", type=int, help="events for the query part (default 10M, quick 200k)")
    parser.add_argument("--sink-events", type=int, help="events through the sink (default 1M, quick 30k)")
    args = parser.parse_args(argv)
    n_query = args.events or (200_000 if args.quick else 10_000_000)
    n_sink = args.sink_events or (30_000 if args.quick else 1_000_000)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="al-bench-wh-") as tmp:
        work = Path(tmp)
        bootstrap = os.environ.get("AGENTLEDGER_KAFKA_BOOTSTRAP")
        local = None
        if not bootstrap:
            from agentledger.localkafka import LocalKafka

            local = LocalKafka(work / "kafka")
            bootstrap = local.up().bootstrap
        try:
            results.update(bench_sink(bootstrap, n_sink, work))
        finally:
            if local is not None:
                local.down()
        results.update(bench_queries(n_query, work))
    _report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True))
    return 0


def _report(r: dict[str, float]) -> None:
    rows = [
        (f"sink events/s ({r['sink_events']:,.0f} events)", r["sink_events_per_s"], "pyarrow write rows/s",
         r["pyarrow_write_rows_per_s"]),
        (f"cost_by_agent_day ms ({r['query_events']:,.0f} events)", r["query_ms_cost_by_agent_day"],
         "pandas ms", r["pandas_ms_cost_by_agent_day"]),
    ]  # fmt: skip
    print(f"{'figure':<48} {'value':>12}   {'anchor':<22} {'anchor value':>12}  ratio")
    for name, value, anchor, anchor_value in rows:
        print(f"{name:<48} {value:>12,.1f}   {anchor:<22} {anchor_value:>12,.1f}  {anchor_value / value:>5.1f}x"
              if "ms" in name else
              f"{name:<48} {value:>12,.0f}   {anchor:<22} {anchor_value:>12,.0f}  {value / anchor_value:>5.2f}")  # fmt: skip
    for key in sorted(k for k in r if k.startswith("query_ms_") and k != "query_ms_cost_by_agent_day"):
        print(f"{key[9:] + ' ms':<48} {r[key]:>12,.1f}")
    print(f"{'sink wall s (incl. group join)':<48} {r['sink_wall_s']:>12,.1f}")
    print(f"{'compact rows/s':<48} {r['compact_rows_per_s']:>12,.0f}")


if __name__ == "__main__":
    sys.exit(main())
