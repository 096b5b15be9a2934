"""Kafka record values -> warehouse rows: every contract field lands, exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agentledger.errors import ContractError
from agentledger.events import (
    Action,
    AlertEvent,
    AlertState,
    CommandParams,
    ControlCommand,
    PricedEvent,
    Scope,
    ScopeKind,
)
from agentledger.warehouse import schema
from agentledger.warehouse.rows import EventBuffer, ModelBuffer
from agentledger.warehouse.storage import split_by_day
from agentledger.warehouse.synthetic import priced_events
from agentledger.wire import dump, encode_envelope

EVENT_TS = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_every_contract_field_is_a_column() -> None:
    columns = set(schema.EVENTS.names)
    for model in schema.EVENT_MODELS:
        missing = set(model.model_fields) - {"v"} - columns
        assert not missing, f"{model.__name__} fields without a column: {missing}"
    assert schema.EVENTS.field("cost_usd").type == schema.USD
    assert schema.EVENTS.field("ts").type == schema.TS


def test_priced_envelope_rows_equal_the_models() -> None:
    events = priced_events(30, seed=3)
    key = events[0].event.key
    same_key = [e for e in events if e.event.key == key]
    buf = EventBuffer()
    assert buf.add_priced(encode_envelope(key, same_key), partition=2, offset=41) == len(same_key)
    rows = buf.to_table().to_pylist()
    for row, pe in zip(rows, same_key, strict=True):
        ev = pe.event
        assert row["event_id"] == ev.event_id
        assert row["ts"] == ev.ts
        assert row["type"] == ev.type
        assert row["cost_usd"] == pe.cost_usd
        assert row["priced"] is pe.priced
        assert (row["source_partition"], row["source_offset"]) == (2, 41)
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "model", "status", "score"):
            expected = getattr(ev, name, None)
            assert row[name] == (expected.value if hasattr(expected, "value") else expected)


def test_attributes_are_json_and_exotic_decimals_are_exact() -> None:
    ev = priced_events(1, seed=5)[1]  # a usage event
    usage = ev.event.model_copy(update={"attributes": {"region": "eu", "retry": 2}})
    weird = PricedEvent(event=usage, cost_usd=Decimal("1E-12"), priced=True, price_source="x")
    buf = EventBuffer()
    buf.add_priced(encode_envelope(usage.key, [weird]), 0, 0)
    row = buf.to_table().to_pylist()[0]
    assert row["attributes"] == '{"region":"eu","retry":2}'
    assert row["cost_usd"] == Decimal("0.000000000001")


def test_invalid_envelope_raises_and_leaves_the_buffer_as_it_was() -> None:
    good = priced_events(1, seed=5)
    buf = EventBuffer()
    buf.add_priced(encode_envelope(good[0].event.key, good), 0, 0)
    before = buf.rows
    with pytest.raises(ContractError):
        buf.add_priced(b'{"v":1,"key":"a/b","events":[{"event":{"event_id":"x"}}]}', 0, 1)
    with pytest.raises(ContractError):
        buf.add_priced(b"not json", 0, 2)
    assert buf.rows == before
    bad_ts = dump(good[0]).replace(b'"ts":"', b'"ts":"2026-13-45T', 1)
    with pytest.raises(ContractError):  # found when it arrives, not when its batch is flushed
        buf.add_priced(b'{"v":1,"key":"a/b","events":[' + bad_ts + b"]}", 0, 3)
    assert buf.to_table().num_rows == before


def test_valid_but_unusual_json_goes_through_the_models() -> None:
    pe = priced_events(1, seed=5)[1]
    raw = dump(pe).replace(b'"cost_usd":"', b'"cost_usd": "')  # still valid JSON
    envelope = b'{"v":1,"key":"k/k","events":[' + raw + b"]}"
    buf = EventBuffer()
    assert buf.add_priced(envelope, 0, 0) == 1
    assert buf.to_table().to_pylist()[0]["cost_usd"] == pe.cost_usd


def test_commands_and_alerts_flatten() -> None:
    cmd = ControlCommand(
        command_id="cmd-00000001",
        ts=EVENT_TS,
        scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent="planner"),
        action=Action.THROTTLE,
        reason="80% of the daily budget",
        policy_id="daily",
        params=CommandParams(rate_per_s=2.0),
    )
    cmds = ModelBuffer("commands")
    cmds.add_record(dump(cmd), 0, 7)
    row = cmds.to_table().to_pylist()[0]
    assert row["scope_key"] == "agent/acme/planner"
    assert (row["action"], row["rate_per_s"], row["ts"]) == ("throttle", 2.0, EVENT_TS)
    alert = AlertEvent(
        alert_id="al-00000001",
        dedup_key="budget/acme",
        ts=EVENT_TS,
        rule="budget",
        entity="acme/planner",
        tenant="acme",
        state=AlertState.ALERT,
        summary="over budget",
        figures={"spend": 12.5},
    )
    alerts = ModelBuffer("alerts")
    alerts.add_record(dump(alert), 1, 3)
    row = alerts.to_table().to_pylist()[0]
    assert (row["state"], row["figures"], row["source_offset"]) == ("alert", '{"spend":12.5}', 3)
    with pytest.raises(ContractError):
        alerts.add_record(b'{"alert_id":"short"}', 1, 4)
    assert alerts.rows == 1


def test_rows_split_by_utc_day() -> None:
    events = priced_events(60, seed=9, hours=72)
    buf = EventBuffer()
    for pe in events:
        buf.add_priced(encode_envelope(pe.event.key, [pe]), 0, 0)
    parts = split_by_day(buf.to_table())
    assert [d for d, _ in parts] == sorted({pe.event.ts.date().isoformat() for pe in events})
    assert sum(p.num_rows for _, p in parts) == len(events)
    for day, part in parts:
        assert {ts.date().isoformat() for ts in part.column("ts").to_pylist()} == {day}


def test_many_envelopes_through_the_json_reader_equal_the_careful_path() -> None:
    records = []
    for i, start in enumerate(range(0, 600, 60)):
        chunk = priced_events(200, seed=12)[start : start + 60]
        records.append((encode_envelope("k/k", chunk), 100 + i))
    fast, careful = EventBuffer(), EventBuffer()
    assert fast.add_many(records, partition=3) == []
    for value, offset in records:
        careful.add_priced(value, 3, offset)
    assert fast.to_table().equals(careful.to_table())


def test_the_json_reader_hands_back_what_it_cannot_take_whole() -> None:
    events = priced_events(20, seed=13)
    good = encode_envelope("k/k", events[:10])
    with_attributes = encode_envelope(
        "k/k",
        [
            events[10].model_copy(
                update={"event": events[10].event.model_copy(update={"attributes": {"a": 1}})}
            )
        ],
    )
    missing_cost = good.replace(b',"cost_usd":"', b',"cost_usdx":"', 1)
    v2 = good.replace(b'{"v":1,', b'{"v":2,', 1)
    records = [(good, 1), (with_attributes, 2), (missing_cost, 3), (v2, 4), (b'{"v":1,"events":[]}', 5)]
    buf = EventBuffer()
    left = buf.add_many(records, partition=0)
    assert [o for _, o in left] == [2, 3, 4, 5]
    assert buf.rows == 10
    buf.add_priced(with_attributes, 0, 2)  # the careful path keeps the attributes
    assert buf.to_table().column("attributes").to_pylist()[-1] == '{"a":1}'
    for value, offset in left[1:]:
        with pytest.raises(ContractError):
            buf.add_priced(value, 0, offset)
    pretty = buf.add_many([(good, 1), (good.replace(b',"events":', b',\n"events":'), 2)], partition=0)
    assert [o for _, o in pretty] == [1, 2]  # one value with a newline: all go the careful way


def test_arrival_time_and_flag_land_through_both_paths() -> None:
    """The worker's ``received_ts`` and ``time_flag`` are columns, on the fast and the careful path."""
    received = datetime(2026, 11, 24, 14, 0, 5, 123456, tzinfo=UTC)
    events = [
        pe.model_copy(update={"received_ts": received, "time_flag": "late" if i % 2 else None})
        for i, pe in enumerate(priced_events(20, seed=14)[:10])
    ]
    records = [(encode_envelope("k/k", events), 7)]
    fast, careful = EventBuffer(), EventBuffer()
    assert fast.add_many(records, partition=1) == []
    careful.add_priced(records[0][0], 1, 7)
    assert fast.to_table().equals(careful.to_table())
    rows = careful.to_table().to_pylist()
    assert [r["received_ts"] for r in rows] == [received] * 10
    assert [r["time_flag"] for r in rows] == ["late" if i % 2 else None for i in range(10)]
    assert [r["ts"] for r in rows] == [pe.event.ts for pe in events]
