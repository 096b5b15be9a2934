"""A trace past its policy's wall-clock deadline is killed by the stream while it hangs on a
slow provider call (it sends nothing more); another trace of the same agent runs, and an
unrelated agent's trace is untouched. Real worker process, real broker, real openai SDK against
the local provider on 127.0.0.1, a real Guard following the control topic."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from _streams_harness import consume, start_worker
from fakeprovider import FakeProvider
from test_hook_sdk import MSGS

from agentledger import collectors as al
from agentledger import topics as topic_specs
from agentledger.collectors.exceptions import AgentKilled
from agentledger.collectors.guard import Guard
from agentledger.events import AlertEvent, ControlCommand, Policy
from agentledger.streams.policytopic import put_policies

pytestmark = pytest.mark.integration

DEADLINE = Policy.model_validate(
    {"policy_id": "writer-deadline", "deadline_s": 3, "selector": {"tenant": "acme", "agent": "writer"}}
)


def slow_trace(agent: str, fast: Any, slow: Any, out: dict[str, Any]) -> None:
    """One trace: a quick call (the stream sees the trace), a call that hangs ~7 s, then one more."""
    try:
        with al.span("task", kind="agent", agent=agent) as s:
            out["trace_id"] = s.trace_id
            fast.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
            al.flush(5)
            out["first_done"] = time.time()
            slow.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
            out["slow_done"] = time.time()
            fast.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
            out["after"] = "ran"
    except AgentKilled as exc:
        out["after"] = exc
    except Exception as exc:  # noqa: BLE001 - reported by the test
        out["error"] = exc


def test_a_hung_trace_past_its_deadline_is_killed_and_its_siblings_go_on(topics: Any, tmp_path: Path) -> None:
    asyncio.run(put_policies(topics.bootstrap, topics.prefix, [DEADLINE]))
    worker = start_worker(topics, tmp_path)
    guard = Guard(topics.bootstrap, topics.control, tools_topic=topics.prefix + topic_specs.TOOLS.name,
                  policies_topic=topics.policies)  # fmt: skip
    assert guard.wait_ready(30)
    al.configure(tenant="acme", bootstrap=topics.bootstrap, topic=topics.events, linger_ms=5)
    al.instrument(guard=guard)
    try:
        with FakeProvider() as quick, FakeProvider(delay_s=7) as hanging:
            fast = openai.OpenAI(base_url=quick.openai_base_url, api_key="sk-fake", max_retries=0)
            slow = openai.OpenAI(
                base_url=hanging.openai_base_url, api_key="sk-fake", max_retries=0, timeout=60
            )
            stuck: dict[str, Any] = {}
            bystander: dict[str, Any] = {}
            threads = [
                threading.Thread(target=slow_trace, args=("writer", fast, slow, stuck)),
                threading.Thread(target=slow_trace, args=("indexer", fast, slow, bystander)),
            ]
            for t in threads:
                t.start()
            # the stream kills the stuck trace while its call hangs: the Guard hears it
            killed: AgentKilled | None = None
            give_up = time.monotonic() + 30
            while killed is None and time.monotonic() < give_up:
                if "trace_id" in stuck:
                    try:
                        guard.check(tenant="acme", agent="writer", trace_id=stuck["trace_id"])
                    except AgentKilled as exc:
                        killed = exc
                time.sleep(0.1)
            assert killed is not None, f"no kill within 30 s: {worker.stats()['counters']}"
            assert "slow_done" not in stuck  # killed while the call still hung
            assert "3 s deadline" in str(killed)
            assert time.time() - stuck["first_done"] >= 2.5  # not before its deadline
            # another trace of the same agent, started now, runs to its end
            with al.span("task", kind="agent", agent="writer") as s:
                sibling = s.trace_id
                for _ in range(3):
                    assert fast.chat.completions.create(model="gpt-4o-mini", messages=MSGS).choices
            guard.check(tenant="acme", agent="writer", trace_id=sibling)
            for t in threads:
                t.join(30)
        assert al.flush(10)
    finally:
        al.uninstrument()
        al.shutdown(5)
        guard.close()
        worker.kill()
    assert "error" not in stuck and "error" not in bystander, (stuck, bystander)
    assert isinstance(stuck["after"], AgentKilled)  # the hooked call after the hang was refused
    assert bystander["after"] == "ran"  # the unrelated agent's trace (no deadline) ran to its end
    cmds = [
        (r.key.decode(), ControlCommand.model_validate_json(r.value))
        for r in consume(topics.bootstrap, topics.control)
    ]
    assert [k for k, _ in cmds] == [f"admission.budget:trace/acme/{stuck['trace_id']}"]
    kill = cmds[0][1]
    assert kill.action.value == "kill" and kill.policy_id == "writer-deadline"
    assert kill.cause_event_id is not None and kill.expires_at is not None
    assert kill.reason.startswith("trace exceeded its 3 s deadline (policy writer-deadline): first event ")
    alerts = [AlertEvent.model_validate_json(r.value) for r in consume(topics.bootstrap, topics.alerts)]
    assert [(a.rule, a.entity) for a in alerts] == [("trace_deadline", f"trace/acme/{stuck['trace_id']}")]
