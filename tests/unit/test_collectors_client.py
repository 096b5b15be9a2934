"""The module-level helpers on the process-wide emitter, and the public names agents import."""

from __future__ import annotations

import asyncio

import pytest

import agentledger.collectors as al
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind


def test_public_names() -> None:
    for name in ("configure", "span", "record_usage", "record_quality", "record_tool_call", "flush",
                 "shutdown", "stats", "Emitter", "Guard", "guarded", "AgentKilled", "inject", "extract",
                 "KafkaTransport", "HttpTransport", "MemoryTransport", "usage_from_openai",
                 "usage_from_anthropic"):  # fmt: skip
        assert name in al.__all__ and hasattr(al, name)
    from agentledger.collectors.otel import AgentLedgerSpanProcessor

    assert AgentLedgerSpanProcessor


def test_module_helpers_and_guarded_use_the_configured_emitter() -> None:
    mem = al.MemoryTransport()
    al.configure(tenant="acme", agent="planner", transport=mem, linger_ms=1)
    guard = al.Guard(start=False)
    try:

        @al.guarded(guard)
        @al.span("step", kind="llm")
        def step() -> None:
            al.record_usage("openai", "gpt-4o", 10, 2)
            al.record_quality("helpfulness", 0.9, "judge")
            al.record_tool_call("search", {"q": 1}, "error")

        step()
        assert al.flush(5)
        assert al.stats() == {"sent": 4, "dropped": 0, "failed": 0, "queued": 0, "rejected": 0}
        assert {e["type"] for e in mem.events} == {"span", "usage", "quality", "tool_call"}

        guard.apply(ControlCommand(command_id="cmd-00000001", ts=mem.events[0]["ts"], action=Action.KILL,
                                   reason="r", scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent="planner"),
                                   params=CommandParams(kill_reason="manual")))  # fmt: skip
        with pytest.raises(al.ManualKill):
            step()

        @al.guarded(guard, agent="other")
        async def other() -> str:
            return "ran"

        assert asyncio.run(other()) == "ran"
    finally:
        assert al.shutdown(2)
    assert al.stats()["sent"] == 0  # no emitter any more
