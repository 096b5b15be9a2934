"""The demo as a newcomer runs it: every story happens, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from _streams_harness import truth_cost

from agentledger.events import UsageEvent


def _env(kafka_bootstrap: str, home: Path) -> dict[str, str]:
    return {**os.environ, "AGENTLEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap, "AGENTLEDGER_HOME": str(home),
            "COLUMNS": "160"}  # fmt: skip


def _demo_processes(run_marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if run_marker in cmdline:
            found.append(f"{proc.name}: {cmdline[:160]}")
    return found


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-home")


@pytest.fixture(scope="module")
def outcome(kafka_bootstrap: str, demo_home: Path) -> dict:
    out = demo_home / "outcome.json"
    proc = subprocess.run(
        [sys.executable, "-m", "agentledger", "demo", "--short", "--json", str(out)],
        env=_env(kafka_bootstrap, demo_home), capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    doc["stdout"] = proc.stdout
    return doc


def _commands(outcome: dict, action: str, scope_prefix: str) -> list[dict]:
    return [
        c for c in outcome["commands"] if c["action"] == action and c["scope_key"].startswith(scope_prefix)
    ]


def test_runaway_loop_is_killed_and_siblings_go_on(outcome: dict) -> None:
    kills = _commands(outcome, "kill", "trace/acme/")
    assert len(kills) == 1 and kills[0]["kill_reason"] == "loop"
    assert outcome["loop_calls_before_kill"] is not None and outcome["loop_calls_before_kill"] <= 6
    spend = {(r["tenant"], r["agent"]): r for r in outcome["spend"]}
    assert spend[("acme", "researcher")]["calls"] > 50  # acme's other research traces went on


def test_budget_throttles_then_kills_one_agent_only(outcome: dict) -> None:
    throttles = _commands(outcome, "throttle", "agent/globex/writer")
    kills = _commands(outcome, "kill", "agent/globex/writer")
    assert len(throttles) == 1 and len(kills) == 1  # one command per scope, no flood
    assert throttles[0]["ts"] < kills[0]["ts"]
    assert kills[0]["latency_ms"] is not None and kills[0]["latency_ms"] < 1000
    assert outcome["killed_steps"] > 0 and outcome["throttled"] > 0
    spend = {(r["tenant"], r["agent"]): r for r in outcome["spend"]}
    writer = spend[("globex", "writer")]
    assert 0.25 <= float(writer["cost_usd"]) < 0.25 * 1.5  # the kill held the overshoot to a few calls
    assert spend[("globex", "planner")]["calls"] > 5 * writer["calls"]  # siblings went on
    assert not _commands(outcome, "kill", "agent/globex/planner")


def test_regressed_version_is_rolled_back_at_its_first_rollout_step(outcome: dict) -> None:
    routes = _commands(outcome, "route", "agent/acme/writer")
    assert routes and routes[0]["reason"].startswith("rollout started: 25%")
    rolled_back = [r for r in routes if r["reason"].startswith("rolled back at step 1:")]
    assert len(rolled_back) == 1
    assert "faithfulness" in rolled_back[0]["reason"] or "cost per task" in rolled_back[0]["reason"]
    assert not _commands(outcome, "rollback", "agent/acme/writer")  # the canary judge stayed out of it
    said = [o["text"] for o in outcome["observations"] if o["story"] == "canary"]
    assert any("rolled back at step 1: every task routed to v1" in t for t in said), said


def test_provider_fails_over_and_comes_back(outcome: dict) -> None:
    failover = _commands(outcome, "failover", "provider/openai")
    resume = _commands(outcome, "resume", "provider/openai")
    assert failover and resume and failover[0]["ts"] < resume[-1]["ts"]
    texts = [o["text"] for o in outcome["observations"] if o["story"] == "failover"]
    assert any("fails over to anthropic" in t for t in texts) and any("back on openai" in t for t in texts)


def test_framework_agent_priced_exactly_and_killed_by_its_budget(outcome: dict) -> None:
    """acme/summarizer is a real Pydantic AI agent behind al.instrument(): every call the local
    provider served is in the warehouse under its own name at the exact price, and its budget's
    kill stopped its calls inside the process."""
    fw = outcome["framework"]
    assert fw is not None and fw["available"], "pydantic-ai-slim is in the dev group"
    assert fw["errors"] == [] and fw["answered"] > 0
    u = fw["usage"]
    one_call = truth_cost(
        UsageEvent(
            event_id="price-check", ts=datetime.now(UTC), tenant="acme", agent="summarizer",
            trace_id="1" * 32, span_id="1" * 16, provider="openai", model=fw["model"],
            input_tokens=u["input_tokens"], output_tokens=u["output_tokens"],
            cache_read_tokens=u["cache_read_tokens"],
        ),
        "openai",
    )  # fmt: skip
    spend = {(r["tenant"], r["agent"]): r for r in outcome["spend"]}
    row = spend[("acme", "summarizer")]
    assert row["calls"] == fw["served"] == fw["answered"]
    assert Decimal(str(row["cost_usd"])) == one_call * fw["served"] > 0
    # killed by its budget: one command, and nothing reached the provider after it
    kills = _commands(outcome, "kill", "agent/acme/summarizer")
    assert len(kills) == 1 and kills[0]["kill_reason"] == "budget"
    assert fw["kill"].startswith("BudgetKilled") and fw["refused"] > 0
    assert fw["served_at_kill"] == fw["served"]
    assert Decimal("0.05") <= one_call * fw["served"] < Decimal("0.05") + 3 * one_call
    said = [o["text"] for o in outcome["observations"] if o["story"] == "hook"]
    assert any(
        t.startswith("acme/summarizer (Pydantic AI) killed: BudgetKilled")
        and t.endswith("its next call never left the process")
        for t in said
    ), said
    assert "summarizer" in outcome["stdout"]  # in the final spend table


def test_summary_alerts_warehouse_and_report(outcome: dict) -> None:
    assert outcome["dropped"] == 0 and outcome["failed"] == 0
    assert outcome["warehouse_events"] == outcome["sent"] > 1000
    assert {"slack", "pagerduty", "webhook"} <= set(outcome["alerts_received"])
    report = Path(outcome["report"])
    assert report.stat().st_size > 100_000 and "plotly" in report.read_text()[:200_000].lower()
    for title in ("spend per tenant and agent", "commands issued", "what the agents saw"):
        assert title in outcome["stdout"]
    # a one-time sign-in link, never the admin key (outcome.json is a file anyone may read)
    assert "/ui/link?token=" in outcome["dashboard_url"]
    key = re.compile(r"al_[0-9a-f]{12}_")
    assert not key.search(Path(outcome["run_dir"], "outcome.json").read_text())
    assert not key.search(outcome["stdout"]) and outcome["dashboard_url"] in outcome["stdout"]


def test_second_run_then_ctrl_c_stops_everything(
    outcome: dict, kafka_bootstrap: str, demo_home: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentledger", "demo", "--short"], env=_env(kafka_bootstrap, demo_home),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if re.search(r"\[00:0[2-9]", line) or not line:  # the second run's stories are under way
            break
    run_dirs = sorted(p.name for p in (demo_home / "demo").iterdir())
    assert len(run_dirs) == 2, run_dirs  # a run of its own, beside the first
    assert _demo_processes(run_dirs[-1]), "".join(lines)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=90)
    assert "stopping" in rest, "".join(lines) + rest
    assert _demo_processes(run_dirs[-1]) == []
