"""The msgspec fast path and the pydantic contract accept and reject exactly the same envelopes,
and what they accept is equal (``agentledger.fastwire``, docs/adr/0013).

Generated events mix valid values with the edges a decoder gets wrong: boundary lengths,
wrong types, extra and missing fields, NaN and infinities, huge integers, patterns that a
``$`` lets through with a trailing newline, upper-case ids, names that NFKC changes or that hold
control characters, lone surrogates, times in every shape, and bytes that are not UTF-8.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentledger.errors import ContractError
from agentledger.events import EVENT_ADAPTER, MAX_ATTRIBUTES
from agentledger.fastwire import FastEvent, decode_fast, decode_fast_raw, decode_fast_structs, model_of
from agentledger.warehouse.rows import EventBuffer
from agentledger.wire import (
    Decoded,
    decode_envelope,
    decode_envelope_pydantic,
    decode_envelope_structs,
    dump,
)

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ASCII_NAME = "abcXYZ09-_.:@ "
EDGE_CHARS = "/\t\n\x00\x7f\u00e9\ufb01\uff21\u200b\u202e\u2028\ud800\U0001f600 "


def text(alphabet: str, min_size: int = 0, max_size: int = 10) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(alphabet), min_size=min_size, max_size=max_size)


def lengths_around(alphabet: str, *bounds: int) -> st.SearchStrategy[str]:
    """Strings of exactly the boundary lengths and one either side."""
    sizes = sorted({max(0, b + d) for b in bounds for d in (-1, 0, 1)})
    return st.sampled_from(sizes).flatmap(lambda n: text(alphabet, n, n))


JUNK = st.sampled_from([None, True, False, 0, -1, 1.5, 2**64, 10**30, "", [], {}, "12"])


def name(lo: int = 1, hi: int = 128) -> st.SearchStrategy[Any]:
    return st.one_of(
        text(ASCII_NAME, lo, 12),
        lengths_around("ab", lo, hi),
        text(ASCII_NAME + EDGE_CHARS, 0, 8),
        st.just(" lead"),
        st.just("trail\n"),
        JUNK,
    )


def hex_id(n: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        text("0123456789abcdef", n, n),
        text("0123456789abcdefABCDEF", n, n),
        st.sampled_from(
            ["0" * n, "0" * (n - 1) + "1", "1" * (n - 1), "f" * (n + 1), "a" * n + "\n", "g" * n]
        ),
        JUNK,
    )


TIME = st.one_of(
    st.sampled_from(
        [
            "2026-03-01T12:00:00Z",
            "2026-03-01T12:00:00.5Z",
            "2026-03-01T12:00:00.123456Z",
            "2026-03-01T12:00:00.1234567Z",
            "2026-03-01T12:00:00.123456789+02:00",
            "2026-03-01T12:00:00+02:00",
            "2026-03-01T12:00:00-05:30",
            "2026-03-01T12:00:00+00:00",
            "2026-03-01T12:00:00-00:00",
            "2026-03-01t12:00:00z",
            "2026-03-01 12:00:00Z",
            "2026-03-01T12:00Z",
            "2026-03-01T12:00:00",
            "2026-03-01",
            "2026-03-01T23:59:60Z",
            "2026-02-30T12:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T12:00:00+2400",
            "2026-03-01T12:00:00+02",
            "1772366400",
            "",
        ]
    ),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    JUNK,
)

COUNT = st.one_of(
    st.integers(0, 2000),
    st.sampled_from([0, 100_000_000, 100_000_001, -1, 2**63, 2**64 + 1, 10**30]),
    st.sampled_from([1.0, True, "12", None, 1.5]),
)
FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.sampled_from([10**400, -(10**400), 1e308, 2**53 + 1]),
    JUNK,
)
ATTR_VALUE = st.one_of(
    text(ASCII_NAME, 0, 6),
    lengths_around("v", 4096),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from([None, [], {}, 10**400]),
)
ATTRIBUTES = st.one_of(
    st.dictionaries(text(ASCII_NAME, 1, 6), ATTR_VALUE, max_size=4),
    st.dictionaries(name(1, 128).filter(lambda k: isinstance(k, str)), ATTR_VALUE, max_size=3),
    st.integers(31, 33).map(lambda n: {f"k{i}": i for i in range(n)}),
    JUNK,
)

COMMON: dict[str, st.SearchStrategy[Any]] = {
    "v": st.sampled_from([1, 1, 1, 2, 1.0, True, "1"]),
    "event_id": st.one_of(
        text("abc019_-:.", 8, 20),
        lengths_around("e", 8, 64),
        st.sampled_from(["evt-0001\n", "evt 0001", "évt-0001"]),
    ),
    "ts": TIME,
    "tenant": name(),
    "agent": name(),
    "agent_version": st.one_of(st.none(), name(0, 64)),
    "workflow": st.one_of(st.none(), name()),
    "trace_id": hex_id(32),
    "span_id": hex_id(16),
    "parent_span_id": st.one_of(st.none(), hex_id(16)),
    "attributes": ATTRIBUTES,
}
SHORT_TEXT = st.one_of(text(ASCII_NAME + EDGE_CHARS, 0, 6), JUNK)
BY_TYPE: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "span": {
        "name": st.one_of(text(ASCII_NAME, 1, 8), lengths_around("n", 1, 256), SHORT_TEXT),
        "kind": st.sampled_from(["agent", "llm", "tool", "workflow", "LLM", "other", None]),
        "start": TIME,
        "end": TIME,
        "status": st.sampled_from(["ok", "error", "unset", "OK", None]),
        "error_type": st.one_of(st.none(), lengths_around("x", 256), SHORT_TEXT),
        "provider": st.one_of(st.none(), name(0, 64)),
        "model": st.one_of(st.none(), name(0, 128)),
    },
    "usage": {
        "provider": name(1, 64),
        "model": name(1, 128),
        "input_tokens": COUNT,
        "output_tokens": COUNT,
        "cache_read_tokens": COUNT,
        "cache_write_tokens": COUNT,
        "reasoning_tokens": COUNT,
        "reported_cost_usd": st.one_of(
            st.none(), st.sampled_from([0, 0.1, "0.10", -1, "1e-13", 1.5, "x", 10**30]), FLOAT
        ),
    },
    "quality": {
        "metric": st.one_of(text(ASCII_NAME, 1, 8), lengths_around("m", 1, 64), SHORT_TEXT),
        "score": FLOAT,
        "evaluator": st.one_of(st.none(), lengths_around("e", 64), SHORT_TEXT),
        "label": st.one_of(st.none(), lengths_around("l", 64)),
        "comment": st.one_of(st.none(), lengths_around("c", 1024)),
    },
    "tool_call": {
        "tool": name(1, 128),
        "args_hash": st.one_of(hex_id(16), hex_id(64), hex_id(65), text("0123456789abcdef", 15, 15)),
        "status": st.sampled_from(["ok", "error", "unset", None]),
    },
}
GOOD: dict[str, Any] = {
    "event_id": "evt-00000001",
    "ts": "2026-03-01T12:00:00Z",
    "tenant": "acme",
    "agent": "planner",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
}
GOOD_BY_TYPE: dict[str, dict[str, Any]] = {
    "span": {"name": "chat", "kind": "llm", "start": "2026-03-01T11:59:59Z", "end": "2026-03-01T12:00:00Z"},
    "usage": {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 5},
    "quality": {"metric": "faithfulness", "score": 0.5},
    "tool_call": {"tool": "search", "args_hash": "0123456789abcdef"},
}


@st.composite
def events(draw: st.DrawFn, mutations: int = 3) -> dict[str, Any]:
    """A valid event with up to ``mutations`` fields drawn from the edge strategies, some
    optional fields added, perhaps one missing, perhaps an extra one."""
    kind = draw(st.sampled_from([*BY_TYPE, "nope"]))
    fields = {**COMMON, **BY_TYPE.get(kind, {})}
    ev: dict[str, Any] = {"type": kind, **GOOD, **GOOD_BY_TYPE.get(kind, {})}
    for field in draw(st.lists(st.sampled_from(sorted(fields)), max_size=mutations)):
        ev[field] = draw(fields[field])
    if draw(st.integers(0, 9)) == 0 and len(ev) > 1:
        del ev[draw(st.sampled_from(sorted(ev)))]
    if draw(st.integers(0, 14)) == 0:
        ev["bogus"] = 1
    return ev


def envelope_bytes(evs: list[Any], key: Any = "acme/planner", latin1: bool = False) -> bytes:
    raw = json.dumps({"v": 1, "key": key, "events": evs}, allow_nan=True, ensure_ascii=not latin1)
    # ensure_ascii=False with latin-1 bytes gives invalid UTF-8 wherever a non-ASCII char sits
    return raw.encode("latin-1", errors="replace") if latin1 else raw.encode()


def outcome(decode: Any, raw: bytes) -> Any:
    try:
        d: Decoded = decode(raw)
    except ContractError as exc:
        return ("error", str(exc))
    return (
        d.key,
        [(type(e), e.model_dump(), e.model_dump_json()) for e in d.events],
        d.events,
        [(r.index, r.raw, r.reason) for r in d.rejected],
    )


def warehouse_rows(event_json: bytes) -> Any:
    """What the sink stores of one event priced with a fixed price, read by both of its
    paths (Arrow's JSON reader for batches, orjson per record)."""
    env = (
        b'{"v":1,"key":"acme/planner","events":[{"event":' + event_json + b',"cost_usd":"0.5","priced":true,'
        b'"price_source":"book","received_ts":"2026-03-01T12:00:01Z"}]}'
    )
    out: list[Any] = []
    for batch in (True, False):
        buf = EventBuffer()
        try:
            for value, _ in buf.add_many([(env, 7)], 0) if batch else [(env, 7)]:
                buf.add_priced(value, 0, 7)
        except ValueError as exc:  # the sink refuses it either way (an integer beyond a double's range)
            out.append(type(exc))
            continue
        out.append(buf.to_table().to_pylist())
    return out


def assert_raws_say_the_same(raw: bytes, fast: Any) -> None:
    """``decode_fast_raw``: the same verdict and events as ``decode_fast``; each event's bytes it
    hands on (to be forwarded in the priced envelope) are that event's own bytes, and every
    reader of the priced topic reads them as it reads the contract's serialisation: the
    health worker through the models, the warehouse sink through Arrow and orjson."""
    got = decode_fast_raw(raw)
    if fast is None:
        assert got is None
        return
    assert got is not None and got[0] == fast[0] and got[1] == fast[1]
    assert len(got[2]) == len(got[1])
    for ev, sent in zip(got[1], got[2], strict=True):
        if sent is None:
            continue
        assert sent in raw
        assert EVENT_ADAPTER.validate_json(sent) == ev
        assert warehouse_rows(sent) == warehouse_rows(dump(ev))


def struct_fields(s: FastEvent) -> dict[str, Any]:
    return {f: getattr(s, f) for f in s.__struct_fields__}


def assert_structs_say_the_same(raw: bytes, fast: Any) -> None:
    """``decode_fast_structs`` (the worker's stage one reads these, no model built per event):
    the same verdict, bytes and events as ``decode_fast_raw``; each Struct's every field holds
    the model's value, of the same type (enums as enum members, times in UTC), and its model
    (``model_of``) is the contract's."""
    got = decode_fast_structs(raw)
    if fast is None:
        assert got is None
        return
    full = decode_fast_raw(raw)
    assert got is not None and full is not None
    assert got[0] == full[0] and got[2] == full[2] and len(got[1]) == len(full[1])
    for s, ev in zip(got[1], full[1], strict=True):
        assert model_of(s) == ev
        for name, value in struct_fields(s).items():
            want = getattr(ev, name)
            assert value == want and type(value) is type(want), (name, value, want)


def decoded_as_models(raw: bytes) -> Decoded:
    """``decode_envelope_structs`` with its Structs turned into models (to compare outcomes)."""
    d = decode_envelope_structs(raw)
    return Decoded(d.key, [e if not hasattr(e, "__struct_fields__") else model_of(e) for e in d.events],  # type: ignore[arg-type]
                   d.rejected)  # fmt: skip


def assert_same(raw: bytes) -> None:
    want = outcome(decode_envelope_pydantic, raw)
    assert outcome(decode_envelope, raw) == want
    assert outcome(lambda b: decode_envelope(b, keep_raw=True), raw) == want
    assert outcome(decoded_as_models, raw) == want
    fast = decode_fast(raw)
    if fast is not None:  # the fast path accepted: the contract accepted every event, equal ones
        assert want[0] != "error" and want[3] == [], want
        assert fast[0] == want[0] and fast[1] == want[2]
        assert [e.model_dump_json() for e in fast[1]] == [m[2] for m in want[1]]
    assert_raws_say_the_same(raw, fast)
    assert_structs_say_the_same(raw, fast)


@SETTINGS
@given(st.lists(events(), min_size=0, max_size=4), st.sampled_from(["acme/planner", None, 5]))
def test_fast_and_contract_agree_on_generated_envelopes(evs: list[dict[str, Any]], key: Any) -> None:
    assert_same(envelope_bytes(evs, key))


@SETTINGS
@given(st.lists(events(mutations=1), min_size=1, max_size=3))
def test_fast_and_contract_agree_on_bytes_that_are_not_utf8(evs: list[dict[str, Any]]) -> None:
    assert_same(envelope_bytes(evs, latin1=True))


@SETTINGS
@given(events(mutations=2), st.sampled_from(['"', "]", "}", ",", "\\u", "x"]), st.integers(0, 400))
def test_fast_and_contract_agree_on_broken_json(ev: dict[str, Any], junk: str, at: int) -> None:
    raw = envelope_bytes([ev])
    assert_same(raw[:at] + junk.encode() + raw[at:])


VALID_TIME = st.builds(
    lambda d, off: d.replace(tzinfo=timezone(timedelta(minutes=off))).isoformat().replace("+00:00", "Z"),
    st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2999, 12, 30)),
    st.integers(-14 * 60, 14 * 60),
)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "ts": VALID_TIME,
    "tenant": text(ASCII_NAME.strip(), 1, 128),
    "agent": text(ASCII_NAME.strip() + "[]{}", 1, 20),
    "agent_version": st.one_of(st.none(), text(ASCII_NAME + "/", 0, 64)),
    "workflow": st.one_of(st.none(), text(ASCII_NAME.strip(), 1, 10)),
    "trace_id": text("0123456789abcdef", 31, 31).map(lambda s: s + "1"),
    "span_id": text("0123456789abcdef", 15, 15).map(lambda s: "a" + s),
    "parent_span_id": st.one_of(st.none(), text("0123456789abcdef", 15, 15).map(lambda s: "b" + s)),
    "attributes": st.dictionaries(
        text(ASCII_NAME + "/", 1, 128),
        st.one_of(
            text(ASCII_NAME, 0, 4096),
            st.integers(-(2**63), 2**63 - 1),  # OpenTelemetry's int64
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
        ),
        max_size=MAX_ATTRIBUTES,
    ),
}
VALID_BY_TYPE: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "span": {"name": text(ASCII_NAME + EDGE_CHARS.replace("\ud800", ""), 1, 256), "status": st.sampled_from(["ok", "error", "unset"]),
             "kind": st.sampled_from(["agent", "llm", "tool", "workflow"]), "provider": st.one_of(st.none(), text("ab/-", 0, 64)),
             "error_type": st.one_of(st.none(), text(ASCII_NAME + EDGE_CHARS.replace("\ud800", ""), 0, 256))},
    "usage": {"input_tokens": st.integers(5000, 100_000_000), "output_tokens": st.integers(5000, 100_000_000),
              "cache_read_tokens": st.integers(0, 2500), "cache_write_tokens": st.integers(0, 2500),
              "reasoning_tokens": st.integers(0, 5000), "model": text("ab/-.", 1, 128)},
    "quality": {"score": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53)),
                "comment": st.one_of(st.none(), text(ASCII_NAME + "\u00e9\n", 0, 1024))},
    "tool_call": {"args_hash": st.integers(16, 64).flatmap(lambda n: text("0123456789abcdef", n, n)),
                  "tool": text(ASCII_NAME + "/", 1, 128).filter(lambda t: t.strip() == t or True)},
}  # fmt: skip


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(BY_TYPE)))
    ev: dict[str, Any] = {"type": kind, **GOOD, **GOOD_BY_TYPE[kind]}
    for field, strategy in {**VALID, **VALID_BY_TYPE[kind]}.items():
        if field.endswith("put_tokens") or draw(st.booleans()):
            ev[field] = draw(strategy)
    if kind == "span":
        ev["start"] = ev["end"] = ev["ts"]
    return ev


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_events(), min_size=1, max_size=5))
def test_the_fast_path_takes_valid_ascii_events(evs: list[dict[str, Any]]) -> None:
    """Without this the agreement above could hold with a fast path that never accepts: what
    well-behaved clients send (ASCII names, RFC 3339 times) is decoded in C, equal."""
    raw = envelope_bytes(evs)
    assert decode_envelope_pydantic(raw).rejected == []
    assert decode_fast(raw) is not None
    assert_same(raw)


