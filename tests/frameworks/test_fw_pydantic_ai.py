"""Pydantic AI (a manager on OpenAI delegating to a researcher on Anthropic from a tool),
installed in its own venv, against the fake provider with the one line ``al.instrument()``:
through the real broker, budget worker and warehouse."""

from __future__ import annotations

import pytest
from _checks import downgraded_after_the_threshold, policies, priced_once
from conftest import Pipeline

# the first test of a framework may build its venv (pip, cold cache: ~2 min)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_pydantic_ai_priced_once_per_agent_a_kill_stops_only_the_delegate_a_downgrade_moves_manager(
    pipeline: Pipeline,
) -> None:
    pipeline.apply_policies(policies(kill="researcher", downgrade="manager"))
    report = pipeline.run("pydantic_ai")
    assert report["adapters"] == ["pydantic_ai"] and report["hook"]["failed"] == 0, report["_stderr"][-3000:]
    assert report["kill_seen"] and report["downgrade_seen"], report["_stderr"][-3000:]
    error = report["phase2_error"]
    assert error is not None and error["is_agent_killed"], error  # out of run_sync as AgentKilled itself
    assert report["phase3"] == "4"  # the manager goes on
    # manager: 2 calls a delegated run (tool call, answer) x 2, its tool call of phase 2, 1 in
    # phase 3; researcher: its 2 calls before the kill
    assert {a: len(m) for a, m in pipeline.requests_by_agent().items()} == {"manager": 6, "researcher": 2}
    by_agent = priced_once(pipeline)
    assert sorted(by_agent) == ["manager", "researcher"]
    assert {r["provider"] for r in by_agent["researcher"]} == {"anthropic"}  # cache reads outside its input
    assert [c.action.value for c in pipeline.commands()["admission.budget:agent/acme/researcher"]] == ["kill"]
    downgraded_after_the_threshold(pipeline, "manager", after=2, others=["researcher"])


def test_pydantic_ai_with_its_own_instrumentation_into_the_bridge_as_well_counts_each_call_once(
    pipeline: Pipeline,
) -> None:
    """Pydantic AI's OpenTelemetry instrumentation (``Agent.instrument_all``) exporting through
    the in-process bridge, and the hook: the same calls, the same totals."""
    pipeline.apply_policies(policies(kill="researcher", downgrade="manager"))
    report = pipeline.run("pydantic_ai", SCENARIO_OTEL="1")
    assert report["kill_seen"] and report["phase2_error"]["is_agent_killed"], report["_stderr"][-3000:]
    assert {a: len(m) for a, m in pipeline.requests_by_agent().items()} == {"manager": 6, "researcher": 2}
    assert sorted(priced_once(pipeline)) == ["manager", "researcher"]
