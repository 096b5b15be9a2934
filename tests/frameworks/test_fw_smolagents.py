"""smolagents (a manager with a managed agent), installed in its own venv, against the fake
provider with the one line ``al.instrument()``: through the real broker, budget worker and
warehouse. OpenInference reports no cached tokens for smolagents; the hook's record is exact."""

from __future__ import annotations

import pytest
from _checks import downgraded_after_the_threshold, policies, priced_once
from conftest import Pipeline

# the first test of a framework may build its venv (pip, cold cache: ~2 min)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_smolagents_priced_once_per_agent_a_kill_stops_only_the_managed_agent_a_downgrade_moves_manager(
    pipeline: Pipeline,
) -> None:
    pipeline.apply_policies(policies(kill="researcher", downgrade="manager"))
    report = pipeline.run("smolagents")
    assert report["adapters"] == ["smolagents"] and report["hook"]["failed"] == 0, report["_stderr"][-3000:]
    assert report["kill_seen"] and report["downgrade_seen"], report["_stderr"][-3000:]
    # the manager went on without its killed researcher; researcher's own run stopped with AgentKilled
    assert any("agent/acme/researcher killed" in e for e in report["phase2_steps_with_errors"]), report
    assert report["direct_error"] is not None and report["direct_error"]["is_agent_killed"], report
    # manager: 2 calls a run (delegate, final answer) x 3 runs; researcher: its 2 calls before the kill
    assert {a: len(m) for a, m in pipeline.requests_by_agent().items()} == {"manager": 6, "researcher": 2}
    by_agent = priced_once(pipeline)
    assert sorted(by_agent) == ["manager", "researcher"]
    assert [c.action.value for c in pipeline.commands()["admission.budget:agent/acme/researcher"]] == ["kill"]
    downgraded_after_the_threshold(pipeline, "manager", after=2, others=["researcher"])


def test_smolagents_with_openinference_spans_into_the_bridge_as_well_counts_each_call_once(
    pipeline: Pipeline,
) -> None:
    """OpenInference's smolagents instrumentation (no cached-token counts on its spans)
    exporting through the in-process bridge, and the hook: the same calls, the same exact totals."""
    pipeline.apply_policies(policies(kill="researcher", downgrade="manager"))
    report = pipeline.run("smolagents", SCENARIO_OTEL="1")
    assert report["kill_seen"] and report["direct_error"]["is_agent_killed"], report["_stderr"][-3000:]
    assert {a: len(m) for a, m in pipeline.requests_by_agent().items()} == {"manager": 6, "researcher": 2}
    assert sorted(priced_once(pipeline)) == ["manager", "researcher"]
