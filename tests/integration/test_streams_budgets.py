"""Budgets on a real broker: soft thresholds throttle at the right spend, one kill per breached
scope (no floods), alerts on each transition, and resume when the policy is raised."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from _streams_harness import consume, envelopes, produce, start_worker, truth_cost

from agentledger.events import AlertEvent, BudgetStatus, ControlCommand, UsageEvent

POLICY = """
policies:
  - policy_id: agent-cap
    selector: {{per: agent}}
    window: calendar_day
    limit: {agent_limit}
    thresholds:
      - {{at: 0.5, action: alert}}
      - {{at: 0.8, action: throttle, rate_per_s: 2}}
    hard_action: kill
  - policy_id: globex-cap
    selector: {{tenant: globex, per: tenant}}
    window: calendar_day
    limit: 0.3
    hard_action: kill
alerts: {{ignored: by the streams worker}}
"""


def calls(tenant: str, agent: str, n: int, start: int) -> list[UsageEvent]:
    t0 = datetime.now(UTC) - timedelta(seconds=20)
    return [
        UsageEvent(
            event_id=f"{tenant}-{agent}-{i:05d}",
            ts=t0 + timedelta(milliseconds=i),
            tenant=tenant,
            agent=agent,
            trace_id=f"{i + 1:032x}",
            span_id=f"{i + 1:016x}",
            provider="openai",
            model="gpt-4o",
            input_tokens=10_000,
            output_tokens=1_000,
        )
        for i in range(start, start + n)
    ]


def apply(topics, tmp_path: Path, agent_limit: str) -> None:
    f = tmp_path / "policies.yaml"
    f.write_text(POLICY.format(agent_limit=agent_limit))
    env = dict(
        os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=topics.bootstrap, AGENTLEDGER_TOPIC_PREFIX=topics.prefix
    )
    subprocess.run([sys.executable, "-m", "agentledger", "policies", "apply", str(f)], env=env, check=True,
                   capture_output=True)  # fmt: skip


def crossing(events: list[UsageEvent], line: Decimal) -> str:
    total = Decimal(0)
    for ev in events:
        total += truth_cost(ev, "openai")
        if total >= line:
            return ev.event_id
    raise AssertionError("never crossed")


def commands(topics) -> dict[str, list[ControlCommand]]:
    out: dict[str, list[ControlCommand]] = {}
    for rec in consume(topics.bootstrap, topics.control, timeout=2):
        out.setdefault(rec.key.decode(), []).append(ControlCommand.model_validate_json(rec.value))
    return out


def test_thresholds_kill_once_and_resume_when_raised(topics, tmp_path: Path) -> None:
    apply(topics, tmp_path, "1.00")
    planner = calls("acme", "planner", 40, 0)  # $0.035 a call: $1.40, over the hard limit
    coder = calls("acme", "coder", 25, 0)  # $0.875: past the 80 % throttle, under the limit
    critic = calls("acme", "critic", 10, 0)  # $0.35: under every threshold
    globex = calls("globex", "planner", 12, 0)  # $0.42: over the tenant cap, under the agent cap
    assert truth_cost(planner[0], "openai") == Decimal("0.035")
    worker = start_worker(topics, tmp_path)
    try:
        produce(topics.bootstrap, topics.events, envelopes(planner + coder + critic + globex, size=7))
        worker.wait_events(87)
        # more spend after the kill (to $1.505) must not produce a second kill
        produce(topics.bootstrap, topics.events, envelopes(calls("acme", "planner", 3, 40), size=1))
        worker.wait_events(90)
        time.sleep(1.0)
        cmds = commands(topics)
        p = cmds["admission.budget:agent/acme/planner"]
        assert [c.action.value for c in p] == ["throttle", "kill"]
        assert p[0].params.rate_per_s == 2 and p[0].policy_id == "agent-cap"
        assert p[0].cause_event_id == crossing(planner, Decimal("0.80"))
        assert p[1].cause_event_id == crossing(planner, Decimal("1.00"))
        assert p[1].params.kill_reason == "budget" and p[1].scope.kind.value == "agent"
        assert [c.action.value for c in cmds["admission.budget:agent/acme/coder"]] == ["throttle"]
        assert cmds["admission.budget:agent/acme/coder"][0].cause_event_id == crossing(coder, Decimal("0.80"))
        assert "admission.budget:agent/acme/critic" not in cmds
        assert [c.action.value for c in cmds["admission.budget:tenant/globex"]] == ["kill"]
        assert cmds["admission.budget:tenant/globex"][0].cause_event_id == crossing(globex, Decimal("0.3"))
        assert set(cmds) == {
            "admission.budget:agent/acme/planner",
            "admission.budget:agent/acme/coder",
            "admission.budget:tenant/globex",
        }

        # raising the limit lifts the kill and the throttle
        apply(topics, tmp_path, "2.00")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            cmds = commands(topics)
            if (
                len(cmds["admission.budget:agent/acme/planner"]) == 3
                and len(cmds["admission.budget:agent/acme/coder"]) == 2
            ):
                break
        assert cmds["admission.budget:agent/acme/planner"][-1].action.value == "resume"
        assert cmds["admission.budget:agent/acme/coder"][-1].action.value == "resume"
        assert [c.action.value for c in cmds["admission.budget:tenant/globex"]] == [
            "kill"
        ]  # still over its own cap
        time.sleep(1.2)  # status updates are throttled to one a second per key
    finally:
        worker.kill()
    alerts: dict[str, list[str]] = {}
    for rec in consume(topics.bootstrap, topics.alerts, timeout=2):
        a = AlertEvent.model_validate_json(rec.value)
        alerts.setdefault(a.dedup_key, []).append(a.state.value)
    assert alerts["budget:agent-cap:agent/acme/planner"] == ["warn", "warn", "alert", "warn"]
    assert alerts["budget:agent-cap:agent/acme/coder"] == ["warn", "warn", "resolved"]
    assert "budget:agent-cap:agent/acme/critic" not in alerts
    assert alerts["budget:globex-cap:tenant/globex"] == ["alert"]
    # live budget state on the compacted budgets topic (what the API shows): latest per key
    status = {
        r.key.decode(): BudgetStatus.model_validate_json(r.value)
        for r in consume(topics.bootstrap, topics.budgets)
    }
    planner = status["agent-cap|agent/acme/planner"]
    assert (planner.spend, planner.limit, planner.state.value) == (Decimal("1.505"), Decimal("2.00"), "warn")
    assert status["agent-cap|agent/acme/coder"].state.value == "ok"
    assert status["globex-cap|tenant/globex"].state.value == "killed"
    assert status["agent-cap|agent/acme/critic"].spend == Decimal("0.35")
