"""Seeded priced events with a known ground truth (tests and the benchmark's sink run).

Each trace is a small tree: an agent span at the root, one to three LLM calls under it (a
span and its usage event, priced with exact 12-decimal costs), a tool call and a quality
score. About one usage in twenty is for an unknown model (``priced=False``, cost 0) and one
trace in ten fails (its root span has status ``error``). No clock reads.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agentledger.events import (
    PricedEvent,
    QualityEvent,
    SpanEvent,
    SpanKind,
    SpanStatus,
    ToolCallEvent,
    UsageEvent,
)
from agentledger.wire import AnyEvent

T0 = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
TENANTS = ("acme", "globex")
AGENTS = ("planner", "coder", "critic")


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}".replace("0" * n, "1" * n)


def _ids(seed: int, trace: int) -> Iterator[str]:
    for j in range(1_000):
        yield f"syn-{seed}-{trace:07d}-{j:03d}"


def _priced(event: AnyEvent, cost: Decimal = Decimal(0), priced: bool = True) -> PricedEvent:
    return PricedEvent(event=event, cost_usd=cost, priced=priced, price_source="synthetic:1")


def traces(
    n_traces: int, seed: int = 11, t0: datetime = T0, hours: float = 48.0
) -> Iterator[list[PricedEvent]]:
    """``n_traces`` traces (lists of priced events), spread over ``hours`` from ``t0``."""
    rng = random.Random(seed)
    for i in range(n_traces):
        tenant, agent = rng.choice(TENANTS), rng.choice(AGENTS)
        start = t0 + timedelta(seconds=rng.uniform(0, hours * 3600))
        trace, root = _hex(rng, 32), _hex(rng, 16)
        common = {
            "tenant": tenant,
            "agent": agent,
            "agent_version": rng.choice(("v1", "v2")),
            "workflow": "research",
            "trace_id": trace,
        }
        ids = _ids(seed, i)
        out: list[PricedEvent] = []

        at = start
        for _ in range(rng.randint(1, 3)):
            span = _hex(rng, 16)
            end = at + timedelta(milliseconds=rng.randint(50, 3000))
            model, priced = ("gpt-4o", True) if rng.random() > 0.05 else ("mystery-1", False)
            out.append(_priced(SpanEvent(event_id=next(ids), ts=end, span_id=span, parent_span_id=root,
                                         name=f"chat {model}", kind=SpanKind.LLM, start=at, end=end,
                                         status=SpanStatus.OK, provider="openai", model=model, **common)))  # fmt: skip
            inp = rng.randint(100, 20_000)
            usage = UsageEvent(event_id=next(ids), ts=end, span_id=span, parent_span_id=root, provider="openai",
                               model=model, input_tokens=inp, output_tokens=rng.randint(1, 2_000),
                               cache_read_tokens=rng.randint(0, inp // 2), **common)  # fmt: skip
            cost = Decimal(rng.randint(1, 5 * 10**10)).scaleb(-12) if priced else Decimal(0)
            out.append(_priced(usage, cost, priced))
            at = end
        tool = ToolCallEvent(event_id=next(ids), ts=at, span_id=_hex(rng, 16), parent_span_id=root,
                             tool="web_search", args_hash=_hex(rng, 16), **common)  # fmt: skip
        out.append(_priced(tool))
        status = SpanStatus.ERROR if rng.random() < 0.1 else SpanStatus.OK
        done = at + timedelta(milliseconds=5)
        out.append(_priced(SpanEvent(event_id=next(ids), ts=done, span_id=root, name=agent, kind=SpanKind.AGENT,
                                     start=start, end=done, status=status, **common)))  # fmt: skip
        out.append(_priced(QualityEvent(event_id=next(ids), ts=done, span_id=root, metric="faithfulness",
                                        score=round(rng.random(), 3), evaluator="judge", **common)))  # fmt: skip
        yield out


def priced_events(n_traces: int, seed: int = 11, t0: datetime = T0, hours: float = 48.0) -> list[PricedEvent]:
    """Every event of ``traces(...)`` in one list."""
    return [e for trace in traces(n_traces, seed, t0, hours) for e in trace]
