"""Screen verdicts in the budget worker: a kill verdict kills the trace everywhere (a control
command), and a source flagged in N distinct traces within the window raises a quarantine alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agentledger.events import Action, Authority, ControlCommand, Lane, ScopeKind, ScreenEvent, control_key
from agentledger.streams.worker.processor import MemoryStore, Output, Processor
from agentledger.streams.worker.rollups import Rollup
from agentledger.streams.worker.screens import quarantine_policy
from agentledger.tools import ToolDecision, ToolPolicy, decide
from agentledger.wire import encode_envelope

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
_n = 0


def verdict(trace: str, *, action: str = "record", flagged: bool = True, source: str | None = "fetch",
            at: datetime = NOW) -> ScreenEvent:  # fmt: skip
    global _n
    _n += 1
    return ScreenEvent(
        event_id=f"scr-{_n:08d}", ts=at, tenant="acme", agent="writer", trace_id=trace * 32,
        span_id="b" * 16, channel="tool", source=source, detector="rules+linear-v1",
        score=0.93, flagged=flagged, action=action,
    )  # fmt: skip


def run(p: Processor, events: list[ScreenEvent], at: datetime = NOW) -> Output:
    return p.process(encode_envelope("acme/writer", events), b"acme/writer", 0, 0, at.timestamp())


def test_a_kill_verdict_becomes_a_trace_kill_command_on_the_control_topic() -> None:
    out = run(Processor(MemoryStore()), [verdict("a", action="kill")])
    assert len(out.control) == 1
    key, value = out.control[0]
    cmd = ControlCommand.model_validate_json(value)
    assert cmd.action is Action.KILL and cmd.scope.kind is ScopeKind.TRACE
    assert cmd.scope.trace_id == "a" * 32 and cmd.scope.tenant == "acme"
    assert key.decode() == control_key(cmd.scope.key, Lane.ADMISSION, Authority.BUDGET)
    assert "injection" in cmd.reason and cmd.params.kill_reason == "other"
    assert cmd.expires_at is not None and cmd.expires_at > NOW


def test_record_block_and_unflagged_verdicts_send_no_command() -> None:
    out = run(
        Processor(MemoryStore()),
        [verdict("a", action="block"), verdict("b"), verdict("c", action="kill", flagged=False)],
    )
    assert out.control == []


def test_a_source_flagged_in_three_traces_raises_one_quarantine_alert() -> None:
    p = Processor(MemoryStore())
    first = run(p, [verdict("a"), verdict("a"), verdict("b")])  # two traces so far
    assert first.alerts == []
    third = run(p, [verdict("c")])
    assert len(third.alerts) == 1
    alert = json.loads(third.alerts[0][1])
    assert (
        alert["rule"] == "injection_source" and alert["entity"] == "tool/fetch" and alert["tenant"] == "acme"
    )
    assert alert["figures"]["traces"] == 3 and "quarantine" in alert["summary"]
    # the tool is quarantined: a deny policy for the tenant on the tools topic, named in the alert
    ((key, value),) = third.tools
    policy = ToolPolicy.model_validate_json(value)
    assert key.decode() == f"policy:{policy.policy_id}" == f"policy:{alert['figures']['tool_policy_id']}"
    assert policy.selector.tenant == "acme" and policy.selector.agent is None
    assert decide([policy], "acme", "writer", None, "fetch").decision is ToolDecision.DENY
    assert decide([policy], "acme", "writer", None, "fetch_all").decision is ToolDecision.ALLOW
    assert decide([policy], "globex", "writer", None, "fetch").decision is ToolDecision.ALLOW
    assert f"agentledger tools delete {policy.policy_id}" in alert["summary"]
    assert run(p, [verdict("d")]).alerts == []  # once per window


def test_a_quarantined_tool_name_is_matched_literally_and_an_agent_source_is_alert_only() -> None:
    odd = quarantine_policy("acme", "tool", "web[search]*")
    assert odd is not None
    assert decide([odd], "acme", "a", None, "web[search]*").decision is ToolDecision.DENY
    assert decide([odd], "acme", "a", None, "webs").decision is ToolDecision.ALLOW
    assert quarantine_policy("acme", "agent", "researcher") is None


def test_flags_older_than_the_window_do_not_count_and_other_sources_are_apart() -> None:
    p = Processor(MemoryStore())
    old = NOW - timedelta(hours=2)
    run(p, [verdict("a", at=old), verdict("b", at=old)])
    assert run(p, [verdict("c"), verdict("d", source="search"), verdict("e", source=None)]).alerts == []


def stage_one(
    p: Processor, agent: str, events: list[ScreenEvent], partition: int, offset: int
) -> list[bytes]:
    events = [ev.model_copy(update={"agent": agent}) for ev in events]
    out = p.stage_one(encode_envelope(f"acme/{agent}", events), f"acme/{agent}".encode(), partition, offset,
                      NOW.timestamp())  # fmt: skip
    assert out.alerts == []  # stage one never decides a quarantine
    return [value for _, _, value in out.deltas]


def stage_two(owner: Processor, records: list[bytes]) -> list[dict[str, object]]:
    alerts = []
    for value in records:
        alerts += [json.loads(a) for _, a in owner.stage_two(value, NOW.timestamp()).alerts]
    return alerts


def test_a_source_flagged_by_agents_on_different_partitions_is_counted_by_its_owner() -> None:
    """Two workers' stage one each see the tool flagged in fewer traces than the threshold; the
    owner of the source's key sees all three and raises the alert once (before: none)."""
    first, second, owner = Processor(MemoryStore()), Processor(MemoryStore()), Processor(MemoryStore())
    records = stage_one(first, "writer", [verdict("a"), verdict("b")], partition=0, offset=7)
    records += stage_one(second, "reader", [verdict("c")], partition=1, offset=3)
    alerts = stage_two(owner, records)
    assert [(a["rule"], a["entity"], a["figures"]["traces"]) for a in alerts] == [  # type: ignore[index]
        ("injection_source", "tool/fetch", 3)
    ]


def test_a_replayed_record_is_not_counted_twice_and_the_count_survives_a_restart() -> None:
    p = Processor(MemoryStore())
    once = stage_one(p, "writer", [verdict("a"), verdict("b")], partition=0, offset=7)
    owner = Processor(MemoryStore())
    assert stage_two(owner, once) == []
    # restart: a new owner reads the source's value back from the changelog's bytes
    restored = MemoryStore()
    for key in owner.store.all_keys():
        r = owner.store.get(key)
        assert r is not None
        restored.put(key, Rollup.loads(r.dumps()))
    again = Processor(restored)
    replay = stage_one(
        Processor(MemoryStore()), "writer", [verdict("e"), verdict("f")], partition=0, offset=7
    )
    assert stage_two(again, replay) == []  # same origin offset: dropped, not two more traces
    third = stage_one(p, "writer", [verdict("9")], partition=0, offset=8)
    assert [a["figures"]["traces"] for a in stage_two(again, third)] == [3]  # type: ignore[index]
