"""Pydantic AI (a manager on OpenAI delegating to a researcher on Anthropic from a tool),
installed in its own venv, against the fake provider with the one line ``al.instrument()``:
through the real broker, budget worker and warehouse."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from _checks import downgraded_after_the_threshold, policies, priced_once, total
from _streams_harness import consume
from conftest import Pipeline, price

from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.events import SpanEvent, SpanKind, UsageEvent
from agentledger.settings import Settings
from agentledger.wire import decode_envelope

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


def test_pydantic_ai_exporting_over_otlp_to_the_api_as_well_counts_each_call_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """The one line and Pydantic AI's own instrumentation exported with the OpenTelemetry
    OTLP/HTTP exporter to the real API's ``POST /v1/traces``: each call's LLM span arrives
    through the API, its usage is counted once (the hook's record), and the warehouse holds
    each call once, priced exactly: the totals of the hook-only run."""
    keys = standard_keys(tmp_path / "keys.sqlite")
    app = create_app(
        Settings(
            kafka_bootstrap=pipeline.topics.bootstrap, topic_prefix=pipeline.topics.prefix, home=tmp_path
        ),
        ApiSettings(keys_path=tmp_path / "keys.sqlite"),
    )
    pipeline.apply_policies(policies(kill="researcher", downgrade="manager"))
    with ApiServer(app) as url:
        report = pipeline.run("pydantic_ai", SCENARIO_OTLP=url, SCENARIO_OTLP_KEY=keys["acme_ingest"])
    assert report["kill_seen"] and report["phase2_error"]["is_agent_killed"], report["_stderr"][-3000:]
    assert {a: len(m) for a, m in pipeline.requests_by_agent().items()} == {"manager": 6, "researcher": 2}
    by_agent = priced_once(pipeline)
    assert sorted(by_agent) == ["manager", "researcher"]
    rows = [row for rows in by_agent.values() for row in rows]
    # the hook-only totals: 8 answered calls, each at its own exact price
    assert total(rows) == sum((price(row) for row in rows), Decimal(0)) > 0
    # the OTLP path did deliver: each answered call's Pydantic AI LLM span ("chat <model>") came
    # through the API (the hook marks it as its own call, so it brings no second usage event;
    # the killed call's span is there too, in error, and so are the anthropic SDK's own spans)
    copies: Counter[str] = Counter()
    llm_spans: Counter[str] = Counter()
    seen: list[tuple[str, str, str, str]] = []
    for record in consume(pipeline.topics.bootstrap, pipeline.topics.events, timeout=3):
        for event in decode_envelope(record.value).events:
            if isinstance(event, UsageEvent):
                copies[event.event_id] += 1
            elif isinstance(event, SpanEvent):
                answered = event.name.startswith("chat ") and event.status.value != "error"
                llm_spans[event.agent] += event.kind == SpanKind.LLM and answered
                seen.append((event.agent, event.kind.value, event.name, event.status.value))
    assert dict(llm_spans) == {"manager": 6, "researcher": 2}, seen
    assert {row["event_id"]: copies[row["event_id"]] for row in rows} == {row["event_id"]: 1 for row in rows}
