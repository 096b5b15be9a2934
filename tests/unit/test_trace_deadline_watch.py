"""The pure deadline logic (``worker.deadlines``) and its place in the worker's core
(``Processor``: stage one's rows, stage two's watch, the timer's kill on the trace scope)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agentledger.events import ControlCommand, Policy, SpanEvent, UsageEvent
from agentledger.pricing import PriceBook
from agentledger.streams.worker.deadlines import DeadlineWatch, deadline_rows
from agentledger.streams.worker.processor import MemoryStore, Processor
from agentledger.wire import encode_envelope

T0 = 1_800_000_000.0


def policy(pid: str = "dl", deadline: float = 30.0, **selector: str) -> Policy:
    return Policy.model_validate({"policy_id": pid, "deadline_s": deadline, "selector": selector})


def row(agent: str = "writer", first: float = T0, last: float | None = None, eid: str = "e1",
        ended: bool = False, workflow: str | None = None) -> list[Any]:  # fmt: skip
    return [agent, None, workflow, first, first if last is None else last, eid, ended]


def test_a_trace_past_its_deadline_is_due_once_even_when_it_sends_nothing_more() -> None:
    w = DeadlineWatch()
    w.set_policies([policy(deadline=30, tenant="acme", agent="writer")])
    w.observe("acme", "t1", [row(first=T0 + 1, eid="first")])
    assert w.due(T0 + 30) == []  # 29 s in
    [v] = w.due(T0 + 31.5)
    assert (v.trace_id, v.policy_id, v.deadline_s, v.cause_event_id) == ("t1", "dl", 30.0, "first")
    assert v.reason.startswith("trace exceeded its 30 s deadline (policy dl): first event ")
    assert "now " in v.reason
    assert w.due(T0 + 32) == []  # once


def test_only_matching_traces_are_kept_and_the_shortest_deadline_wins() -> None:
    w = DeadlineWatch()
    w.set_policies([policy("long", 60, agent="writer"), policy("short", 5, workflow="checkout")])
    w.observe("acme", "other", [row(agent="reader")])
    assert len(w) == 0  # no policy matches: nothing kept
    w.observe("acme", "t1", [row(first=T0)])
    w.observe("acme", "t1", [row(first=T0 + 1, workflow="checkout")])  # its workflow shows up later
    [v] = w.due(T0 + 6)
    assert (v.policy_id, v.deadline_s) == ("short", 5.0)


def test_a_finished_root_span_closes_the_trace() -> None:
    w = DeadlineWatch()
    w.set_policies([policy(deadline=10)])
    w.observe("acme", "t1", [row(first=T0)])
    w.observe("acme", "t1", [row(first=T0 + 2, eid="root", ended=True)])
    assert len(w) == 0 and w.due(T0 + 60) == []


def test_idle_traces_are_forgotten_and_memory_is_bounded() -> None:
    w = DeadlineWatch(max_traces=3, margin_s=5)
    w.set_policies([policy(deadline=10)])
    for i in range(5):
        w.observe("acme", f"t{i}", [row(first=T0 + i)])
    assert len(w) == 3 and w.forgotten == 2  # least recently active dropped first
    assert sorted(v.trace_id for v in w.due(T0 + 12.5)) == ["t2"]
    # idle longer than deadline + margin: forgotten (killed or not)
    assert w.due(T0 + 4 + 10 + 5 + 0.1) == []
    assert len(w) == 0


def test_removing_the_policy_forgets_its_traces() -> None:
    w = DeadlineWatch()
    w.set_policies([policy(deadline=10)])
    w.observe("acme", "t1", [row(first=T0)])
    w.set_policies([])
    assert w.due(T0 + 20) == [] and len(w) == 0


def test_only_held_traces_are_killed() -> None:
    w = DeadlineWatch()
    w.set_policies([policy(deadline=1)])
    w.observe("acme", "t1", [row(first=T0)])
    assert w.due(T0 + 5, owns=lambda key: False) == []
    assert [v.trace_id for v in w.due(T0 + 5, owns=lambda key: key == "trace/acme/t1")] == ["t1"]


def test_rows_take_a_spans_start_and_mark_the_root() -> None:
    start = datetime.fromtimestamp(T0, UTC)
    common = {"tenant": "acme", "agent": "writer", "trace_id": "a" * 32}
    span = SpanEvent(event_id="span-0001", ts=start + timedelta(seconds=9), span_id="1" * 16, name="turn", kind="agent",
                     start=start, end=start + timedelta(seconds=9), **common)  # fmt: skip
    rows = deadline_rows([span], [int(T0 + 9)])
    assert rows == {("acme", "a" * 32): [["writer", None, None, T0, T0 + 9, "span-0001", True]]}


def usage(trace: str, eid: str, ts: float, agent: str = "writer") -> UsageEvent:
    return UsageEvent(event_id=eid, ts=datetime.fromtimestamp(ts, UTC), tenant="acme", agent=agent, trace_id=trace,
                      span_id="2" * 16, provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=5)  # fmt: skip


def test_the_worker_kills_a_trace_past_its_deadline_on_the_trace_scope() -> None:
    proc = Processor(MemoryStore(), PriceBook.load())
    p = policy("writer-30s", 3, tenant="acme", agent="writer")
    proc.observe_policy(p.policy_id, p.model_dump_json().encode())
    assert "writer-30s" not in proc.engine.policies  # no budget in it
    slow, later, other = "a" * 32, "b" * 32, "c" * 32
    now = T0
    for ev in (usage(slow, "usage-001", now), usage(other, "usage-003", now, agent="reader")):
        proc.process(encode_envelope(ev.key, [ev]), ev.key.encode(), 0, None, now)
    assert proc.tick(now + 2).control == []
    ev = usage(later, "usage-002", now + 2.5)
    proc.process(encode_envelope(ev.key, [ev]), ev.key.encode(), 0, None, now + 2.5)
    out = proc.tick(now + 3.5)
    assert [k.decode() for k, _ in out.control] == [f"admission.budget:trace/acme/{slow}"]
    cmd = ControlCommand.model_validate_json(out.control[0][1])
    assert cmd.action.value == "kill" and cmd.scope.trace_id == slow
    assert cmd.cause_event_id == "usage-001" and "3 s deadline" in cmd.reason
    assert cmd.expires_at is not None
    assert [k.decode() for k, _ in out.alerts] == [f"deadline:trace/acme/{slow}"]
    assert proc.tick(now + 4).control == []  # once
    out = proc.tick(now + 6)  # the later trace's own deadline
    assert [k.decode() for k, _ in out.control] == [f"admission.budget:trace/acme/{later}"]


def test_deadline_rows_ride_the_scope_deltas_only_with_a_deadline_policy() -> None:
    proc = Processor(MemoryStore(), PriceBook.load())
    ev = usage("a" * 32, "usage-001", T0)
    out = proc.stage_one(encode_envelope(ev.key, [ev]), ev.key.encode(), 0, 7, T0)
    assert all(b'"d":' not in v for _, _, v in out.deltas)
    p = policy(deadline=5)
    proc.observe_policy(p.policy_id, p.model_dump_json().encode())
    ev = usage("a" * 32, "usage-002", T0 + 1)
    out = proc.stage_one(encode_envelope(ev.key, [ev]), ev.key.encode(), 0, 8, T0 + 1)
    assert any(b'"d":' in v for _, _, v in out.deltas)
    for _, _, v in out.deltas:  # a replay of the same origin is dropped with its rollup
        proc.stage_two(v, T0 + 1)
        proc.stage_two(v, T0 + 1)
    assert len(proc.deadlines) == 1


def test_policy_model_deadline_and_timeout_fields() -> None:
    p = Policy.model_validate({"policy_id": "t", "call_timeout_s": 0.5, "selector": {"provider": "openai"}})
    assert not p.is_budget and p.call_timeout_s == 0.5
    assert Policy.model_validate_json(p.model_dump_json()) == p
    budget = Policy.model_validate({"policy_id": "b", "window": "24h", "limit": "5"})
    assert "deadline_s" not in budget.model_dump_json() and "provider" not in budget.model_dump_json()
    assert budget.budget_limit == Decimal(5)
    with pytest.raises(ValueError, match="needs a budget"):
        Policy.model_validate({"policy_id": "x"})
    with pytest.raises(ValueError, match="needs a `window`"):
        Policy.model_validate({"policy_id": "x", "limit": "5"})
    with pytest.raises(ValueError, match="call_timeout_s` alone"):
        Policy.model_validate({"policy_id": "x", "deadline_s": 5, "selector": {"model": "gpt-4o"}})


def test_rows_keep_an_events_time_to_the_microsecond_and_a_late_one_counts_at_arrival() -> None:
    on_time = usage("a" * 32, "usage-001", T0 + 0.75)
    late = usage("b" * 32, "usage-002", T0 - 3600)
    rows = deadline_rows([on_time, late], [int(T0 + 0.75), int(T0 + 2)])
    assert rows[("acme", "a" * 32)][0][3:5] == [T0 + 0.75, T0 + 0.75]  # not the second it counts in
    assert rows[("acme", "b" * 32)][0][3:5] == [T0 + 2, T0 + 2]  # counted at its arrival


def test_a_forgotten_killed_trace_leaves_its_kill_in_force_and_no_wish_behind() -> None:
    proc = Processor(MemoryStore(), PriceBook.load())
    p = policy("short", 2)
    proc.observe_policy(p.policy_id, p.model_dump_json().encode())
    ev = usage("a" * 32, "usage-001", T0)
    proc.process(encode_envelope(ev.key, [ev]), ev.key.encode(), 0, None, T0)
    key = f"admission.budget:trace/acme/{'a' * 32}"
    assert [k.decode() for k, _ in proc.tick(T0 + 3).control] == [key]
    assert proc.enforcer.merged(key) is not None
    out = proc.tick(T0 + 2 + 60 + 1)  # idle past deadline + margin: forgotten
    assert out.control == [] and len(proc.deadlines) == 0  # no resume: the kill runs until it expires
    assert proc.enforcer.merged(key) is None
