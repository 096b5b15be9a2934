"""Screen verdicts on a real broker: the budget worker turns a client's `kill` verdict into a
trace kill on the control topic (so the trace stops in every process), and a tool whose
outputs are flagged in three distinct traces into one quarantine alert on the alerts topic and
a deny policy for that tool on the tools topic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from _streams_harness import consume, envelopes, produce, start_worker

from agentledger.events import AlertEvent, ControlCommand, ScreenEvent
from agentledger.tools import ToolDecision, ToolPolicy, decide
from agentledger.topics import TOOLS
from agentledger.wire import AnyEvent

KILLED, OTHERS = "c" * 31 + "1", ["d" * 31 + str(i) for i in range(3)]


def verdict(i: int, trace: str, action: str, source: str, t0: datetime) -> ScreenEvent:
    return ScreenEvent(
        event_id=f"scr-{i:04d}", ts=t0 + timedelta(seconds=i), tenant="acme", agent="writer",
        trace_id=trace, span_id=f"{i + 1:016x}", channel="tool", source=source,
        detector="rules+linear-v1", score=0.9, flagged=True, action=action,
    )  # fmt: skip


def test_kill_verdict_kills_the_trace_and_a_repeat_source_raises_quarantine(topics, tmp_path: Path) -> None:
    cfg = tmp_path / "policies.yaml"
    cfg.write_text("policies: []\n")
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    events: list[AnyEvent] = [verdict(0, KILLED, "kill", "browser", t0)]
    events += [verdict(1 + i, trace, "record", "fetch", t0) for i, trace in enumerate(OTHERS)]
    worker = start_worker(topics, tmp_path, "--config", str(cfg))
    try:
        produce(topics.bootstrap, topics.events, envelopes(events, size=2))
        worker.wait_events(len(events))
    finally:
        worker.kill()
    cmds = [
        (r.key.decode(), ControlCommand.model_validate_json(r.value))
        for r in consume(topics.bootstrap, topics.control)
    ]
    assert [k for k, _ in cmds] == [
        f"admission.budget:trace/acme/{KILLED}"
    ]  # the kill verdict's trace only, admission lane
    kill = cmds[0][1]
    assert kill.action.value == "kill" and kill.scope.trace_id == KILLED
    assert kill.cause_event_id == "scr-0000" and kill.expires_at is not None
    alerts = [AlertEvent.model_validate_json(r.value) for r in consume(topics.bootstrap, topics.alerts)]
    assert [(a.rule, a.entity) for a in alerts] == [("injection_source", "tool/fetch")]
    assert alerts[0].figures["traces"] == 3
    # and quarantined: the tools topic, which every Guard and the tools API read, denies it
    ((key, policy),) = [
        (r.key.decode(), ToolPolicy.model_validate_json(r.value))
        for r in consume(topics.bootstrap, topics.prefix + TOOLS.name)
    ]
    assert key == f"policy:{alerts[0].figures['tool_policy_id']}" == f"policy:{policy.policy_id}"
    assert decide([policy], "acme", "writer", None, "fetch").decision is ToolDecision.DENY
