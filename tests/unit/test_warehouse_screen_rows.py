"""A ``screen`` verdict lands in the warehouse's events table with its own columns, through
both the per-record and the batched (Arrow JSON) paths."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from agentledger.events import PricedEvent, ScreenEvent
from agentledger.warehouse.rows import EventBuffer
from agentledger.wire import encode_envelope

VERDICT = ScreenEvent(
    event_id="scr-00000001", ts=datetime(2026, 11, 29, 12, 0, tzinfo=UTC), tenant="acme", agent="writer",
    trace_id="a" * 32, span_id="b" * 16, channel="agent", source="researcher", detector="rules-v1",
    score=0.96, flagged=True, action="block", reasons="hidden_markup,override", text_sha256="c" * 64,
)  # fmt: skip
PRICED = PricedEvent(event=VERDICT, cost_usd=Decimal(0), priced=True, price_source="n/a")


def _check(row: dict[str, object]) -> None:
    assert row["type"] == "screen" and row["agent"] == "writer"
    assert (row["channel"], row["source"], row["action"]) == ("agent", "researcher", "block")
    assert row["flagged"] is True and row["score"] == 0.96 and row["detector"] == "rules-v1"
    assert row["reasons"] == "hidden_markup,override" and row["text_sha256"] == "c" * 64
    assert row["excerpt"] is None and row["cost_usd"] == Decimal(0)


def test_a_screen_verdict_lands_with_its_columns() -> None:
    buf = EventBuffer()
    assert buf.add_priced(encode_envelope(VERDICT.key, [PRICED]), partition=0, offset=7) == 1
    _check(buf.to_table().to_pylist()[0])


def test_a_screen_verdict_lands_through_the_batched_path() -> None:
    buf = EventBuffer()
    left = buf.add_many([(encode_envelope(VERDICT.key, [PRICED]), 3)], partition=0)
    assert left == []
    _check(buf.to_table().to_pylist()[0])
