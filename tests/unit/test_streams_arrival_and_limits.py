"""Issue #13 on the Faust-free processor: oversize events, per-tenant dedupe, back-dated and
future-dated events, and the live budgets of a deleted policy."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from agentledger.events import Action, ControlCommand, DeadLetter, Policy, UsageEvent
from agentledger.streams.worker.eventtime import ArrivalRule
from agentledger.streams.worker.processor import MemoryStore, Processor
from agentledger.wire import decode_priced, dump, encode_envelope_dicts

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def usage(
    event_id: str, tenant: str = "acme", ts: datetime = NOW, tokens: int = 1_000_000
) -> dict[str, object]:
    ev = UsageEvent(event_id=event_id, ts=ts, tenant=tenant, agent="planner", trace_id="a" * 32, span_id="b" * 16,
                    provider="openai", model="gpt-4o", input_tokens=tokens, output_tokens=0)  # fmt: skip
    return ev.model_dump(mode="json")  # gpt-4o: $2.50 per million input tokens


def run(p: Processor, items: list[dict[str, object]], now: datetime = NOW, key: str = "acme/planner"):  # type: ignore[no-untyped-def]
    return p.process(encode_envelope_dicts(key, items), key.encode(), 2, 17, now.timestamp())


def policy(pid: str, limit: str, window: str = "1h") -> bytes:
    return dump(Policy.model_validate({"policy_id": pid, "window": window, "limit": limit,
                                       "selector": {"per": "tenant"}}))  # fmt: skip


def test_an_event_too_large_for_any_record_goes_to_the_dlq_uncounted() -> None:
    p = Processor(MemoryStore(), max_record_bytes=30_000)
    p.observe_policy("cap", policy("cap", "100"))
    huge = usage("huge-0002")
    # within the contract's caps (32 values of at most 4096 characters), over this worker's limit
    huge["attributes"] = {f"blob{i}": "x" * 4000 for i in range(12)}
    out = run(p, [usage("ok-00001"), huge, usage("ok-00003")])
    priced = [pe.event.event_id for _, v in out.priced for pe in decode_priced(v)[1]]
    assert priced == ["ok-00001", "ok-00003"] and all(len(v) <= 30_000 for _, v in out.priced)
    assert p.counters["events"] == 2 and p.counters["dlq"] == 1
    assert p.totals("tenant/acme", "1h", NOW.timestamp()).cost == Decimal("5.0")
    [(key, value)] = out.dlq
    assert key == b"acme/planner" and len(value) <= 30_000  # the dead letter fits the limit too
    letter = DeadLetter.model_validate_json(value)
    assert (letter.index, letter.source_partition, letter.source_offset) == (1, 2, 17)
    assert "over the worker's record limit of 30000 bytes" in letter.reason
    assert "cut to the first" in letter.reason and "events[2]@17" in letter.reason
    assert base64.b64decode(letter.raw_b64).startswith(b'{"v":1,"event_id":"huge-0002"')
    status = [orjson.loads(v) for _, v in out.budgets if v]
    assert [Decimal(s["spend"]) for s in status] == [Decimal("5")]


def test_the_limit_is_a_setting_and_must_leave_room_for_a_dead_letter() -> None:
    with pytest.raises(ValueError, match="max_record_bytes"):
        Processor(MemoryStore(), max_record_bytes=1000)


def test_dedupe_is_per_tenant() -> None:
    p = Processor(MemoryStore())
    run(p, [usage("same-id-01", "acme")])
    run(p, [usage("same-id-01", "globex", tokens=2_000_000)], key="globex/planner")
    run(p, [usage("same-id-01", "acme")])  # a real duplicate
    assert (p.counters["events"], p.counters["duplicates"]) == (2, 1)
    assert p.totals("tenant/acme", "calendar_day", NOW.timestamp()).cost == Decimal("2.5")
    assert p.totals("tenant/globex", "calendar_day", NOW.timestamp()).cost == Decimal("5.0")


def test_back_dated_events_count_at_arrival_and_are_flagged() -> None:
    p = Processor(MemoryStore())
    p.observe_policy("hourly", policy("hourly", "5"))
    old = NOW - timedelta(hours=2)
    out = run(p, [usage(f"late-{i:04d}", ts=old + timedelta(seconds=i)) for i in range(3)])
    cmds = [ControlCommand.model_validate_json(v) for _, v in out.control]
    assert [(c.action, c.scope.key) for c in cmds if c.policy_id] == [(Action.KILL, "tenant/acme")]
    assert p.totals("tenant/acme", "1h", NOW.timestamp()).cost == Decimal("7.5")
    [pe] = decode_priced(out.priced[0][1])[1][:1]
    assert (pe.event.ts, pe.received_ts, pe.time_flag) == (old, NOW, "late")
    assert p.counters["late"] == 3


def test_events_inside_the_lateness_and_skew_keep_their_own_time() -> None:
    p = Processor(MemoryStore(), arrival=ArrivalRule(allowed_lateness_s=600, max_skew_s=300))
    items = [usage("in-00001", ts=NOW - timedelta(seconds=590)), usage("in-00002", ts=NOW + timedelta(seconds=290)),
             usage("sk-00003", ts=NOW + timedelta(hours=13))]  # tomorrow  # fmt: skip
    out = run(p, items)
    flags = [(pe.event.event_id, pe.time_flag) for _, v in out.priced for pe in decode_priced(v)[1]]
    assert flags == [("in-00001", None), ("in-00002", None), ("sk-00003", "clock_skew")]
    # the skewed one counts today, not in tomorrow's calendar day
    assert p.totals("tenant/acme", "calendar_day", NOW.timestamp()).cost == Decimal("7.5")
    # the first kept its own time: 590 s ago is outside the last minute
    assert p.totals("tenant/acme", "1m", NOW.timestamp()).cost == Decimal("5")


def test_deleting_a_policy_tombstones_its_live_budgets() -> None:
    p = Processor(MemoryStore())
    t = NOW.timestamp()
    p.observe_policy("gone", policy("gone", "100"))
    p.observe_policy("kept", policy("kept", "100"))
    for key in ("gone|tenant/acme", "gone|tenant/globex", "kept|tenant/acme"):
        p.observe_budget(key, b"{}", t)
    assert p.tick(t).budgets == []
    p.observe_policy("gone", None)
    out = p.tick(t + 0.5)
    assert sorted(k for k, v in out.budgets if v is None) == [b"gone|tenant/acme", b"gone|tenant/globex"]
    assert p.tick(t + 1).budgets == []  # once
    # a status that was in flight when the deletion arrived, or left by a policy deleted while
    # no worker ran, is tombstoned after the grace period
    p.observe_budget("gone|tenant/initech", b"{}", t + 1)
    p.observe_budget("older|tenant/acme", b"{}", t + 1)
    assert p.tick(t + 2).budgets == []
    late = sorted(k for k, v in p.tick(t + 12).budgets if v is None)
    assert late == [b"gone|tenant/initech", b"older|tenant/acme"]


def test_a_policy_deleted_and_created_again_keeps_its_live_budgets() -> None:
    """Reading the policies topic from its start replays a deletion that a re-creation
    followed: the new policy's budgets must stay."""
    p = Processor(MemoryStore())
    t = NOW.timestamp()
    p.observe_budget("cap|tenant/acme", b"{}", t)
    p.observe_policy("cap", policy("cap", "100"))
    p.observe_policy("cap", None)
    p.observe_policy("cap", policy("cap", "200"))
    assert p.tick(t + 20).budgets == []
    p.observe_policy("cap", None)  # deleted for good: its budget goes
    assert p.tick(t + 21).budgets == [(b"cap|tenant/acme", None)]