def test_a_clients_events_are_forwarded_as_sent_and_omitted_defaults_are_not() -> None:
    """What the collectors send (every field but the null ones, times in UTC) is handed on as
    the bytes sent; an event that leaves out a default the warehouse stores as a value, or
    gives a time in another offset, is not (its reader would see a null or another offset)."""
    usage = {"type": "usage", **GOOD, **GOOD_BY_TYPE["usage"], "v": 1, "attributes": {"user.id": "u1"},
             "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0}  # fmt: skip
    span = {"type": "span", **GOOD, **GOOD_BY_TYPE["span"], "status": "ok", "span_id": "00f067aa0ba902b8"}
    tool = {"type": "tool_call", **GOOD, **GOOD_BY_TYPE["tool_call"], "status": "error"}
    no_status = {k: v for k, v in tool.items() if k != "status"}
    no_cache = {k: v for k, v in usage.items() if k != "cache_write_tokens"}
    offset = {**span, "end": "2026-03-01T14:00:00+02:00"}
    evs = [usage, span, tool, no_status, no_cache, offset]
    raw = envelope_bytes(evs)
    got = decode_fast_raw(raw)
    assert got is not None
    sent = [json.dumps(e).encode() for e in evs]
    assert got[2] == [sent[0], sent[1], sent[2], None, None, None]
    assert [e.status for e in got[1][2:4]] == ["error", "ok"]
    assert got[1][4].cache_write_tokens == 0  # type: ignore[union-attr]
    assert_same(raw)
