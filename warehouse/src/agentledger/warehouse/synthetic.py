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
from typing import Any

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


def _digits(values: Any, width: int) -> Any:
    """Each of ``values`` (non-negative ints) as ``width`` ASCII decimal digits (n x width bytes)."""
    import numpy as np

    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + 48).astype(np.uint8)


def _hexes(rng: Any, n: int, width: int) -> Any:
    """``n`` random lowercase hex ids of ``width`` digits (n x width bytes, never all zeros)."""
    import numpy as np

    nibbles = rng.integers(0, 16, size=(n, width), dtype=np.uint8)
    nibbles[:, 0] |= 1  # never all zeros (an id of zeros is invalid in OTel)
    return np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]


def _strings(parts: list[Any], n: int) -> Any:
    """A pyarrow string array of ``n`` fixed-width strings, each the concatenation of ``parts``
    (bytes constants or n x w uint8 arrays), built without a Python object per row."""
    import numpy as np
    import pyarrow as pa

    cols = [
        np.broadcast_to(np.frombuffer(p, dtype=np.uint8), (n, len(p))) if isinstance(p, bytes) else p
        for p in parts
    ]
    data = np.ascontiguousarray(np.concatenate(cols, axis=1))
    width = data.shape[1]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data.reshape(-1)))


