"""Deterministic sample events (tests, benchmarks, the smoke command). Seeded, no clock reads."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

from agentledger.events import (
    QualityEvent,
    SpanEvent,
    SpanKind,
    SpanStatus,
    ToolCallEvent,
    UsageEvent,
)
from agentledger.wire import AnyEvent

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n - 1)) + rng.choice("123456789abcdef")


def sample_events(
    n: int = 4, seed: int = 7, tenant: str = "acme", agent: str = "planner", t0: datetime = T0
) -> list[AnyEvent]:
    """``n`` events cycling span, usage, quality, tool_call, from ``t0`` on; all distinct ids."""
    rng = random.Random(seed)
    trace = _hex(rng, 32)
    root = _hex(rng, 16)
    out: list[AnyEvent] = []
    for i in range(n):
        ts = t0 + timedelta(milliseconds=10 * i)
        common = {
            "event_id": f"ev-{seed}-{i:08d}",
            "ts": ts,
            "tenant": tenant,
            "agent": agent,
            "agent_version": "v1",
            "workflow": "research",
            "trace_id": trace,
            "span_id": _hex(rng, 16),
            "parent_span_id": root,
        }
        kind = i % 4
        if kind == 0:
            out.append(SpanEvent(**common, name="chat gpt-4o", kind=SpanKind.LLM, start=ts - timedelta(milliseconds=500),
                                 end=ts, status=SpanStatus.OK, provider="openai", model="gpt-4o"))  # fmt: skip
        elif kind == 1:
            inp = rng.randint(100, 5000)
            out.append(UsageEvent(**common, provider="openai", model="gpt-4o", input_tokens=inp,
                                  output_tokens=rng.randint(10, 800), cache_read_tokens=inp // 4))  # fmt: skip
        elif kind == 2:
            out.append(
                QualityEvent(**common, metric="faithfulness", score=round(rng.random(), 3), evaluator="judge")
            )
        else:
            digest = hashlib.blake2b(f"search:{i % 3}".encode(), digest_size=8).hexdigest()
            out.append(ToolCallEvent(**common, tool="web_search", args_hash=digest))
    return out
