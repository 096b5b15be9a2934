"""End to end: raw events -> the streams worker (prices) -> priced topic -> sink -> DuckDB.
Every total in the warehouse equals the streams' seeded ground truth (priced independently
with genai_prices.calc_price), to the cent and beyond; duplicates sent twice count once."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from _streams_harness import envelopes, generate, produce, start_worker

from agentledger.warehouse import queries as q
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.sink import Sink, SinkConfig


def test_warehouse_totals_equal_the_streams_ground_truth(topics: Any, tmp_path: Path) -> None:
    truth = generate(seed=7, traces=40)
    records = envelopes(truth.events, size=25)
    worker = start_worker(topics, tmp_path / "worker")
    try:
        produce(topics.bootstrap, topics.events, records + records[:4])  # 4 envelopes twice
        worker.wait_events(len(truth.events))
    finally:
        worker.kill()
    root = str(tmp_path / "wh")
    config = SinkConfig(topics.bootstrap, root, prefix=topics.prefix, group_id="wh-truth", batch_rows=100)
    asyncio.run(Sink(config).run(idle_seconds=3, max_seconds=90))
    cat = Catalog(root)
    n = cat.query("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events")[0]
    assert n == {"n": len(truth.events), "ids": len(truth.events)}

    def check(group_by: list[str], scope: str) -> None:
        rows = q.costs(cat, group_by=group_by)
        got = {f"{scope}/" + "/".join(r[g] for g in group_by): r["cost_usd"] for r in rows if None not in
               [r[g] for g in group_by]}  # fmt: skip
        want = {k: v for k, v in truth.cost.items() if k.startswith(scope + "/")}
        assert got == want, scope

    check(["tenant"], "tenant")
    check(["tenant", "agent"], "agent")
    check(["tenant", "agent", "agent_version"], "agent_version")
    check(["tenant", "workflow"], "workflow")
    check(["provider", "model"], "provider")
    for (tenant, trace), root_span in list(truth.roots.items())[:10]:
        tree = q.trace_tree(cat, trace, tenant=tenant)
        assert tree[0]["span_id"] == root_span
        assert tree[0]["inclusive_cost_usd"] == truth.cost[f"trace/{tenant}/{trace}"]
    usage = cat.query("SELECT event_id, cost_usd FROM events WHERE type = 'usage'")
    assert {r["event_id"]: r["cost_usd"] for r in usage} == truth.usage_cost
    total = sum(truth.usage_cost.values(), Decimal(0))
    assert q.costs(cat, group_by=[])[0]["cost_usd"] == total
