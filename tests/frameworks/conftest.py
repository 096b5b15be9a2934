"""The pipeline a framework scenario runs against: the session's real broker, the test's own
topics, the budget worker (``agentledger worker``), the warehouse sink, and the fake provider.
``run_in(framework, script, env)`` runs a scenario with that framework's own venv python.

A scenario (``scenarios/<framework>.py``) reads what it needs from the environment
(``scenarios/_shared/_scenario.py``), uses the one line ``al.instrument()`` after ``al.configure``,
prints one JSON line of what it observed and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fakeprovider import FakeProvider, FixedUsage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))  # the streams harness

from _streams_harness import Worker, consume, start_worker, truth_cost
from _venvs import framework_python

from agentledger.events import ControlCommand, UsageEvent
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.sink import Sink, SinkConfig

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TENANT = "acme"
# Every answer's usage: cache reads inside the input, reasoning inside the output (OpenAI's way).
USAGE = FixedUsage(input_tokens=1000, output_tokens=200, cache_read_tokens=600, reasoning_tokens=50)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@dataclass
class Pipeline:
    """One test's running pipeline, and what to ask it afterwards."""

    topics: Any
    fake: FakeProvider
    worker: Worker
    tmp: Path
    runs: list[dict[str, Any]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """What a scenario is told: broker, topic prefix, tenant, the fake provider."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AGENTLEDGER_", "OPENAI_", "ANTHROPIC_"))
        }
        env.update(self.fake.env())
        env.update(
            AGENTLEDGER_KAFKA_BOOTSTRAP=self.topics.bootstrap,
            AGENTLEDGER_TOPIC_PREFIX=self.topics.prefix,
            AGENTLEDGER_TENANT=TENANT,
            FAKE_PROVIDER_URL=self.fake.url,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def apply_policies(self, yaml_text: str) -> None:
        """``agentledger policies apply`` on the test's topics (what an operator runs)."""
        path = self.tmp / "policies.yaml"
        path.write_text(yaml_text)
        env = dict(
            os.environ,
            AGENTLEDGER_KAFKA_BOOTSTRAP=self.topics.bootstrap,
            AGENTLEDGER_TOPIC_PREFIX=self.topics.prefix,
        )
        done = subprocess.run(
            [sys.executable, "-m", "agentledger", "policies", "apply", str(path)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    def run(self, framework: str, timeout: float = 240, **extra: str) -> dict[str, Any]:
        """Run ``scenarios/<framework>.py`` in the framework's venv; its JSON report."""
        done = run_in(framework, SCENARIOS / f"{framework}.py", self.env(**extra), timeout=timeout)
        assert done.returncode == 0, (
            f"scenario exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        assert lines, f"scenario printed no JSON report\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        report: dict[str, Any] = json.loads(lines[-1])
        report["_stderr"] = done.stderr
        self.runs.append(report)
        return report

    def usage_in_warehouse(self, expect: int, timeout: float = 90) -> list[dict[str, Any]]:
        """Drain the priced topic into the test's warehouse with the sink and return its usage
        rows, once ``expect`` of them are there (or the time is up: the test then says what
        is missing). The worker counts span events too, so its count alone is no gate."""
        self.worker.wait_events(expect, timeout=timeout)
        root = self.tmp / "warehouse"
        config = SinkConfig(self.topics.bootstrap, str(root), prefix=self.topics.prefix, group_id="fw-sink")
        deadline = time.monotonic() + timeout
        while True:
            asyncio.run(Sink(config).run(idle_seconds=3, max_seconds=60))
            rows = Catalog(str(root)).query(
                "SELECT event_id, agent, provider, model, input_tokens, output_tokens, cache_read_tokens, "
                "cache_write_tokens, reasoning_tokens, cost_usd FROM events WHERE type = 'usage' "
                "AND tenant = ? ORDER BY ts",
                [TENANT],
            )
            if len(rows) >= expect or time.monotonic() > deadline:
                return rows

    def commands(self) -> dict[str, list[ControlCommand]]:
        """Every command on the control topic, by control key (lane.authority:scope key), in order."""
        out: dict[str, list[ControlCommand]] = {}
        for rec in consume(self.topics.bootstrap, self.topics.control, timeout=2):
            if rec.value is not None:
                out.setdefault(rec.key.decode(), []).append(ControlCommand.model_validate_json(rec.value))
        return out

    def requests_by_agent(self) -> dict[str, list[str]]:
        """The models the fake provider was asked for, by the agent named in the request's
        instructions (every scenario agent's system prompt says ``You are <agent>.``)."""
        out: dict[str, list[str]] = {}
        for _, body in self.fake.requests:
            text = json.dumps([body.get(k) for k in ("system", "instructions", "messages", "input")])
            agent = _named_agent(text) or "?"
            out.setdefault(agent, []).append(str(body.get("model")))
        return out


def _named_agent(text: str) -> str | None:
    marker = "You are agent "
    at = text.find(marker)
    if at < 0:
        return None
    rest = text[at + len(marker) :]
    name = rest.split(".", 1)[0].split("\\", 1)[0].strip()
    return name or None


def price(event: dict[str, Any]) -> Decimal:
    """The price of one usage row, computed apart from the worker (genai_prices directly)."""
    usage = UsageEvent(
        event_id="price-check", ts=datetime.now(UTC), tenant=TENANT, agent=event["agent"], trace_id="1" * 32, span_id="1" * 16,
        provider=event["provider"], model=event["model"], input_tokens=event["input_tokens"],
        output_tokens=event["output_tokens"], cache_read_tokens=event["cache_read_tokens"],
        cache_write_tokens=event["cache_write_tokens"],
    )  # fmt: skip
    return truth_cost(usage, event["provider"])


def run_in(
    framework: str, script_path: Path, env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run a scenario script with the framework venv's python (the venv is made on first use)."""
    python = framework_python(framework)
    # -P: the script's folder is not put first on sys.path (scenarios/langchain.py would shadow
    # langchain); a scenario appends it itself.
    return subprocess.run(
        [str(python), "-P", str(script_path)], env=env, capture_output=True, text=True, timeout=timeout,
        cwd=str(script_path.parent),
    )  # fmt: skip


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(usage=USAGE) as provider:
        yield provider


@pytest.fixture
def pipeline(topics: Any, fake: FakeProvider, tmp_path: Path) -> Iterator[Pipeline]:
    """Broker topics, the fake provider and a running budget worker for one test."""
    worker = start_worker(topics, tmp_path / "worker")
    try:
        yield Pipeline(topics, fake, worker, tmp_path)
    finally:
        worker.kill()
