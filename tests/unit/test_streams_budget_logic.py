"""Budget logic on the Faust-free processor: window rollover resumes, two policies on one
scope merge (kill beats throttle), a manual kill is never lifted by us, selectors finer than
their scope keep their own counter, token budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agentledger.events import Action, ControlCommand, Policy, Scope, ScopeKind, UsageEvent
from agentledger.streams.worker.processor import MemoryStore, Processor
from agentledger.wire import dump, encode_envelope

NOW = datetime(2026, 11, 24, 23, 59, 0, tzinfo=UTC)
_n = iter(range(1_000_000))


def usage(agent: str = "planner", workflow: str | None = None, tokens: int = 10_000) -> UsageEvent:
    # gpt-4o, 10k in + 1k out = $0.035
    return UsageEvent(event_id=f"ev-{next(_n):08d}", ts=NOW, tenant="acme", agent=agent, workflow=workflow,
                      trace_id="a" * 32, span_id="b" * 16, provider="openai", model="gpt-4o",
                      input_tokens=tokens, output_tokens=1_000)  # fmt: skip


def policy(pid: str, limit: str, **kw: Any) -> bytes:
    return dump(Policy.model_validate({"policy_id": pid, "window": "calendar_day", "limit": limit, **kw}))


def feed(p: Processor, events: list[UsageEvent], now: datetime = NOW) -> list[ControlCommand]:
    out = p.process(encode_envelope("acme/planner", events), b"acme/planner", 0, 0, now.timestamp())
    return [ControlCommand.model_validate_json(v) for _, v in out.control]


def tick(p: Processor, now: datetime) -> list[ControlCommand]:
    return [ControlCommand.model_validate_json(v) for _, v in p.tick(now.timestamp()).control]


def test_kill_then_resume_when_the_calendar_day_rolls_over() -> None:
    p = Processor(MemoryStore())
    p.observe_policy("cap", policy("cap", "0.10"))
    events = [usage() for _ in range(4)]
    cmds = feed(p, events)
    assert [c.action for c in cmds] == [Action.KILL]
    assert cmds[0].cause_event_id == events[2].event_id  # $0.105: the third call crossed $0.10
    assert feed(p, [usage()]) == []  # still over: no second kill
    assert tick(p, NOW + timedelta(seconds=30)) == []
    resumed = tick(p, NOW + timedelta(minutes=2))  # 00:01 next day
    assert [c.action for c in resumed] == [Action.RESUME]
    assert resumed[0].scope.key == "agent/acme/planner"


def test_two_policies_merge_and_delete_lifts() -> None:
    p = Processor(MemoryStore())
    p.observe_policy(
        "soft", policy("soft", "1.00", thresholds=[{"at": 0.05, "action": "throttle", "rate_per_s": 1}])
    )
    cmds = feed(p, [usage() for _ in range(2)])  # $0.07: throttle
    assert [(c.action, c.params.rate_per_s) for c in cmds] == [(Action.THROTTLE, 1)]
    p.observe_policy("hard", policy("hard", "0.10"))
    assert [c.action for c in feed(p, [usage() for _ in range(2)])] == [Action.KILL]  # kill beats throttle
    p.observe_policy("hard", None)  # deleted: back to the other policy's throttle
    assert [(c.action, c.params.rate_per_s) for c in tick(p, NOW)] == [(Action.THROTTLE, 1)]
    p.observe_policy("soft", policy("soft", "1.00", enabled=False))
    assert [c.action for c in tick(p, NOW)] == [Action.RESUME]


def test_manual_kill_is_not_ours_to_lift() -> None:
    p = Processor(MemoryStore())
    manual = ControlCommand(command_id="manual-0001", ts=NOW, scope=Scope(kind=ScopeKind.AGENT, tenant="acme",
                            agent="planner"), action=Action.KILL, reason="operator", issued_by="api")  # fmt: skip
    p.observe_command(manual.key, dump(manual))
    p.observe_policy("cap", policy("cap", "0.05"))
    # the budget kills on its own key; the human's kill is another key, never ours to lift
    assert [(c.key, c.action) for c in feed(p, [usage() for _ in range(2)])] == [
        ("admission.budget:agent/acme/planner", Action.KILL)
    ]
    p.observe_policy("cap", None)
    assert [(c.key, c.action) for c in tick(p, NOW)] == [
        ("admission.budget:agent/acme/planner", Action.RESUME)
    ]
    assert p.enforcer.current[manual.key] == manual


def test_fine_selector_counts_only_matching_events_and_tokens_unit() -> None:
    p = Processor(MemoryStore())
    # per agent, but only the research workflow's spend; limit in tokens
    p.observe_policy("research", policy("research", "25000", unit="tokens",
                                        selector={"per": "agent", "workflow": "research"}))  # fmt: skip
    assert feed(p, [usage(workflow="support") for _ in range(5)]) == []  # 55k tokens elsewhere
    cmds = feed(p, [usage(workflow="research"), usage(workflow="research"), usage(workflow="research")])
    assert [c.action for c in cmds] == [Action.KILL]
    assert p.spend_of(p.engine.policies["research"], _agent_ref(), NOW.timestamp()).tokens == 33_000


def _agent_ref() -> Any:
    from agentledger.streams.worker.scopes import ScopeRef

    return ScopeRef(ScopeKind.AGENT, tenant="acme", agent="planner")


def test_priced_output_split_under_the_record_limit_and_unknown_model_alerts_once() -> None:
    from agentledger.wire import decode_priced

    p = Processor(MemoryStore(), max_record_bytes=30_000)
    events = [usage() for _ in range(400)] + [
        UsageEvent(event_id=f"unk-{i:05d}", ts=NOW, tenant="acme", agent="planner", trace_id="a" * 32,
                   span_id="b" * 16, provider="acme-ai", model="secret-1", input_tokens=5, output_tokens=5)
        for i in range(3)
    ]  # fmt: skip
    out = p.process(encode_envelope("acme/planner", events), b"acme/planner", 0, 0, NOW.timestamp())
    assert len(out.priced) > 1 and all(len(v) <= 30_000 for _, v in out.priced)
    priced = [pe for _, v in out.priced for pe in decode_priced(v)[1]]
    assert [pe.event.event_id for pe in priced] == [e.event_id for e in events]
    assert [pe.priced for pe in priced[-3:]] == [False] * 3 and priced[-1].cost_usd == 0
    alerts = [v for _, v in out.alerts if b"unpriced_model" in v]
    assert len(alerts) == 1  # one per model, not per event
    assert p.totals("agent/acme/planner", "calendar_day", NOW.timestamp()).unpriced == 3


def test_restarted_worker_resumes_a_kill_it_left_behind() -> None:
    store = MemoryStore()  # the table survives the restart (changelog); the processor does not
    before = Processor(store)
    before.observe_policy("cap", policy("cap", "0.10"))
    kill = feed(before, [usage() for _ in range(4)])[0]
    after = Processor(store)
    after.observe_policy("cap", policy("cap", "0.10"))
    after.observe_command(kill.scope.key, dump(kill))
    assert after.adopt_commands(NOW.timestamp()) == 1
    assert tick(after, NOW) == []  # still over: nothing new
    assert [c.action for c in tick(after, NOW + timedelta(minutes=2))] == [Action.RESUME]  # next day


def test_idle_traces_are_evicted_after_a_day() -> None:
    p = Processor(MemoryStore())
    feed(p, [usage()])
    trace_keys = [k for k in p.store.all_keys() if k.startswith("trace/")]
    assert len(trace_keys) == 1
    assert p.evict_idle_traces(NOW.timestamp() + 3600) == 0
    assert p.evict_idle_traces(NOW.timestamp() + 86401) == 1
    assert [k for k in p.store.all_keys() if k.startswith("trace/")] == []
    assert p.totals("agent/acme/planner", "calendar_month", NOW.timestamp()).calls == 1  # others stay