def _nulls_where(mask: Any, values: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


def _picodollars(units: Any) -> Any:
    """``decimal(28,12)`` dollars from non-negative integer units of 1e-12 (exact)."""
    import numpy as np
    import pyarrow as pa

    from agentledger.warehouse import schema

    words = np.zeros((len(units), 2), dtype=np.int64)
    words[:, 0] = units  # little-endian 128-bit unscaled value, high word 0
    return pa.Array.from_buffers(schema.USD, len(units), [None, pa.py_buffer(words.reshape(-1))])


def tables(
    n_traces: int,
    seed: int = 11,
    t0: datetime = T0,
    hours: float = 48.0,
    chunk: int = 200_000,
    users: int = 500,
    traces_per_conversation: int = 4,
) -> Iterator[Any]:
    """The ``events`` rows of ``n_traces`` traces shaped and distributed as ``traces(...)``
    yields them (same trees, counts, ranges and shares; a numpy generator, so not the same
    draws), ``chunk`` traces per Arrow table, vectorised: the benchmark's 10 M events in
    seconds. Every event carries trace ``i``'s ``user.id`` (``user-<i % users>``) and
    ``gen_ai.conversation.id`` (``conv-<i // traces_per_conversation>``) attributes."""
    import numpy as np
    import pyarrow as pa

    from agentledger.warehouse import schema

    rng = np.random.default_rng(seed)
    t0_us = int(t0.timestamp()) * 1_000_000 + t0.microsecond
    for first in range(0, n_traces, chunk):
        n = min(chunk, n_traces - first)
        idx = np.arange(first, first + n, dtype=np.int64)
        tenant = rng.integers(0, len(TENANTS), n)
        agent = rng.integers(0, len(AGENTS), n)
        version = rng.integers(0, 2, n)
        start = t0_us + (rng.random(n) * hours * 3600 * 1_000_000).astype(np.int64)
        trace_hex, root_hex = _hexes(rng, n, 32), _hexes(rng, n, 16)
        k = rng.integers(1, 4, n)  # LLM calls per trace
        per = 2 * k + 3  # events per trace: span and usage per call, tool, root, score
        total = int(per.sum())
        tr = np.repeat(np.arange(n), per)  # each event's trace (position in the chunk)
        first_event = np.concatenate(([0], np.cumsum(per)[:-1]))
        j = np.arange(total) - first_event[tr]  # position within the trace
        n_llm = int(k.sum())
        call_tr = np.repeat(np.arange(n), k)
        dur = rng.integers(50, 3001, n_llm) * 1000
        ends = np.cumsum(dur)
        before = np.concatenate(([0], ends[:-1]))
        trace_base = before[np.concatenate(([0], np.cumsum(k)[:-1]))][call_tr]
        call_start = start[call_tr] + before - trace_base
        call_end = start[call_tr] + ends - trace_base
        last_end = call_end[np.cumsum(k) - 1]
        mystery = rng.random(n_llm) <= 0.05
        inp = rng.integers(100, 20_001, n_llm)
        out = rng.integers(1, 2_001, n_llm)
        cache = (rng.random(n_llm) * (inp // 2 + 1)).astype(np.int64)
        cost = np.where(mystery, 0, rng.integers(1, 5 * 10**10 + 1, n_llm))
        call_span = _hexes(rng, n_llm, 16)
        tool_span, args_hash = _hexes(rng, n, 16), _hexes(rng, n, 16)
        failed = rng.random(n) < 0.1
        score = np.round(rng.random(n), 3)

        # event kinds by position: 0 span, 1 usage (pairs per call), then 2 tool, 3 root, 4 score
        kind = np.where(j < 2 * k[tr], j % 2, j - 2 * k[tr] + 2)
        is_call = kind <= 1
        first_call = np.concatenate(([0], np.cumsum(k)[:-1]))
        call = np.where(is_call, first_call[tr] + j // 2, 0)  # the call of a span/usage row
        done = last_end + 5000
        ts = np.select([is_call, kind == 2], [call_end[call], last_end[tr]], done[tr])

        def pick(options: list[str | None], which: Any) -> Any:
            string = pa.string()
            return pa.DictionaryArray.from_arrays(
                pa.array(which, pa.int32()), pa.array(options, string)
            ).cast(string)

        span_ids = np.select(
            [is_call[:, None], (kind == 2)[:, None]], [call_span[call], tool_span[tr]], root_hex[tr]
        )
        model = np.where(is_call, np.where(mystery[call], 1, 0), 2)
        span_row = (kind == 0) | (kind == 3)
        status = np.select([kind == 0, kind == 2, kind == 3], [0, 0, np.where(failed[tr], 1, 0)], 2)
        u = kind == 1
        cols: dict[str, Any] = {
            "event_id": _strings(
                [f"syn-{seed}-".encode(), _digits(first + tr, 7), b"-", _digits(j, 3)], total
            ),
            "ts": pa.array(ts, schema.TS),
            "tenant": pick(list(TENANTS), tenant[tr]),
            "agent": pick(list(AGENTS), agent[tr]),
            "agent_version": pick(["v1", "v2"], version[tr]),
            "workflow": pick(["research"], np.zeros(total, np.int32)),
            "trace_id": _strings([trace_hex[tr]], total),
            "span_id": _strings([span_ids], total),
            "parent_span_id": _nulls_where(kind >= 3, _strings([root_hex[tr]], total)),
            "attributes": _strings(
                [
                    b'{"user.id":"user-',
                    _digits(idx[tr] % users, 4),
                    b'","gen_ai.conversation.id":"conv-',
                    _digits(idx[tr] // traces_per_conversation, 7),
                    b'"}',
                ],
                total,
            ),
            "type": pick(
                ["span", "usage", "tool_call", "quality"], np.select([span_row, u, kind == 2], [0, 1, 2], 3)
            ),
            "name": pick(
                ["chat gpt-4o", "chat mystery-1", *AGENTS, None],
                np.select([kind == 0, kind == 3], [model, 2 + agent[tr]], 5),
            ),
            "kind": pick(["llm", "agent", None], np.select([kind == 0, kind == 3], [0, 1], 2)),
            "start": pa.array(np.where(kind == 0, call_start[call], start[tr]), schema.TS, mask=~span_row),
            "end": pa.array(np.where(kind == 0, call_end[call], done[tr]), schema.TS, mask=~span_row),
            "status": pick(["ok", "error", None], status),
            "provider": pick(["openai", None], np.where(is_call, 0, 1)),
            "model": pick(["gpt-4o", "mystery-1", None], model),
            "input_tokens": pa.array(inp[call], pa.int64(), mask=~u),
            "output_tokens": pa.array(out[call], pa.int64(), mask=~u),
            "cache_read_tokens": pa.array(cache[call], pa.int64(), mask=~u),
            "cache_write_tokens": pa.array(np.zeros(total, np.int64), mask=~u),
            "reasoning_tokens": pa.array(np.zeros(total, np.int64), mask=~u),
            "tool": pick(["web_search", None], np.where(kind == 2, 0, 1)),
            "args_hash": _nulls_where(kind != 2, _strings([args_hash[tr]], total)),
            "metric": pick(["faithfulness", None], np.where(kind == 4, 0, 1)),
            "score": pa.array(score[tr], pa.float64(), mask=kind != 4),
            "evaluator": pick(["judge", None], np.where(kind == 4, 0, 1)),
            "cost_usd": _picodollars(np.where(u, cost[call], 0)),
            "priced": pa.array(~(u & mystery[call])),
            "price_source": pick(["synthetic:1"], np.zeros(total, np.int32)),
            "source_partition": pa.array(np.zeros(total, np.int32)),
            "source_offset": pa.array(np.full(total, first // chunk, np.int64)),
        }
        yield pa.Table.from_arrays(
            [cols.get(f.name, pa.nulls(total, f.type)) for f in schema.EVENTS], schema=schema.EVENTS
        )
