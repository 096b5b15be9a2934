"""The priced records of one envelope that mixes what the worker writes differently per event:
a priced call, a call of a model nobody prices, a late call, a call stamped in the future and a
span. Each priced event must carry its own cost, flag, source and time flag (the worker builds
the bytes after the cost once per (priced, source, time flag) within a record: issue #15)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agentledger.events import SpanEvent, UsageEvent
from agentledger.streams.worker.processor import MemoryStore, Processor
from agentledger.wire import decode_priced, encode_envelope_dicts

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def call(
    event_id: str, model: str = "gpt-4o", ts: datetime = NOW, tokens: int = 1_000_000
) -> dict[str, object]:
    return UsageEvent(event_id=event_id, ts=ts, tenant="acme", agent="planner", trace_id="a" * 32, span_id="b" * 16,
                      provider="openai", model=model, input_tokens=tokens,
                      output_tokens=0).model_dump(mode="json")  # fmt: skip


def test_each_priced_event_carries_its_own_cost_source_and_time_flag() -> None:
    span = SpanEvent(event_id="span-0001", ts=NOW, tenant="acme", agent="planner", trace_id="a" * 32,
                     span_id="c" * 16, name="chat", kind="llm", start=NOW, end=NOW)  # fmt: skip
    items = [
        call("call-0001"),
        call("call-0002", model="no-such-model-xyz"),
        call("call-0003", ts=NOW - timedelta(hours=2), tokens=2_000_000),
        span.model_dump(mode="json"),
        call("call-0004", ts=NOW + timedelta(hours=1), tokens=3_000_000),
        call("call-0005", model="no-such-model-xyz", ts=NOW - timedelta(hours=2)),
        call("call-0006", tokens=4_000_000),
    ]
    p = Processor(MemoryStore())
    out = p.process(encode_envelope_dicts("acme/planner", items), b"acme/planner", 0, 1, NOW.timestamp())
    got = {
        pe.event.event_id: (
            pe.cost_usd,
            pe.priced,
            pe.price_source.split(":")[0],
            pe.time_flag,
            pe.received_ts,
        )
        for _, v in out.priced
        for pe in decode_priced(v)[1]
    }
    assert got == {
        "call-0001": (Decimal("2.5"), True, got["call-0001"][2], None, NOW),
        "call-0002": (Decimal(0), False, "unknown", None, NOW),
        "call-0003": (Decimal("5.0"), True, got["call-0001"][2], "late", NOW),
        "span-0001": (Decimal(0), True, "n/a", None, NOW),
        "call-0004": (Decimal("7.5"), True, got["call-0001"][2], "clock_skew", NOW),
        "call-0005": (Decimal(0), False, "unknown", "late", NOW),
        "call-0006": (Decimal("10.0"), True, got["call-0001"][2], None, NOW),
    }
    assert got["call-0001"][2] not in ("unknown", "n/a")
    assert p.counters["unpriced"] == 2 and p.counters["late"] == 2 and p.counters["clock_skew"] == 1


def test_the_priced_envelope_carries_each_event_as_the_client_sent_it_unless_a_default_was_left_out() -> None:
    """An event whose every stored field is present is forwarded as its own bytes (here in
    reversed field order, with spaces): the worker does not serialise it again. One that
    leaves out a default (``cache_read_tokens``, a span's ``status``) is written with the
    default filled in, as the warehouse must store it. Both read back as the events sent."""
    whole = dict(reversed(list(call("call-0001").items())))
    short_call = {k: v for k, v in call("call-0002").items() if k != "cache_read_tokens"}
    span = SpanEvent(event_id="span-0001", ts=NOW, tenant="acme", agent="planner", trace_id="a" * 32,
                     span_id="c" * 16, name="chat", kind="llm", start=NOW, end=NOW).model_dump(mode="json")  # fmt: skip
    short_span = {k: v for k, v in span.items() if k != "status"}
    sent = [json.dumps(e).encode() for e in (whole, short_call, short_span)]
    raw = b'{"v": 1, "key": "acme/planner", "events": [' + b", ".join(sent) + b"]}"
    out = Processor(MemoryStore()).process(raw, b"acme/planner", 0, 1, NOW.timestamp())
    (_, value), *more = out.priced
    assert more == []
    assert b'{"event":' + sent[0] + b',"cost_usd":' in value
    assert sent[1] not in value and sent[2] not in value
    events = [pe.event for pe in decode_priced(value)[1]]
    assert [e.model_dump(mode="json") for e in events] == [call("call-0001"), call("call-0002"), span]
    short = [item["event"] for item in json.loads(value)["events"][1:]]  # as the sink reads them
    assert short[0]["cache_read_tokens"] == 0 and short[1]["status"] == "unset"
