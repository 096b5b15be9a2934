"""LangGraph + LangChain agents, installed in their own venv, against the fake provider with
the one line ``al.instrument()``: through the real broker, budget worker and warehouse."""

from __future__ import annotations

import pytest
from _checks import budget_policy, priced_once
from conftest import Pipeline

pytestmark = pytest.mark.integration


def test_langgraph_calls_are_priced_once_per_agent_and_a_budget_kill_stops_only_that_agent(
    pipeline: Pipeline,
) -> None:
    pipeline.apply_policies(budget_policy("researcher", "0.005"))  # a call costs $0.00375
    report = pipeline.run("langchain")
    assert report["kill_seen"], report["_stderr"][-3000:]
    error = report["phase2_error"]
    assert error is not None and error["is_agent_killed"], error  # surfaced as AgentKilled itself
    # researcher's two calls of phase 1 only; writer went on: 2 + 1 + 1
    assert {a: len(m) for a, m in pipeline.requests_by_agent().items()} == {"researcher": 2, "writer": 4}
    by_agent = priced_once(pipeline)
    assert sorted(by_agent) == ["researcher", "writer"]
    assert [c.action.value for c in pipeline.commands()["agent/acme/researcher"]] == ["kill"]
    assert "agent/acme/writer" not in pipeline.commands()
