"""Envelopes: per-event validation, one bad event rejected alone with its reason."""

from __future__ import annotations

import itertools
import json

import pytest

from agentledger.errors import ContractError
from agentledger.events import PricedEvent
from agentledger.samples import sample_events
from agentledger.wire import decode_envelope, decode_priced, encode_envelope, parse_event


def test_envelope_round_trip() -> None:
    events = sample_events(8)
    decoded = decode_envelope(encode_envelope("acme/planner", events))
    assert decoded.key == "acme/planner"
    assert decoded.events == events and decoded.rejected == []


def test_one_bad_event_is_rejected_alone() -> None:
    events = sample_events(4)
    doc = json.loads(encode_envelope("acme/planner", events))
    doc["events"][1]["input_tokens"] = -5
    decoded = decode_envelope(json.dumps(doc).encode())
    assert [e.event_id for e in decoded.events] == [
        events[0].event_id,
        events[2].event_id,
        events[3].event_id,
    ]
    assert len(decoded.rejected) == 1
    bad = decoded.rejected[0]
    assert bad.index == 1 and "input_tokens" in bad.reason
    assert json.loads(bad.raw)["input_tokens"] == -5  # the raw event is kept


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"v":2,"events":[]}', "version"),
        (b'{"v":1}', "events"),
    ],
)
def test_records_that_are_not_envelopes(raw: bytes, needle: str) -> None:
    with pytest.raises(ContractError, match=needle):
        decode_envelope(raw)


def test_parse_event_names_fields() -> None:
    with pytest.raises(ContractError) as info:
        parse_event({"type": "usage", "event_id": "x"})
    fields = {loc for loc, _ in info.value.problems}
    assert {"event_id", "ts", "tenant", "provider", "input_tokens"} <= fields


def test_priced_envelope_round_trip() -> None:
    ev = sample_events(2)[1]
    priced = [PricedEvent(event=ev, cost_usd="0.0123", priced=True, price_source="test")]
    key, back = decode_priced(encode_envelope(ev.key, priced))
    assert key == ev.key and back == priced


def test_record_timestamp_is_clamped_to_what_the_broker_accepts() -> None:
    from agentledger.wire import MAX_FUTURE_MS, MAX_PAST_MS, record_timestamp_ms

    now = 1_800_000_000_000
    assert record_timestamp_ms(now - 1000, now) == now - 1000
    assert record_timestamp_ms(now + 3_600_000, now) == now + MAX_FUTURE_MS
    assert record_timestamp_ms(0, now) == now - MAX_PAST_MS


def test_split_encoded_fits_every_piece_and_keeps_order() -> None:
    from agentledger.wire import split_encoded

    events = sample_events(300)
    whole = encode_envelope("acme/planner", events)
    limit = len(whole) // 4
    pieces = split_encoded("acme/planner", events, limit)
    assert len(pieces) >= 4
    assert all(len(p.value) <= limit for p in pieces)
    got = [e for p in pieces for e in decode_envelope(p.value).events]
    assert got == events  # every event once, in order
    starts = [p.first for p in pieces]
    assert starts[0] == 0 and all(a.first + a.count == b.first for a, b in itertools.pairwise(pieces))
    assert split_encoded("acme/planner", events, len(whole))[0].value == whole  # fits: one piece


def test_split_encoded_caps_events_per_envelope() -> None:
    from agentledger.wire import split_encoded

    pieces = split_encoded("acme/planner", sample_events(25), 10_000_000, max_events=10)
    assert [p.count for p in pieces] == [10, 10, 5]


def test_split_encoded_names_an_event_that_fits_nowhere() -> None:
    from agentledger.wire import EventTooLargeError, split_encoded

    events = sample_events(5)
    big = events[3].model_copy(update={"attributes": {"note": "x" * 5000}})
    events[3] = big
    with pytest.raises(EventTooLargeError) as info:
        split_encoded("acme/planner", events, 3000)
    assert info.value.index == 3 and info.value.size > 5000
