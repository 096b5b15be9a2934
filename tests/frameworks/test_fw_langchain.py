"""LangGraph + LangChain agents, installed in their own venv, against the fake provider with
the one line ``al.instrument()``: through the real broker, budget worker and warehouse."""

from __future__ import annotations

import pytest
from _checks import downgraded_after_the_threshold, policies, priced_once
from conftest import Pipeline

# the first test of a framework may build its venv (pip, cold cache: ~2 min)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_langgraph_priced_once_per_agent_a_kill_stops_only_researcher_a_downgrade_moves_writer(
    pipeline: Pipeline,
) -> None:
    pipeline.apply_policies(policies(kill="researcher", downgrade="writer"))
    report = pipeline.run("langchain")
    assert report["adapters"] == ["langchain_core"] and report["hook"]["failed"] == 0, report["_stderr"][
        -3000:
    ]
    assert report["kill_seen"] and report["downgrade_seen"], report["_stderr"][-3000:]
    error = report["phase2_error"]
    assert error is not None and error["is_agent_killed"], error  # surfaced as AgentKilled itself
    # researcher's two calls of phase 1 only; writer went on: 2 + 1 + 1
    assert {a: len(m) for a, m in pipeline.requests_by_agent().items()} == {"researcher": 2, "writer": 4}
    by_agent = priced_once(pipeline)  # writer's streamed calls too: the hook asked for their usage
    assert sorted(by_agent) == ["researcher", "writer"]
    streamed = {str(b["messages"][0]["content"]): bool(b.get("stream")) for _, b in pipeline.fake.requests}
    assert streamed == {
        "You are agent researcher. Answer in one word.": False,
        "You are agent writer. Answer in one word.": True,
    }
    assert [c.action.value for c in pipeline.commands()["admission.budget:agent/acme/researcher"]] == ["kill"]
    downgraded_after_the_threshold(pipeline, "writer", after=2, others=["researcher"])
    assert "admission.budget:agent/acme/writer" not in pipeline.commands()


def test_langgraph_with_openinference_spans_into_the_bridge_as_well_counts_each_call_once(
    pipeline: Pipeline,
) -> None:
    """OpenInference's LangChain instrumentation exporting through the in-process bridge, and
    the hook: the same calls, the same totals (nothing counted twice, nothing lost)."""
    pipeline.apply_policies(policies(kill="researcher", downgrade="writer"))
    report = pipeline.run("langchain", SCENARIO_OTEL="1")
    assert report["kill_seen"] and report["phase2_error"]["is_agent_killed"], report["_stderr"][-3000:]
    assert {a: len(m) for a, m in pipeline.requests_by_agent().items()} == {"researcher": 2, "writer": 4}
    by_agent = priced_once(pipeline)
    assert sorted(by_agent) == ["researcher", "writer"]
