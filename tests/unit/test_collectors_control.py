"""The Guard's decision logic on commands applied directly (no broker): scope matching,
most-specific kill, expiry, resume, failover, rollback, token bucket."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from agentledger.collectors import AgentKilled, BudgetKilled, Guard, LoopKilled, ManualKill, Throttled
from agentledger.collectors.control import TokenBucket
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind

TRACE_A = "a" * 32
TRACE_B = "b" * 32
_ids = itertools.count()


def cmd(action: Action, expires_in: float | None = None, **scope: str) -> ControlCommand:
    kind = scope.pop("kind")
    params = {
        Action.THROTTLE: CommandParams(rate_per_s=10),
        Action.FAILOVER: CommandParams(fallback_provider="anthropic"),
        Action.ROLLBACK: CommandParams(target_version="v1"),
    }.get(action, CommandParams(kill_reason=scope.pop("why", None)))  # type: ignore[arg-type]
    now = datetime.now(UTC)
    return ControlCommand(
        command_id=f"cmd-{next(_ids):06d}", ts=now, scope=Scope(kind=ScopeKind(kind), **scope),
        action=action, reason="test", params=params,
        expires_at=now + timedelta(seconds=expires_in) if expires_in is not None else None,
    )  # fmt: skip


@pytest.fixture
def guard() -> Guard:
    return Guard(start=False)


def test_nothing_applies_returns(guard: Guard) -> None:
    guard.check(tenant="acme", agent="planner")
    guard.apply(cmd(Action.KILL, kind="tenant", tenant="other"))
    guard.check(tenant="acme", agent="planner", trace_id=TRACE_A)


@pytest.mark.parametrize(
    ("scope", "check", "hit"),
    [
        ({"kind": "tenant", "tenant": "acme"}, {}, True),
        ({"kind": "agent", "tenant": "acme", "agent": "planner"}, {}, True),
        ({"kind": "agent", "tenant": "acme", "agent": "coder"}, {}, False),
        (
            {"kind": "agent_version", "tenant": "acme", "agent": "planner", "agent_version": "v2"},
            {"agent_version": "v2"},
            True,
        ),
        (
            {"kind": "agent_version", "tenant": "acme", "agent": "planner", "agent_version": "v2"},
            {"agent_version": "v1"},
            False,
        ),
        ({"kind": "workflow", "tenant": "acme", "workflow": "research"}, {"workflow": "research"}, True),
        ({"kind": "workflow", "tenant": "acme", "workflow": "research"}, {}, False),
        ({"kind": "trace", "tenant": "acme", "trace_id": TRACE_A}, {"trace_id": TRACE_A}, True),
        ({"kind": "trace", "tenant": "acme", "trace_id": TRACE_A}, {"trace_id": TRACE_B}, False),
        ({"kind": "provider", "provider": "openai"}, {}, False),
    ],
)
def test_kill_scope_matching(guard: Guard, scope: dict[str, str], check: dict[str, str], hit: bool) -> None:
    guard.apply(cmd(Action.KILL, **scope))
    if hit:
        with pytest.raises(AgentKilled):
            guard.check(tenant="acme", agent="planner", **check)
    else:
        guard.check(tenant="acme", agent="planner", **check)


def test_kill_reason_picks_the_subclass(guard: Guard) -> None:
    for why, cls in (("budget", BudgetKilled), ("loop", LoopKilled), ("manual", ManualKill)):
        guard.apply(cmd(Action.KILL, kind="agent", tenant="acme", agent=why, why=why))
        with pytest.raises(cls) as info:
            guard.check(tenant="acme", agent=why)
        assert info.value.scope_key == f"agent/acme/{why}"


def test_resume_and_expiry_end_a_kill(guard: Guard) -> None:
    guard.apply(cmd(Action.KILL, kind="agent", tenant="acme", agent="planner"))
    with pytest.raises(AgentKilled):
        guard.check(tenant="acme", agent="planner")
    guard.apply(cmd(Action.RESUME, kind="agent", tenant="acme", agent="planner"))
    guard.check(tenant="acme", agent="planner")
    guard.apply(cmd(Action.KILL, expires_in=-1, kind="tenant", tenant="acme"))
    guard.check(tenant="acme", agent="planner")
    guard.apply(None, key="tenant/acme")  # a tombstone
    assert "tenant/acme" not in guard.commands


def test_failover_and_rollback(guard: Guard) -> None:
    assert guard.provider("openai") == "openai" and guard.version("planner") is None
    guard.apply(cmd(Action.FAILOVER, kind="provider", provider="openai"))
    guard.apply(cmd(Action.ROLLBACK, kind="agent", tenant="acme", agent="planner"))
    assert guard.provider("openai") == "anthropic" and guard.provider("google") == "google"
    assert guard.version("planner") == "v1" and guard.version("planner", tenant="other") is None
    guard.apply(cmd(Action.RESUME, kind="provider", provider="openai"))
    assert guard.provider("openai") == "openai"


def test_a_tenant_failover_moves_that_tenant_only(guard: Guard) -> None:
    guard.apply(cmd(Action.FAILOVER, kind="provider", provider="openai", tenant="acme"))
    assert guard.provider("openai", tenant="acme") == "anthropic"
    assert guard.provider("openai", "gpt-4o", tenant="acme") == "anthropic"
    assert guard.provider("openai", tenant="globex") == "openai"


def test_a_tenant_failover_outlives_the_global_resume(guard: Guard) -> None:
    guard.apply(cmd(Action.FAILOVER, kind="provider", provider="openai"))
    guard.apply(cmd(Action.FAILOVER, kind="provider", provider="openai", tenant="acme"))
    guard.apply(cmd(Action.RESUME, kind="provider", provider="openai"))  # the health worker's
    assert guard.provider("openai", tenant="acme") == "anthropic"
    assert guard.provider("openai", tenant="globex") == "openai"
    assert set(guard.commands) == {
        "provider.manual:provider/openai/*",
        "provider.manual:provider@acme/openai/*",
    }


def test_the_tenant_rule_comes_first_then_the_global_one(guard: Guard) -> None:
    now = datetime.now(UTC)
    glob = cmd(Action.FAILOVER, kind="provider", provider="openai")
    guard.apply(glob.model_copy(update={"params": CommandParams(fallback_provider="google")}))
    guard.apply(cmd(Action.FAILOVER, kind="provider", provider="openai", tenant="acme"))
    assert guard.provider("openai", tenant="acme") == "anthropic"
    assert guard.provider("openai", tenant="globex") == "google"
    # acme's resume ends acme's own failover only: the global one still applies to it.
    guard.apply(cmd(Action.RESUME, kind="provider", provider="openai", tenant="acme"))
    assert guard.provider("openai", tenant="acme") == "google"
    # An expired tenant rule falls through to the global one even before the index is rebuilt.
    expired = cmd(Action.FAILOVER, kind="provider", provider="openai", tenant="acme")
    guard.apply(expired.model_copy(update={"expires_at": now + timedelta(milliseconds=50)}))
    assert guard.provider("openai", tenant="acme") == "anthropic"
    time.sleep(0.06)
    assert guard.provider("openai", tenant="acme") == "google"


def test_provider_defaults_to_the_configured_tenant(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentledger.collectors import client

    guard.apply(cmd(Action.FAILOVER, kind="provider", provider="openai", tenant="acme"))
    monkeypatch.setattr(client, "_emitter", SimpleNamespace(tenant="globex"))  # what configure() sets
    assert guard.provider("openai") == "openai"
    monkeypatch.setattr(client, "_emitter", SimpleNamespace(tenant="acme"))
    assert guard.provider("openai") == "anthropic"
    assert guard.provider("openai", tenant="globex") == "openai"


def test_throttle_without_wait_raises_with_retry_after(guard: Guard) -> None:
    guard.apply(cmd(Action.THROTTLE, kind="agent", tenant="acme", agent="planner"))
    guard.check(tenant="acme", agent="planner", wait=False)  # the bucket's one token
    with pytest.raises(Throttled) as info:
        guard.check(tenant="acme", agent="planner", wait=False)
    assert 0 < info.value.retry_after_s <= 0.1


def test_token_bucket_reserves_in_order() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    waits = [bucket.reserve(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])
    assert bucket.try_take(0.0) == pytest.approx(0.4)
    assert bucket.reserve(10.0) == 0.0  # refilled, capped at burst


def test_guard_needs_a_bootstrap_when_started(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentledger.settings import get_settings

    monkeypatch.delenv("AGENTLEDGER_KAFKA_BOOTSTRAP", raising=False)
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="bootstrap"):
        Guard()
    get_settings.cache_clear()


def test_a_kill_stops_applying_when_it_expires(guard: Guard) -> None:
    import time

    guard.apply(cmd(Action.KILL, expires_in=0.3, kind="agent", tenant="acme", agent="planner"))
    with pytest.raises(AgentKilled):
        guard.check(tenant="acme", agent="planner")
    time.sleep(0.35)
    guard.check(tenant="acme", agent="planner")  # expired: the agent goes on, no rebuild needed
