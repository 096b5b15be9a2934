"""Runaway loops on a real broker: a trace repeating one tool call with the same arguments is
killed at the configured N-th call (trace scope, kill_reason=loop); its sibling trace of the
same agent keeps running and is still counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from _streams_harness import consume, envelopes, produce, start_worker

from agentledger.events import AlertEvent, ControlCommand, ToolCallEvent, UsageEvent
from agentledger.wire import AnyEvent

LOOPS = """
policies: []
loops:
  repeat_calls: 4
  repeat_window_s: 30
canary: {not: ours}
"""

LOOPING, SIBLING = "a" * 31 + "1", "b" * 31 + "2"


def step(trace: str, i: int, args: str, t0: datetime) -> list[AnyEvent]:
    common = {"ts": t0 + timedelta(seconds=i), "tenant": "acme", "agent": "planner", "trace_id": trace,
              "span_id": f"{i + 1:016x}"}  # fmt: skip
    return [
        UsageEvent(
            event_id=f"u-{trace[:4]}-{i:04d}",
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=500,
            output_tokens=50,
            **common,
        ),
        ToolCallEvent(event_id=f"t-{trace[:4]}-{i:04d}", tool="search", args_hash=args, **common),
    ]


def test_loop_killed_at_nth_call_sibling_alive(topics, tmp_path: Path) -> None:
    cfg = tmp_path / "policies.yaml"
    cfg.write_text(LOOPS)
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    events: list[AnyEvent] = []
    for i in range(8):  # interleaved: the looping trace repeats, the sibling makes progress
        events += step(LOOPING, i, "f" * 16, t0)
        events += step(SIBLING, i, f"{i + 1:016x}", t0)
    worker = start_worker(topics, tmp_path, "--config", str(cfg))
    try:
        produce(topics.bootstrap, topics.events, envelopes(events, size=3))
        worker.wait_events(len(events))
        sibling_cost = worker.rollup(f"trace/acme/{SIBLING}")["calendar_day"]
        assert sibling_cost["calls"] == 8  # all of the sibling's calls counted
    finally:
        worker.kill()
    cmds = [
        (r.key.decode(), ControlCommand.model_validate_json(r.value))
        for r in consume(topics.bootstrap, topics.control)
    ]
    assert [k for k, _ in cmds] == [f"admission.budget:trace/acme/{LOOPING}"]  # one kill, only that trace
    kill = cmds[0][1]
    assert kill.action.value == "kill" and kill.params.kill_reason == "loop"
    assert kill.scope.kind.value == "trace" and kill.scope.trace_id == LOOPING
    assert kill.cause_event_id == f"t-{LOOPING[:4]}-0003"  # the 4th identical call
    assert kill.expires_at is not None
    alerts = [AlertEvent.model_validate_json(r.value) for r in consume(topics.bootstrap, topics.alerts)]
    assert [(a.rule, a.dedup_key) for a in alerts] == [("runaway_loop", f"loop:trace/acme/{LOOPING}")]
