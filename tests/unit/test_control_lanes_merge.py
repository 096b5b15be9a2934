"""Command lanes as pure logic: the control key of each (scope, lane, authority), the Guard's
combination of the records on one scope, records from before lanes, and the budget worker's
own keys (no broker; the real-broker run is tests/integration/test_control_lanes.py)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentledger.collectors import AgentKilled, BudgetKilled, Guard, ManualKill, Throttled
from agentledger.events import (
    BUDGET_ISSUER,
    HEALTH_ISSUER,
    Action,
    Authority,
    CommandParams,
    ControlCommand,
    Lane,
    Policy,
    Scope,
    ScopeKind,
    UsageEvent,
    control_key,
    parse_control_key,
    scope_key,
)
from agentledger.lanes import ControlRecords
from agentledger.streams.worker.processor import MemoryStore, Processor
from agentledger.wire import dump, encode_envelope

AGENT = Scope(kind=ScopeKind.AGENT, tenant="acme", agent="writer")
NOW = datetime.now(UTC)
_ids = itertools.count()


def command(
    action: Action, issued_by: str, scope: Scope = AGENT, at: float = 0.0, **params: Any
) -> ControlCommand:
    if action is Action.THROTTLE:
        params.setdefault("rate_per_s", 5.0)
    if action is Action.ROLLBACK:
        params.setdefault("target_version", "v1")
    if action is Action.FAILOVER:
        params.setdefault("fallback_provider", "anthropic")
    return ControlCommand(
        command_id=f"cmd-{next(_ids):06d}", ts=NOW + timedelta(seconds=at), scope=scope, action=action,
        reason="test", params=CommandParams(**params), issued_by=issued_by,
    )  # fmt: skip


def guard_with(*records: tuple[str | None, ControlCommand | None]) -> Guard:
    guard = Guard(start=False)
    for key, cmd in records:
        guard.apply(cmd, key)
    return guard


def runs(guard: Guard) -> bool:
    try:
        guard.check(tenant="acme", agent="writer", wait=False)
    except (AgentKilled, Throttled):
        return False
    return True


# -- keys ------------------------------------------------------------------------------------


def test_each_writer_has_its_own_key_in_the_lane_of_its_action() -> None:
    kill = command(Action.KILL, BUDGET_ISSUER)
    assert kill.key == "admission.budget:agent/acme/writer"
    assert command(Action.ROLLBACK, HEALTH_ISSUER).key == "routing.health:agent/acme/writer"
    assert command(Action.THROTTLE, HEALTH_ISSUER).key == "admission.health:agent/acme/writer"
    assert command(Action.KILL, "key:ops:k1").key == "admission.manual:agent/acme/writer"
    assert (
        command(Action.DOWNGRADE, BUDGET_ISSUER, model="gpt-4o-mini").key
        == "downgrade.budget:agent/acme/writer"
    )
    provider = Scope(kind=ScopeKind.PROVIDER, provider="openai")
    assert command(Action.FAILOVER, HEALTH_ISSUER, provider).key == "provider.health:provider/openai/*"
    assert command(Action.RESUME, HEALTH_ISSUER, provider).key == "provider.health:provider/openai/*"
    assert command(Action.RESUME, HEALTH_ISSUER).key == "admission.health:agent/acme/writer"
    lift_rollback = command(Action.RESUME, "key:ops:k1").model_copy(update={"lane": Lane.ROUTING})
    assert lift_rollback.key == "routing.manual:agent/acme/writer"
    for key in (kill.key, "provider.health:provider/openai/*"):
        lane, authority, scope = parse_control_key(key) or (None, None, None)
        assert control_key(scope, lane, authority) == key  # type: ignore[arg-type]


def test_a_resume_names_only_a_lane_it_can_lift() -> None:
    with pytest.raises(ValueError, match="admission lane"):
        ControlCommand(command_id="cmd-bad-0001", ts=NOW, scope=AGENT, action=Action.KILL, reason="x",
                       lane=Lane.ROUTING)  # fmt: skip


@pytest.mark.parametrize(
    "scope",
    [
        scope_key(ScopeKind.PROVIDER, provider="health:provider", model="openai/*"),
        scope_key(ScopeKind.PROVIDER, provider="admission.budget:x", model="y"),
        scope_key(ScopeKind.PROVIDER, tenant="health:provider", provider="openai", model="gpt-4o"),
        scope_key(ScopeKind.AGENT, tenant="admission.budget:agent", agent="x"),
        scope_key(ScopeKind.TENANT, tenant="routing.manual:acme"),
        "downgrade:agent/acme/writer",  # the downgrade key from before lanes
    ],
)
def test_no_scope_key_and_no_old_key_reads_as_a_lane_key(scope: str) -> None:
    assert parse_control_key(scope) is None


# -- the Guard's combination -----------------------------------------------------------------


def test_a_budget_kill_survives_a_health_rollback_and_a_drift_resume_and_the_rollback_survives_its_lift() -> (
    None
):
    kill = command(Action.KILL, BUDGET_ISSUER, kill_reason="budget")
    rollback = command(Action.ROLLBACK, HEALTH_ISSUER, at=1)
    throttle = command(Action.THROTTLE, HEALTH_ISSUER, at=2)
    drift_over = command(Action.RESUME, HEALTH_ISSUER, at=3)
    guard = guard_with(*((c.key, c) for c in (kill, rollback, throttle, drift_over)))
    with pytest.raises(BudgetKilled):
        guard.check(tenant="acme", agent="writer")
    assert guard.version("writer", "acme") == "v1"
    lifted = command(Action.RESUME, BUDGET_ISSUER, at=4)
    guard.apply(lifted, lifted.key)
    assert runs(guard)
    assert guard.version("writer", "acme") == "v1"  # routing is its own decision


def test_admission_takes_the_strictest_record_and_a_resume_lifts_only_its_key() -> None:
    budget = command(Action.THROTTLE, BUDGET_ISSUER, rate_per_s=100.0)
    health = command(Action.THROTTLE, HEALTH_ISSUER, rate_per_s=0.01)
    guard = guard_with((budget.key, budget), (health.key, health))
    assert runs(guard)  # the first token of the slowest bucket
    with pytest.raises(Throttled, match=r"0\.01/s"):
        guard.check(tenant="acme", agent="writer", wait=False)
    manual = command(Action.KILL, "key:ops:k1", kill_reason="manual")
    guard.apply(manual, manual.key)
    budget_kill = command(Action.KILL, BUDGET_ISSUER, at=1, kill_reason="budget")
    guard.apply(budget_kill, budget_kill.key)
    with pytest.raises(ManualKill):  # two kills: the error names the human's, which no worker lifts
        guard.check(tenant="acme", agent="writer")
    for issuer in (BUDGET_ISSUER, HEALTH_ISSUER):  # every worker resumes: the human's kill stands
        resume = command(Action.RESUME, issuer, at=5)
        guard.apply(resume, resume.key)
    with pytest.raises(ManualKill):
        guard.check(tenant="acme", agent="writer")
    guard.apply(None, manual.key)  # tombstone of the human's key
    assert runs(guard)


def test_routing_and_provider_records_of_two_authorities_a_human_first() -> None:
    health = command(Action.ROLLBACK, HEALTH_ISSUER, at=2, target_version="v1")
    human = command(Action.ROLLBACK, "key:ops:k1", at=1, target_version="v0")
    guard = guard_with((health.key, health), (human.key, human))
    assert guard.version("writer", "acme") == "v0"
    provider = Scope(kind=ScopeKind.PROVIDER, provider="openai")
    failover = command(Action.FAILOVER, HEALTH_ISSUER, provider)
    kill = command(Action.KILL, BUDGET_ISSUER, provider)  # an admission record on a provider scope
    guard.apply(failover, failover.key)
    guard.apply(kill, kill.key)
    assert guard.provider("openai", tenant="acme") == "anthropic"


# -- records from before lanes ---------------------------------------------------------------


def test_an_old_record_is_read_as_its_lane_until_its_authority_writes_the_new_key() -> None:
    kill = command(Action.KILL, BUDGET_ISSUER, kill_reason="budget")
    down = command(Action.DOWNGRADE, BUDGET_ISSUER, model="gpt-4o-mini")
    guard = guard_with(("agent/acme/writer", kill), ("downgrade:agent/acme/writer", down))
    assert set(guard.commands) == {kill.key, down.key}
    with pytest.raises(BudgetKilled):
        guard.check(tenant="acme", agent="writer")
    assert guard.downgrade("gpt-4o", tenant="acme", agent="writer") == "gpt-4o-mini"
    health_rollback = command(Action.ROLLBACK, HEALTH_ISSUER, at=1)
    guard.apply(health_rollback, health_rollback.key)  # a new writer: the old kill still holds
    with pytest.raises(BudgetKilled):
        guard.check(tenant="acme", agent="writer")
    resume = command(Action.RESUME, BUDGET_ISSUER, at=2)
    guard.apply(resume, resume.key)  # the authority's first record on its new key supersedes
    assert runs(guard)
    stale = command(Action.KILL, BUDGET_ISSUER, at=-5)  # an old writer late: older than the resume
    guard.apply(stale, "agent/acme/writer")
    assert runs(guard)


def test_records_tombstone_and_rewrite() -> None:
    records = ControlRecords()
    old = command(Action.KILL, BUDGET_ISSUER)
    new = command(Action.THROTTLE, BUDGET_ISSUER, at=1)
    records.apply("agent/acme/writer", old)
    records.apply(new.key, new)
    assert records.current == {new.key: new} and records.legacy_keys() == ["agent/acme/writer"]
    records.apply(new.key, None)
    assert records.current == {new.key: old}  # the old record is what is left on the topic
    records.apply("agent/acme/writer", None)
    assert records.current == {} and records.legacy_keys() == []


# -- the budget authority ---------------------------------------------------------------------


def usage(n: int) -> list[UsageEvent]:
    # gpt-4o, 10k in + 1k out = $0.035 each
    return [UsageEvent(event_id=f"ev-{next(_ids):08d}", ts=NOW, tenant="acme", agent="writer", trace_id="a" * 32,
                       span_id="b" * 16, provider="openai", model="gpt-4o", input_tokens=10_000,
                       output_tokens=1_000) for _ in range(n)]  # fmt: skip


def feed(p: Processor, events: list[UsageEvent]) -> list[tuple[str, ControlCommand]]:
    out = p.process(encode_envelope("acme/writer", events), b"acme/writer", 0, 0, NOW.timestamp())
    return [(k.decode(), ControlCommand.model_validate_json(v)) for k, v in out.control]


def test_the_budget_worker_writes_only_its_own_keys_and_a_human_kill_outlives_its_resume() -> None:
    p = Processor(MemoryStore())
    manual = command(Action.KILL, "key:ops:k1", kill_reason="manual")
    p.observe_command(manual.key, dump(manual))
    rollback = command(Action.ROLLBACK, HEALTH_ISSUER)
    p.observe_command(rollback.key, dump(rollback))
    cap = Policy.model_validate({"policy_id": "cap", "window": "calendar_day", "limit": "0.05"})
    p.observe_policy("cap", dump(cap))
    out = feed(p, usage(2))
    assert [(k, c.action) for k, c in out] == [("admission.budget:agent/acme/writer", Action.KILL)]
    p.observe_policy("cap", None)  # the budget goes: the worker lifts its own kill only
    lifted = [(k.decode(), ControlCommand.model_validate_json(v)) for k, v in p.tick(NOW.timestamp()).control]
    assert [(k, c.action) for k, c in lifted] == [("admission.budget:agent/acme/writer", Action.RESUME)]
    guard = guard_with((manual.key, manual), (rollback.key, rollback), *out, *lifted)
    with pytest.raises(ManualKill):
        guard.check(tenant="acme", agent="writer")
    assert guard.version("writer", "acme") == "v1"


def test_an_old_budget_kill_is_adopted_and_lifted_on_the_new_key() -> None:
    p = Processor(MemoryStore())
    old = command(Action.KILL, BUDGET_ISSUER, kill_reason="budget").model_copy(update={"policy_id": "cap"})
    p.observe_command("agent/acme/writer", dump(old))  # written before lanes, on the bare scope key
    cap = Policy.model_validate({"policy_id": "cap", "window": "calendar_day", "limit": "0.05"})
    p.observe_policy("cap", dump(cap))
    assert p.adopt_commands(NOW.timestamp()) == 1
    p.observe_policy("cap", None)
    lifted = [(k.decode(), ControlCommand.model_validate_json(v)) for k, v in p.tick(NOW.timestamp()).control]
    assert [(k, c.action) for k, c in lifted] == [("admission.budget:agent/acme/writer", Action.RESUME)]
    guard = guard_with(("agent/acme/writer", old), *lifted)
    assert runs(guard)
    assert Authority.BUDGET is lifted[0][1].decided_by
