"""The hook does not ask the Guard again for a caller it has just cleared while the Guard's
index is the same (``Guard.unaffected``). Whatever changes the answer must still reach the next
call: a new command, a throttle's bucket, another caller, the Guard losing the control topic.
No network here: the SDK method is replaced by one that answers at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from agentledger import collectors as al
from agentledger.collectors import AgentKilled, Guard, MemoryTransport, Throttled, hook
from agentledger.collectors.exceptions import ControlUnavailable
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind


def command(action: Action, params: CommandParams | None = None, **scope: Any) -> ControlCommand:
    return ControlCommand(command_id=f"cmd-{action.value}-{'-'.join(map(str, scope.values()))}",
                          ts=datetime.now(UTC), scope=Scope(**scope), action=action, reason="test",
                          params=params or CommandParams())  # fmt: skip


@pytest.fixture
def call() -> Iterator[Callable[..., list[str]]]:
    """A hooked chat call (nothing sent); returns the models of the calls that went through.
    The tests run it inside one ``al.span`` of the planner: one trace, so one caller key."""
    sent: list[str] = []
    al.configure(tenant="acme", agent="planner", transport=MemoryTransport())

    def send(resource: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(kwargs["model"])

    wrapped = hook._wrap(hook.TARGETS[0], send)
    resource = type("Resource", (), {"_client": None})()

    def one(agent: str = "planner") -> list[str]:
        """One call of ``agent``, in the trace of the span the test opened (same caller key)."""
        if agent == "planner":
            wrapped(resource, model="m-planner", messages=[])
        else:
            with al.span(agent, kind="agent", agent=agent):
                wrapped(resource, model=f"m-{agent}", messages=[])
        return sent

    try:
        yield one
    finally:
        al.uninstrument()
        al.shutdown(1)


def test_a_kill_applied_after_a_cleared_call_stops_the_next_call(call: Callable[..., list[str]]) -> None:
    guard = Guard(start=False)
    other = command(Action.KILL, kind=ScopeKind.AGENT, tenant="acme", agent="coder")
    guard.apply(other, other.key)  # commands in force, none for the planner
    al.instrument(guard=guard)
    installed = hook.installed()
    assert installed is not None
    with al.span("run", kind="agent", agent="planner"):
        assert call() == ["m-planner"]
        assert list(installed.clear.values()) == [guard._index]  # the planner, cleared under it
        assert call() == ["m-planner", "m-planner"]  # without asking the Guard again
        with pytest.raises(AgentKilled):
            call("coder")  # the memo is the planner's: the coder is still stopped
        kill = command(Action.KILL, kind=ScopeKind.AGENT, tenant="acme", agent="planner")
        guard.apply(kill, kill.key)
        with pytest.raises(AgentKilled):
            call()
        with pytest.raises(AgentKilled):
            call()  # and stays stopped
        assert call("writer") == ["m-planner", "m-planner", "m-writer"]


def test_a_throttle_is_obeyed_on_every_call_not_only_the_first(call: Callable[..., list[str]]) -> None:
    guard = Guard(start=False)
    al.instrument(guard=guard, throttle="raise")
    throttle = command(Action.THROTTLE, CommandParams(rate_per_s=0.01), kind=ScopeKind.AGENT,
                       tenant="acme", agent="planner")  # fmt: skip
    passed = 0
    with al.span("run", kind="agent", agent="planner"), pytest.raises(Throttled):
        assert call() == ["m-planner"]  # cleared: nothing in force
        guard.apply(throttle, throttle.key)
        for _ in range(5):
            call()
            passed += 1
    assert passed <= 1  # a bucket of one token at most: the memo never skips a throttled caller


def test_a_guard_that_loses_the_control_topic_fails_closed_on_the_next_call(
    call: Callable[..., list[str]],
) -> None:
    guard = Guard(start=False, fail_open=False, lost_after_s=0.01, ready_timeout_s=0)
    al.instrument(guard=guard)
    with al.span("run", kind="agent", agent="planner"):
        assert call() == ["m-planner"]
        assert call() == ["m-planner", "m-planner"]  # cleared, remembered
        time.sleep(0.02)
        guard._no_contact("test: the broker stopped answering")
        with pytest.raises(ControlUnavailable):
            call()


def test_a_guard_of_another_type_is_asked_on_every_call(call: Callable[..., list[str]]) -> None:
    asked: list[str] = []

    class Counting:
        def check(self, tenant: str, agent: str, *args: Any) -> None:
            asked.append(agent)

    al.instrument(guard=Counting())
    with al.span("run", kind="agent", agent="planner"):
        call()
        call()
    assert asked == ["planner", "planner"]


def test_callers_taking_turns_each_keep_their_own_answer(call: Callable[..., list[str]]) -> None:
    guard = Guard(start=False)
    al.instrument(guard=guard)
    installed = hook.installed()
    assert installed is not None
    with al.span("run", kind="agent", agent="planner"):
        for _ in range(3):
            call()
            call("writer")
        assert len(installed.clear) == 2  # both remembered, neither pushing the other out
        kill = command(Action.KILL, kind=ScopeKind.AGENT, tenant="acme", agent="writer")
        guard.apply(kill, kill.key)
        assert call()[-1] == "m-planner"
        with pytest.raises(AgentKilled):
            call("writer")
        assert call()[-1] == "m-planner"


@pytest.mark.parametrize("how", ["subclass", "instance"])
def test_a_guard_whose_check_is_overridden_is_asked_on_every_call(
    call: Callable[..., list[str]], how: str
) -> None:
    asked: list[str] = []

    class Audited(Guard):
        def check(self, tenant: str, agent: str, *args: Any, **kw: Any) -> None:
            asked.append(agent)
            super().check(tenant, agent, *args, **kw)

    if how == "subclass":
        guard: Guard = Audited(start=False)
    else:
        guard = Guard(start=False)
        plain = guard.check

        def audited(tenant: str, agent: str, *args: Any, **kw: Any) -> None:
            asked.append(agent)
            plain(tenant, agent, *args, **kw)

        guard.check = audited  # type: ignore[method-assign]
    al.instrument(guard=guard)
    with al.span("run", kind="agent", agent="planner"):
        for _ in range(3):
            call()
    assert asked == ["planner"] * 3  # the override's audit runs for every call


def test_a_new_index_drops_what_was_remembered_under_the_old_one(call: Callable[..., list[str]]) -> None:
    guard = Guard(start=False)
    al.instrument(guard=guard)
    installed = hook.installed()
    assert installed is not None
    with al.span("run", kind="agent", agent="planner"):
        call()
        call("writer")
        old = guard._index
        assert len(installed.clear) == 2
        other = command(Action.KILL, kind=ScopeKind.AGENT, tenant="acme", agent="coder")
        guard.apply(other, other.key)  # a new index
        call()
    assert guard._index is not old
    assert list(installed.clear.values()) == [guard._index]  # nothing keeps the old index alive
