"""Tool permissions in real Pydantic AI, LangChain, smolagents, CrewAI, Microsoft Agent Framework
and Haystack runs (each in its own venv, the fake provider, the one line ``al.instrument()``),
with the real API and broker: a denied tool is not executed and the run
ends cleanly; a tool that needs approval runs after a human approves it through the API (from
another thread, while the agent waits); both decisions land in the warehouse as ``tool_call``
events with ``gen_ai.tool.call.decision``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SCENARIOS, TENANT, Pipeline, run_in

from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.settings import Settings
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.sink import Sink, SinkConfig

ADAPTER = {
    "pydantic_ai": "pydantic_ai",
    "langchain": "langchain_core",
    "smolagents": "smolagents",
    "crewai": "crewai",
    "agent_framework": "agent_framework",
    "haystack": "haystack",
}  # the adapter each run installs
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def api(pipeline: Pipeline, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    home = tmp_path / "api"
    home.mkdir()
    keys = standard_keys(home / "keys.sqlite")
    t = pipeline.topics
    server = ApiServer(
        create_app(
            Settings(kafka_bootstrap=t.bootstrap, topic_prefix=t.prefix, home=home),
            ApiSettings(keys_path=home / "keys.sqlite"),
        )
    )
    url = server.start()
    try:
        yield url, keys
    finally:
        server.stop()


@pytest.mark.parametrize("framework", list(ADAPTER))
def test_a_denied_tool_does_not_run_and_an_approved_tool_runs_after_the_api_approves(
    framework: str, pipeline: Pipeline, api: tuple[str, dict[str, str]]
) -> None:
    url, keys = api

    def call(method: str, path: str, body: Any = None, role: str = "acme_admin") -> httpx.Response:
        return httpx.request(
            method,
            url + path,
            json=body,
            headers={"authorization": f"Bearer {keys[role]}", "content-type": "application/json"},
            timeout=10,
        )

    policy = {
        "policy_id": "clerk-tools",
        "selector": {"tenant": TENANT, "agent": "clerk"},
        "rules": [
            {"tool": "shell_*", "decision": "deny"},
            {"tool": "send_email", "decision": "require_approval"},
        ],
        "approval_timeout_s": 120,
    }
    assert call("PUT", "/v1/tool-policies/clerk-tools", policy).status_code == 200

    approved: list[dict[str, Any]] = []
    stop = threading.Event()

    def human() -> None:  # approves the first pending request it sees, through the API
        while not stop.is_set():
            pending = call("GET", "/v1/approvals?state=pending", role="acme_read").json()
            if pending:
                r = call("POST", f"/v1/approvals/{pending[0]['approval_id']}/approve")
                assert r.status_code == 200, r.text
                approved.append(r.json())
                return
            time.sleep(0.1)

    thread = threading.Thread(target=human, daemon=True)
    thread.start()
    try:
        done = run_in(
            framework,
            SCENARIOS / f"{framework}_tools.py",
            pipeline.env(AGENTLEDGER_API_URL=url, AGENTLEDGER_API_KEY=keys["acme_ingest"]),
        )
    finally:
        stop.set()
        thread.join(10)
    assert done.returncode == 0, (
        f"scenario exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    )
    report = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    assert report["adapters"] == [ADAPTER[framework]], done.stderr[-3000:]

    denied = report["denied_run"]
    assert denied["error"] is None, denied  # the run ended cleanly, with an answer
    assert denied["ran"] == [] and denied["output"]  # shell_exec never ran
    assert any(("denied" in r or "blocked" in r) and "shell_exec" in r for r in denied["tool_returns"]), (
        denied
    )

    ok = report["approved_run"]
    assert ok["error"] is None and ok["ran"] == ["send_email"], ok
    assert ok["tool_returns"] == ["sent"]
    assert len(approved) == 1 and approved[0]["request"]["tool"] == "send_email"
    assert approved[0]["request"]["agent"] == "clerk"

    # the decisions, in the warehouse
    root = pipeline.tmp / "warehouse"
    config = SinkConfig(
        pipeline.topics.bootstrap, str(root), prefix=pipeline.topics.prefix, group_id="fw-sink"
    )
    rows: list[Any] = []
    deadline = time.monotonic() + 90
    while len(rows) < 2 and time.monotonic() < deadline:
        asyncio.run(Sink(config).run(idle_seconds=3, max_seconds=60))
        rows = Catalog(str(root)).query(
            "SELECT agent, tool, status, attributes FROM events WHERE type = 'tool_call' AND tenant = ? "
            "ORDER BY ts",
            [TENANT],
        )
    decisions = [(r["agent"], r["tool"], r["status"], json.loads(r["attributes"])) for r in rows]
    assert [(a, t, s, attrs["gen_ai.tool.call.decision"]) for a, t, s, attrs in decisions] == [
        ("clerk", "shell_exec", "error", "deny"),
        ("clerk", "send_email", "ok", "allow"),
    ]
    assert decisions[1][3]["agentledger.tool.approval_id"] == approved[0]["approval_id"]
