"""The fast decoder on hand-picked inputs: valid envelopes go through msgspec, and every
refusal is decided and worded by the pydantic contract, with the raw event kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentledger.errors import ContractError
from agentledger.fastwire import decode_fast
from agentledger.samples import sample_events
from agentledger.wire import decode_envelope, decode_envelope_pydantic, encode_envelope

USAGE: dict[str, Any] = {
    "type": "usage", "event_id": "evt-00000001", "ts": "2026-03-01T12:00:00Z", "tenant": "acme",
    "agent": "planner", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
    "provider": "openai", "model": "gpt-4o", "input_tokens": 100, "output_tokens": 10,
}  # fmt: skip


def envelope(*events: dict[str, Any]) -> bytes:
    return json.dumps({"v": 1, "key": "acme/planner", "events": list(events)}).encode()


def test_sample_events_take_the_fast_path_and_equal_the_contract() -> None:
    events = sample_events(40)
    raw = encode_envelope("acme/planner", events)
    fast = decode_fast(raw)
    assert fast is not None and fast == ("acme/planner", events)
    assert [e.model_dump_json() for e in fast[1]] == [e.model_dump_json() for e in events]


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        (
            {"cache_read_tokens": 80, "cache_write_tokens": 30},
            "(root)",
            "cache_read_tokens + cache_write_tokens",
        ),
        ({"reasoning_tokens": 11}, "(root)", "reasoning_tokens exceed output_tokens"),
        ({"event_id": "evt-00000001\n"}, "event_id", "String should match pattern"),
        ({"trace_id": "0" * 32}, "trace_id", "not all zero"),
        ({"span_id": "00F067AA0BA902B7" + "0"}, "span_id", "16 lowercase hex"),
        ({"tenant": "ac/me"}, "tenant", "String should match pattern"),
        ({"agent": "plan\u200bner"}, "agent", "U+200B ZERO WIDTH SPACE"),
        ({"input_tokens": 100_000_001}, "input_tokens", "less than or equal to 100000000"),
        ({"input_tokens": 1.0}, "input_tokens", "valid integer"),
        ({"ts": "2026-03-01T12:00:00"}, "ts", "timezone info"),
        ({"attributes": {"k": "v" * 4097}}, "attributes.k", "at most 4096"),
        ({"attributes": {"k": 2**63}}, "attributes.k", "attribute integers are 64-bit"),
        ({"attributes": {"k": 10**400}}, "attributes.k", "attribute integers are 64-bit"),
        ({"bogus": 1}, "bogus", "Extra inputs are not permitted"),
    ],
)
def test_refusals_carry_the_contracts_reason_and_the_raw_event(
    change: dict[str, Any], field: str, needle: str
) -> None:
    bad = {**USAGE, "event_id": "evt-00000002", **change}
    raw = envelope(USAGE, bad)
    assert decode_fast(raw) is None
    got = decode_envelope(raw)
    assert [e.event_id for e in got.events] == ["evt-00000001"]
    [rej] = got.rejected
    assert rej.index == 1 and json.loads(rej.raw) == bad
    assert rej.reason.startswith(f"{field}: ") and needle in rej.reason, rej.reason
    assert got == decode_envelope_pydantic(raw)


def test_names_the_contract_normalises_are_decoded_by_the_contract() -> None:
    raw = envelope({**USAGE, "agent": "\uff30lanner"})  # fullwidth P: NFKC makes it "Planner"
    assert decode_fast(raw) is None
    assert decode_envelope(raw).events[0].agent == "Planner"


@pytest.mark.parametrize(
    "tail",
    [
        ', "tenant": "other"}',  # a duplicate key: the last one counts, as in the contract
        ', "attributes": {"a": 1, "a": "x"}}',
        ', "attributes": {"a": 9223372036854775807, "b": -9223372036854775808}}',  # int64's ends
        ', "attributes": {"a": 1e308}}',
        ', "reported_cost_usd": 0.10}',  # left to the contract: its Decimal comes from the float
    ],
)
def test_edge_inputs_decode_as_the_contract_does(tail: str) -> None:
    raw = envelope(USAGE)[:-3] + tail.encode() + b"]}"
    assert decode_envelope(raw) == decode_envelope_pydantic(raw)
    assert not decode_envelope(raw).rejected


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        b"[1,2]",
        b'{"v":2,"events":[]}',
        b'{"v":1}',
        b'{"v":1,"events":[{"type":"usage","x":"\\ud800"}]}',
    ],
)
def test_records_that_are_not_envelopes_get_the_contracts_error(raw: bytes) -> None:
    assert decode_fast(raw) is None
    with pytest.raises(ContractError) as fast:
        decode_envelope(raw)
    with pytest.raises(ContractError) as contract:
        decode_envelope_pydantic(raw)
    assert str(fast.value) == str(contract.value) and str(fast.value)


def test_times_beyond_microseconds_are_truncated_as_the_contract_does() -> None:
    raw = envelope({**USAGE, "ts": "2026-03-01T12:00:00.1234567Z"})
    assert decode_fast(raw) is None  # msgspec would round to .123457
    assert decode_envelope(raw).events[0].ts.microsecond == 123456


def test_models_built_by_the_fast_path_copy_like_validated_ones() -> None:
    events = sample_events(6)
    fast = decode_fast(encode_envelope("acme/planner", events))
    assert fast is not None
    first, *rest = fast[1]
    changed = first.model_copy(update={"agent": "other"})
    assert changed.agent == "other" and first.agent == events[0].agent
    assert rest == events[1:] and all(e.model_fields_set == set(type(e).model_fields) for e in rest)


def test_an_envelope_with_a_screen_verdict_goes_to_the_contract_and_keeps_every_event() -> None:
    screen = {**USAGE, "type": "screen", "event_id": "evt-00000002", "channel": "tool", "source": "web_search",
              "detector": "rules", "score": 0.9, "flagged": True, "action": "block"}  # fmt: skip
    for k in ("provider", "model", "input_tokens", "output_tokens"):
        screen.pop(k)
    raw = envelope(USAGE, screen)
    assert decode_fast(raw) is None  # no Struct for it: the contract decides
    decoded = decode_envelope(raw)
    assert [e.type for e in decoded.events] == ["usage", "screen"] and decoded.rejected == []
