"""The worker on a real broker: every rollup equals a seeded generator's own truth to the cent
(priced independently with genai_prices.calc_price), duplicates are not counted twice, the
priced topic carries every event and per-span direct / inclusive trace costs are right."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from _streams_harness import consume, envelopes, generate, produce, start_worker

from agentledger.wire import decode_priced


def test_rollups_equal_ground_truth(topics, tmp_path: Path) -> None:
    truth = generate(seed=42, traces=40)
    records = envelopes(truth.events, size=25)
    worker = start_worker(topics, tmp_path)
    try:
        produce(topics.bootstrap, topics.events, records + records[:3])  # 3 envelopes sent twice
        worker.wait_events(len(truth.events))
        stats = worker.wait_events(1, key="duplicates")
        assert stats["counters"]["events"] == len(truth.events)  # the copies were not counted
        assert stats["counters"].get("dlq", 0) == 0
        assert len(truth.cost) > 15  # tenants, agents, versions, workflows, traces, models
        for scope, cost in truth.cost.items():
            windows = worker.rollup(scope)
            for w in ("1h", "24h", "calendar_day", "calendar_month"):
                got = windows[w]
                assert Decimal(got["cost_usd"]) == cost, (scope, w)
                assert abs(Decimal(got["cost_usd"]) - cost) < Decimal("0.01")
                assert got["tokens"] == truth.tokens[scope], (scope, w)
                assert got["calls"] == truth.calls[scope], (scope, w)
            assert Decimal(windows["1m"]["cost_usd"]) <= cost  # rolling minute may have slid
        # per trace: direct cost per llm span; the agent root span's inclusive cost is the trace's
        for (tenant, trace), root in list(truth.roots.items())[:10]:
            spans = worker.trace(tenant, trace)
            assert Decimal(spans[root]["inclusive_usd"]) == truth.cost[f"trace/{tenant}/{trace}"]
            direct = sum(Decimal(s["direct_usd"]) for s in spans.values())
            assert direct == truth.cost[f"trace/{tenant}/{trace}"]
    finally:
        worker.kill()
    # the priced topic: every event (duplicates included at most once per copy), exact costs
    priced = {}
    for rec in consume(topics.bootstrap, topics.priced, timeout=3):
        _, events = decode_priced(rec.value)
        for pe in events:
            priced[pe.event.event_id] = pe
    assert set(priced) == {e.event_id for e in truth.events}
    for event_id, cost in truth.usage_cost.items():
        assert priced[event_id].cost_usd == cost and priced[event_id].priced
    assert all(
        pe.price_source.startswith("genai-prices:") for pe in priced.values() if pe.event.type == "usage"
    )
