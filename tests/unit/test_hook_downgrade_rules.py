"""Downgrade at a soft threshold: the budget rule on the Faust-free processor (issued at the
threshold, on its own key beside throttle and kill, lifted when the window resets, adopted
after a restart) and the Guard's answer for one call (which model it goes to)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from agentledger.collectors import Guard
from agentledger.events import Action, CommandParams, ControlCommand, Policy, Scope, ScopeKind, UsageEvent
from agentledger.streams.worker.processor import MemoryStore, Processor
from agentledger.wire import dump, encode_envelope

NOW = datetime(2026, 11, 24, 23, 59, 0, tzinfo=UTC)
_n = iter(range(1_000_000))
SCOPE = "agent/acme/planner"
KEY = "admission.budget:agent/acme/planner"
DOWN_KEY = "downgrade.budget:agent/acme/planner"


def usage(agent: str = "planner") -> UsageEvent:
    # gpt-4o, 10k in + 1k out = $0.035
    return UsageEvent(event_id=f"ev-{next(_n):08d}", ts=NOW, tenant="acme", agent=agent, trace_id="a" * 32,
                      span_id="b" * 16, provider="openai", model="gpt-4o", input_tokens=10_000,
                      output_tokens=1_000)  # fmt: skip


def policy(limit: str, *thresholds: dict[str, Any], **kw: Any) -> bytes:
    return dump(Policy.model_validate({"policy_id": "cap", "window": "calendar_day", "limit": limit,
                                       "thresholds": list(thresholds), **kw}))  # fmt: skip


DOWN = {"at": 0.5, "action": "downgrade", "model": "gpt-4o-mini"}


def feed(p: Processor, events: list[UsageEvent], agent: str = "planner") -> list[tuple[str, ControlCommand]]:
    out = p.process(encode_envelope(f"acme/{agent}", events), f"acme/{agent}".encode(), 0, 0, NOW.timestamp())
    return [(k.decode(), ControlCommand.model_validate_json(v)) for k, v in out.control]


def tick(p: Processor, now: datetime) -> list[tuple[str, ControlCommand]]:
    return [(k.decode(), ControlCommand.model_validate_json(v)) for k, v in p.tick(now.timestamp()).control]


def test_downgrade_at_the_soft_threshold_then_kill_then_both_lifted_at_the_reset() -> None:
    p = Processor(MemoryStore())
    p.observe_policy("cap", policy("0.10", DOWN))
    events = [usage()]
    assert feed(p, events) == []  # $0.035: under 50 %
    events = [usage()]
    out = feed(p, events)  # $0.07: over 50 %
    assert [(k, c.action, c.params.model) for k, c in out] == [(DOWN_KEY, Action.DOWNGRADE, "gpt-4o-mini")]
    down = out[0][1]
    assert down.scope.key == SCOPE and down.policy_id == "cap" and down.cause_event_id == events[0].event_id
    # $0.105, the hard limit: a kill on the scope's own key, the downgrade stays as it is
    out = feed(p, [usage()])
    assert [(k, c.action) for k, c in out] == [(KEY, Action.KILL)]
    assert p.enforcer.current[DOWN_KEY] == down
    # the next calendar day: the kill resumes and the downgrade ends (expired at once)
    lifted = tick(p, NOW + timedelta(minutes=2))
    assert sorted((k, c.action) for k, c in lifted) == [(KEY, Action.RESUME), (DOWN_KEY, Action.DOWNGRADE)]
    ended = next(c for k, c in lifted if k == DOWN_KEY)
    assert ended.expires_at is not None and not ended.active(NOW + timedelta(minutes=2))
    assert tick(p, NOW + timedelta(minutes=3)) == []  # nothing more


def test_a_throttle_above_the_downgrade_does_not_replace_it() -> None:
    p = Processor(MemoryStore())
    p.observe_policy(
        "cap", policy("1.00", {**DOWN, "at": 0.05}, {"at": 0.1, "action": "throttle", "rate_per_s": 2})
    )
    out = feed(p, [usage(), usage()])  # $0.07: downgrade only
    assert [(k, c.action) for k, c in out] == [(DOWN_KEY, Action.DOWNGRADE)]
    out = feed(p, [usage(), usage()])  # $0.14: throttle, on the scope's own key
    assert [(k, c.action) for k, c in out] == [(KEY, Action.THROTTLE)]
    guard = Guard(start=False)
    for key, cmd in p.enforcer.current.items():
        guard.apply(cmd, key)
    assert guard.downgrade("gpt-4o", "acme", "planner") == "gpt-4o-mini"  # both in force
    assert guard.downgrade("gpt-4o", "acme", "coder") is None  # another agent keeps its model
    p.observe_policy("cap", None)  # the policy deleted: both lifted
    lifted = tick(p, NOW)
    assert sorted((k, c.action) for k, c in lifted) == [(KEY, Action.RESUME), (DOWN_KEY, Action.DOWNGRADE)]
    for key, cmd in lifted:
        guard.apply(cmd, key)
    assert guard.downgrade("gpt-4o", "acme", "planner") is None


def test_a_restarted_worker_lifts_the_downgrade_it_left() -> None:
    p = Processor(MemoryStore())
    p.observe_policy("cap", policy("1.00", {**DOWN, "at": 0.05}))
    [(key, down)] = feed(p, [usage(), usage()])
    restarted = Processor(MemoryStore())
    restarted.observe_policy("cap", policy("1.00", {**DOWN, "at": 0.05}))
    restarted.observe_command(key, dump(down))
    assert restarted.adopt_commands(NOW.timestamp()) == 1
    lifted = tick(restarted, NOW + timedelta(minutes=2))
    assert [(k, c.action, c.active(NOW + timedelta(minutes=2))) for k, c in lifted] == [
        (DOWN_KEY, Action.DOWNGRADE, False)
    ]


def test_a_human_downgrade_is_not_ours_to_replace_or_lift() -> None:
    p = Processor(MemoryStore())
    manual = ControlCommand(command_id="manual-0001", ts=NOW, scope=Scope(kind=ScopeKind.AGENT, tenant="acme",
                            agent="planner"), action=Action.DOWNGRADE, reason="operator", issued_by="api",
                            params=CommandParams(model="gpt-4.1-nano"))  # fmt: skip
    p.observe_command(manual.key, dump(manual))
    p.observe_policy("cap", policy("1.00", {**DOWN, "at": 0.05}))
    # the worker's own downgrade goes on its own key; the human's stays, and is the one obeyed
    ours = feed(p, [usage(), usage()])
    assert [(k, c.params.model) for k, c in ours] == [(DOWN_KEY, "gpt-4o-mini")]
    p.observe_policy("cap", None)
    lifted = tick(p, NOW)
    assert [(k, c.active(NOW)) for k, c in lifted] == [(DOWN_KEY, False)]
    guard = Guard(start=False)
    for key, cmd in [(manual.key, manual), *ours]:
        guard.apply(cmd, key)
    assert guard.downgrade("gpt-4o", "acme", "planner") == "gpt-4.1-nano"  # a human's first
    for key, cmd in lifted:
        guard.apply(cmd, key)
    assert guard.downgrade("gpt-4o", "acme", "planner") == "gpt-4.1-nano"


def test_the_guard_rewrites_only_the_models_a_downgrade_names() -> None:
    guard = Guard(start=False)
    cmd = ControlCommand(command_id="down-0001", ts=NOW, scope=Scope(kind=ScopeKind.AGENT, tenant="acme",
                         agent="planner"), action=Action.DOWNGRADE, reason="budget",
                         params=CommandParams(model="gpt-4o-mini", from_models=["gpt-4o", "gpt-4.1*"]))  # fmt: skip
    guard.apply(cmd, cmd.key)
    assert guard.downgrade("gpt-4o", "acme", "planner") == "gpt-4o-mini"
    assert guard.downgrade("gpt-4.1-2025-04-14", "acme", "planner") == "gpt-4o-mini"
    assert guard.downgrade("claude-sonnet-4-6", "acme", "planner") is None  # not named: kept
    assert guard.downgrade("gpt-4o", "other", "planner") is None
    # a kill on the same scope lives on another key: the downgrade is still there
    kill = cmd.model_copy(
        update={"command_id": "kill-0001", "action": Action.KILL, "params": CommandParams()}
    )
    guard.apply(kill, kill.key)
    assert guard.downgrade("gpt-4o", "acme", "planner") == "gpt-4o-mini"
    assert set(guard.commands) == {
        "admission.manual:agent/acme/planner",
        "downgrade.manual:agent/acme/planner",
    }


def test_the_contract_of_a_downgrade() -> None:
    with pytest.raises(ValidationError, match=r"needs params\.model"):
        ControlCommand(command_id="down-0001", ts=NOW, scope=Scope(kind=ScopeKind.TENANT, tenant="acme"),
                       action=Action.DOWNGRADE, reason="x")  # fmt: skip
    with pytest.raises(ValidationError, match="needs model"):
        Policy.model_validate({"policy_id": "p", "window": "1h", "limit": 1, "thresholds": [{"at": 0.5,
                               "action": "downgrade"}]})  # fmt: skip
    with pytest.raises(ValidationError, match="belong to a downgrade"):
        Policy.model_validate({"policy_id": "p", "window": "1h", "limit": 1, "thresholds": [{"at": 0.5,
                               "model": "gpt-4o-mini"}]})  # fmt: skip
    # Commands that are no downgrade carry no downgrade fields: older Guards (which forbid
    # unknown fields) still read them.
    kill = ControlCommand(command_id="kill-0001", ts=NOW, scope=Scope(kind=ScopeKind.TENANT, tenant="acme"),
                          action=Action.KILL, reason="x")  # fmt: skip
    assert set(json.loads(dump(kill))["params"]) == {
        "rate_per_s", "burst", "fallback_provider", "fallback_model", "target_version", "kill_reason",
    }  # fmt: skip
    assert kill.key == "admission.manual:tenant/acme"
