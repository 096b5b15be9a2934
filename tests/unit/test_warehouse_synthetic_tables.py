"""The vectorised synthetic generator (the benchmark's 10 M events) writes the rows the
per-event generator does: the same columns per event type, tree shape, value ranges and
shares, seeded."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from agentledger.warehouse import schema, synthetic
from agentledger.warehouse.rows import _convert


def _slow(n: int) -> pa.Table:
    items = []
    for i, trace in enumerate(synthetic.traces(n, seed=3)):
        for p in trace:
            item = p.model_dump(mode="json")
            item["event"]["attributes"] = {
                "user.id": f"user-{i % 500:04d}",
                "gen_ai.conversation.id": f"conv-{i // 4:07d}",
            }
            items.append(item)
    return _convert(items, 0, 0)


def _filled(table: pa.Table) -> dict[str, set[str]]:
    """Per event type, the columns that hold a value."""
    out: dict[str, set[str]] = {}
    for row in table.to_pylist():
        out.setdefault(row["type"], set()).update(k for k, v in row.items() if v is not None)
    return out


def test_same_columns_shape_and_shares_as_the_per_event_generator() -> None:
    n = 3_000
    fast = pa.concat_tables(synthetic.tables(n, seed=3, chunk=1_500))
    slow = _slow(n)
    assert fast.schema == schema.EVENTS
    assert _filled(fast) == _filled(slow)
    rows = fast.to_pylist()
    assert len({r["event_id"] for r in rows}) == len(rows)
    assert len({r["trace_id"] for r in rows}) == n
    # per trace: 1-3 LLM calls (span + usage), a tool call, the root span and a score
    per_trace = Counter(r["trace_id"] for r in rows)
    assert set(per_trace.values()) == {5, 7, 9}
    usage = [r for r in rows if r["type"] == "usage"]
    assert all(100 <= u["input_tokens"] <= 20_000 and 0 <= u["cache_read_tokens"] <= u["input_tokens"] // 2
               for u in usage)  # fmt: skip
    unpriced = [u for u in usage if not u["priced"]]
    assert all(u["model"] == "mystery-1" and u["cost_usd"] == 0 for u in unpriced)
    assert 0.03 < len(unpriced) / len(usage) < 0.07  # one in twenty
    assert all(0 < u["cost_usd"] <= 0.05 for u in usage if u["priced"])
    roots = [r for r in rows if r["type"] == "span" and r["kind"] == "agent"]
    assert 0.07 < sum(r["status"] == "error" for r in roots) / len(roots) < 0.13  # one in ten
    llm = [r for r in rows if r["type"] == "span" and r["kind"] == "llm"]
    assert all(50 <= (s["end"] - s["start"]).total_seconds() * 1000 <= 3000 for s in llm)
    for root in roots[:40]:  # the root spans its calls and ends 5 ms after the last
        mine = [r for r in rows if r["trace_id"] == root["trace_id"] and r["type"] != "quality"]
        assert root["start"] == min(r["start"] or r["ts"] for r in mine)
        assert (root["end"] - max(r["ts"] for r in mine if r is not root)).total_seconds() == 0.005
    assert fast.equals(pa.concat_tables(synthetic.tables(n, seed=3, chunk=1_500)))  # seeded
