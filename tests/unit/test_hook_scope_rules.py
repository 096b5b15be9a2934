"""User and conversation scopes: the Guard obeys commands on them, and the caller's user and
conversation come from ``al.span`` / ``configure``, else the request's own fields, else the
active OpenTelemetry spans."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from agentledger import collectors as al
from agentledger.collectors import AgentKilled, Guard
from agentledger.collectors.naming import Caller, from_request, resolve
from agentledger.events import Action, CommandParams, ControlCommand, Policy, Scope, ScopeKind
from agentledger.wire import dump

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def command(action: Action, params: CommandParams | None = None, **scope: Any) -> ControlCommand:
    return ControlCommand(command_id=f"cmd-{len(scope):04d}-{action.value}", ts=NOW, scope=Scope(**scope),
                          action=action, reason="test", params=params or CommandParams())  # fmt: skip


def test_a_kill_on_one_user_or_conversation_stops_only_that_one() -> None:
    guard = Guard(start=False)
    user_kill = command(Action.KILL, kind=ScopeKind.USER, tenant="acme", user="mallory")
    conv_kill = command(Action.KILL, kind=ScopeKind.CONVERSATION, tenant="acme", conversation="conv-9")
    for cmd in (user_kill, conv_kill):
        guard.apply(cmd, cmd.key)
    assert (user_kill.key, conv_kill.key) == (
        "admission.manual:user/acme/mallory",
        "admission.manual:conversation/acme/conv-9",
    )
    with pytest.raises(AgentKilled) as info:
        guard.check("acme", "planner", user="mallory")
    assert info.value.command_id == user_kill.command_id
    with pytest.raises(AgentKilled):
        guard.check("acme", "coder", user="alice", conversation="conv-9")
    guard.check("acme", "planner", user="alice", conversation="conv-1")  # others go on
    guard.check("acme", "planner")  # a call for no user at all too
    guard.check("globex", "planner", user="mallory")  # the same name in another tenant


def test_a_downgrade_on_a_user() -> None:
    guard = Guard(start=False)
    cmd = command(Action.DOWNGRADE, CommandParams(model="gpt-4o-mini"), kind=ScopeKind.USER, tenant="acme",
                  user="free-tier")  # fmt: skip
    guard.apply(cmd, cmd.key)
    assert guard.downgrade("gpt-4o", "acme", "planner", user="free-tier") == "gpt-4o-mini"
    assert guard.downgrade("gpt-4o", "acme", "planner", user="paying") is None


@pytest.fixture
def em() -> Iterator[Any]:
    emitter = al.configure(
        tenant="acme", agent="support", transport=al.MemoryTransport(), user="default-user"
    )
    yield emitter
    al.shutdown(1)


def test_the_caller_is_named_by_span_then_configure(em: Any) -> None:
    assert (resolve(em).user, resolve(em).conversation) == ("default-user", None)
    # the inner span inherits the outer one's user and conversation
    with (
        al.span("session", kind="workflow", user="alice", conversation="conv-1"),
        al.span("turn", agent="triage"),
    ):
        caller = resolve(em)
        assert (caller.agent, caller.user, caller.conversation) == ("triage", "alice", "conv-1")
    with pytest.raises(ValueError, match="user"):
        al.span("x", user="a/b")


def test_the_request_names_the_user_and_conversation_when_nothing_else_does() -> None:
    def caller() -> Caller:
        return Caller("acme", "a", None, None, None, None, None)

    for kwargs, want in [
        ({"user": "u-1"}, ("u-1", None)),
        ({"safety_identifier": "hash-7"}, ("hash-7", None)),
        ({"metadata": {"user_id": "u-2"}}, ("u-2", None)),  # anthropic
        ({"conversation": "conv_abc"}, (None, "conv_abc")),  # responses
        ({"conversation": {"id": "conv_def"}}, (None, "conv_def")),
        ({"user": "a/b", "conversation": 7}, (None, None)),  # not a name: left out, never raises
    ]:
        c = caller()
        from_request(c, kwargs)
        assert (c.user, c.conversation) == want, kwargs
    named = Caller("acme", "a", None, None, None, None, None, "alice", "conv-1")
    from_request(named, {"user": "u-1", "conversation": "conv_abc"})
    assert (named.user, named.conversation) == ("alice", "conv-1")  # al.span / configure first


def test_opentelemetry_spans_name_the_user_and_conversation() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    assert al.naming.track_open_spans(provider)
    tracer = provider.get_tracer("test")
    emitter = al.Emitter(tenant="acme", transport=al.MemoryTransport())
    try:
        agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Writer"}
        with (
            tracer.start_as_current_span("session", attributes={"enduser.id": "bob", "session.id": "s-1"}),
            tracer.start_as_current_span("invoke_agent", attributes=agent),
            tracer.start_as_current_span("chat gpt-4o"),
        ):
            caller = resolve(emitter)
        assert (caller.agent, caller.user, caller.conversation) == ("Writer", "bob", "s-1")
    finally:
        emitter.shutdown(1)


def test_the_contract_of_user_and_conversation_scopes() -> None:
    with pytest.raises(ValidationError, match="needs user"):
        Scope(kind=ScopeKind.USER, tenant="acme")
    # the streams worker counts them (docs/adr/0011): policies per user / conversation are valid
    p = Policy.model_validate({"policy_id": "p", "window": "1h", "limit": 1, "selector": {"per": "user"}})
    assert p.selector.per is ScopeKind.USER
    # Scopes of the older kinds carry no user/conversation keys: older Guards still read them.
    assert "user" not in json.loads(dump(Scope(kind=ScopeKind.AGENT, tenant="acme", agent="a")))
