"""The Guard on the real broker: state read from the start of the compacted control topic,
a new command obeyed by another process, trace-scoped kills isolated, throttle rate kept."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from agentledger import wire
from agentledger.collectors import AgentKilled, BudgetKilled, Emitter, Guard, MemoryTransport, guarded
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind


def command(action: Action, params: CommandParams | None = None, **scope: Any) -> ControlCommand:
    return ControlCommand(
        command_id=f"cmd-{uuid.uuid4().hex[:12]}", ts=datetime.now(UTC), scope=Scope(**scope),
        action=action, reason="integration test", params=params or CommandParams(),
    )  # fmt: skip


def produce(bootstrap: str, topic: str, *commands: ControlCommand) -> None:
    async def run() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for cmd in commands:
                await producer.send_and_wait(topic, wire.dump(cmd), key=cmd.key.encode())
        finally:
            await producer.stop()

    asyncio.run(run())


def wait_until(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_state_is_read_from_the_start_and_resume_is_followed(topics: Any) -> None:
    kill = command(Action.KILL, CommandParams(kill_reason="budget"), kind=ScopeKind.AGENT, tenant="acme", agent="planner")  # fmt: skip
    produce(topics.bootstrap, topics.control, kill)
    guard = Guard(topics.bootstrap, topics.control)
    try:
        assert guard.wait_ready(30)
        with pytest.raises(BudgetKilled) as info:
            guard.check(tenant="acme", agent="planner")
        assert info.value.command_id == kill.command_id
        guard.check(tenant="acme", agent="coder")
        produce(topics.bootstrap, topics.control, command(Action.RESUME, kind=ScopeKind.AGENT, tenant="acme", agent="planner"))  # fmt: skip

        def resumed() -> bool:
            try:
                guard.check(tenant="acme", agent="planner")
                return True
            except AgentKilled:
                return False

        assert wait_until(resumed)
    finally:
        guard.close()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from agentledger.collectors import Guard, AgentKilled
    guard = Guard(sys.argv[1], sys.argv[2])
    assert guard.wait_ready(30)
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            guard.check(tenant="acme", agent="planner")
        except AgentKilled as exc:
            print("killed", type(exc).__name__, exc.command_id, flush=True)
            sys.exit(0)
        time.sleep(0.0005)
    sys.exit(3)
    """
)


def test_a_new_command_stops_an_agent_in_another_process(topics: Any) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, topics.bootstrap, topics.control], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        kill = command(Action.KILL, CommandParams(kill_reason="budget"), kind=ScopeKind.AGENT, tenant="acme", agent="planner")  # fmt: skip
        produce(topics.bootstrap, topics.control, kill)
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0
    assert out.split() == ["killed", "BudgetKilled", kill.command_id]


def test_trace_scoped_kill_stops_that_trace_only(topics: Any) -> None:
    em = Emitter(tenant="acme", agent="planner", transport=MemoryTransport())
    guard = Guard(topics.bootstrap, topics.control)
    try:
        assert guard.wait_ready(30)
        with em.span("run-1") as run1:
            pass
        produce(topics.bootstrap, topics.control, command(Action.KILL, kind=ScopeKind.TRACE, tenant="acme", trace_id=run1.trace_id))  # fmt: skip
        assert wait_until(lambda: len(guard.commands) == 1)
        with pytest.raises(AgentKilled):
            guard.check(tenant="acme", agent="planner", trace_id=run1.trace_id)
        with em.span("run-2"), guarded(guard, tenant="acme", agent="planner"):
            pass  # another trace of the same agent goes on
        guard.check(tenant="acme", agent="planner")
        with pytest.raises(AgentKilled), guarded(guard, tenant="acme", agent="planner"):
            from agentledger.collectors import attach, detach

            token = attach(run1)  # work resumed inside the killed trace
            try:
                with guarded(guard, tenant="acme", agent="planner"):
                    pass
            finally:
                detach(token)
    finally:
        guard.close()
        em.shutdown(1)


def test_throttle_rate_is_kept_within_ten_percent(topics: Any) -> None:
    rate = 20.0
    guard = Guard(topics.bootstrap, topics.control)
    try:
        assert guard.wait_ready(30)
        throttle = command(Action.THROTTLE, CommandParams(rate_per_s=rate, burst=1), kind=ScopeKind.AGENT, tenant="acme", agent="planner")  # fmt: skip
        produce(topics.bootstrap, topics.control, throttle)
        assert wait_until(lambda: len(guard.commands) == 1)
        guard.check(tenant="acme", agent="planner")  # spend the saved token
        calls = 41
        started = time.monotonic()
        for _ in range(calls):
            guard.check(tenant="acme", agent="planner")
        observed = calls / (time.monotonic() - started)
        assert rate * 0.9 <= observed <= rate * 1.1, observed
        guard.check(tenant="acme", agent="coder")  # other agents are not throttled
    finally:
        guard.close()
