"""Haystack, installed in its own venv, against the fake provider with the one line
``al.instrument()``: through the real broker, budget worker and warehouse."""

from __future__ import annotations

import pytest
from _checks import downgraded_after_the_threshold, policies, priced_once
from conftest import Pipeline

pytestmark = pytest.mark.integration


def test_haystack_priced_once_per_component_a_kill_stops_only_researcher_a_downgrade_moves_writer(
    pipeline: Pipeline,
) -> None:
    # a gpt-4o call costs $0.00375: researcher is killed, writer downgraded, after two calls each
    pipeline.apply_policies(policies(kill="researcher", downgrade="writer"))
    report = pipeline.run("haystack")
    assert report["kill_seen"] and report["downgrade_seen"], report["_stderr"][-3000:]
    assert report["adapters"] == ["haystack"] and report["hook"]["failed"] == 0, report["_stderr"][-3000:]
    error = report["phase2_error"]
    # Pipeline.run wraps a component's error in PipelineRuntimeError; the AgentKilled is its cause
    assert error is not None and error["type"] == "PipelineRuntimeError" and error["agent_killed_inside"], (
        error
    )
    # researcher's two calls of phase 1 only; writer went on: 2 + 1 + 1
    assert pipeline.requests_by_agent() == {
        "researcher": ["gpt-4o", "gpt-4o"],
        "writer": ["gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini"],  # after its soft threshold
    }
    by_agent = priced_once(pipeline)
    assert sorted(by_agent) == ["researcher", "writer"]
    commands = pipeline.commands()
    assert [c.action.value for c in commands["admission.budget:agent/acme/researcher"]] == ["kill"]
    assert "admission.budget:agent/acme/writer" not in commands
    downgraded_after_the_threshold(pipeline, "writer", after=2, others=["researcher"])


def test_haystack_with_its_own_tracer_into_the_bridge_as_well_counts_each_call_once(
    pipeline: Pipeline,
) -> None:
    """Haystack's own OpenTelemetry tracer (content tracing on, so its usage blobs ride along)
    exporting through the in-process bridge, and the hook: the same calls, the same totals."""
    pipeline.apply_policies(policies(kill="researcher", downgrade="writer"))
    report = pipeline.run("haystack", SCENARIO_OTEL="1")
    assert report["kill_seen"] and report["downgrade_seen"], report["_stderr"][-3000:]
    assert report["adapters"] == ["haystack"] and report["hook"]["failed"] == 0, report["_stderr"][-3000:]
    assert report["phase2_error"]["agent_killed_inside"], report["_stderr"][-3000:]
    assert pipeline.requests_by_agent() == {
        "researcher": ["gpt-4o", "gpt-4o"],
        "writer": ["gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini"],  # after its soft threshold
    }
    by_agent = priced_once(pipeline)
    assert sorted(by_agent) == ["researcher", "writer"]
