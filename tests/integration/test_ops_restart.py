"""A running worker, sink and API survive `agentledger kafka down` + `kafka up` on the same
address: the worker keeps its policies, follows new ones and processes new events, the sink
lands them and the API takes events again, without being restarted (issue #13, item 5: the worker used to report ready
and process nothing, with 0 policies)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from agentledger.localkafka import free_ports
from agentledger.samples import sample_events

CLI = [sys.executable, "-m", "agentledger"]
POLICY = """policies:
  - policy_id: {pid}
    selector: {{per: agent}}
    window: calendar_day
    limit: 1000
    unit: usd
"""


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "AGENTLEDGER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("AGENTLEDGER_KAFKA_BOOTSTRAP", None)
    env.pop("AGENTLEDGER_TOPIC_PREFIX", None)
    return env


def _cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [*CLI, *args], env=_env(home), capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"agentledger {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _wait(cond: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"no {what} after {timeout:.0f}s; worker log tail:\n{log.read_text()[-3000:]}")


def _apply(home: Path, pid: str) -> None:
    path = home / f"{pid}.yaml"
    path.write_text(POLICY.format(pid=pid))
    _cli(home, "policies", "apply", str(path))


def test_a_running_worker_keeps_working_across_a_broker_restart(tmp_path: Path) -> None:
    up = _cli(tmp_path, "kafka", "up")
    bootstrap = up.strip().splitlines()[-1]
    port = free_ports(1)[0]
    log = tmp_path / "worker.log"
    worker = sink = api = None
    api_port = free_ports(1)[0]
    try:
        _cli(tmp_path, "topics", "create")
        _apply(tmp_path, "before-restart")
        with log.open("wb") as out:
            worker = subprocess.Popen([*CLI, "worker", "--web-port", str(port), "--progress", "1"], env=_env(tmp_path),
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        token = _cli(tmp_path, "keys", "create", "ops", "--scope", "ingest", "--tenant", "acme").splitlines()[
            -1
        ]
        with (tmp_path / "api.log").open("wb") as out:
            api = subprocess.Popen([*CLI, "api", "serve", "--port", str(api_port)], env=_env(tmp_path),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        with (tmp_path / "sink.log").open("wb") as out:
            sink = subprocess.Popen([*CLI, "sink", "--batch-seconds", "0.5"], env=_env(tmp_path), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

        def stats() -> dict[str, Any]:
            try:
                return dict(httpx.get(f"http://127.0.0.1:{port}/stats/", timeout=2).json())
            except (httpx.HTTPError, ValueError):
                return {}

        def events() -> int:
            return int(stats().get("counters", {}).get("events", -1))

        _wait(lambda: stats().get("ready") is True, 120, "ready worker", log)
        _cli(tmp_path, "smoke", "--events", "200")
        _wait(lambda: events() == 200, 60, "200 events processed", log)
        # what a person watching the log sees: the ready line, then progress, no terminal codes
        text = log.read_text()
        assert (
            f'worker ready: bootstrap {bootstrap}, prefix "", 1 policy, 0 commands in force, '
            f"partitions 0-3, stats on http://127.0.0.1:{port}/stats/"
        ) in text.splitlines()
        _wait(lambda: "(lag 0)" in log.read_text(), 30, "a progress line with the lag caught up", log)
        assert re.search(
            r"worker: committed (\d+) of \1 records on agentledger.events.v1 \(lag 0\)", log.read_text()
        )
        assert "\x1b[" not in log.read_text()

        _cli(tmp_path, "kafka", "down")
        again = _cli(tmp_path, "kafka", "up")
        assert again.strip().splitlines()[-1] == bootstrap
        assert worker.poll() is None, log.read_text()[-3000:]

        _cli(tmp_path, "smoke", "--events", "200")
        _wait(lambda: events() == 400, 120, "the 200 events sent after the restart processed", log)
        assert "before-restart" in stats()["policies"]
        _apply(tmp_path, "after-restart")  # the policy follower recovered too
        _wait(lambda: "after-restart" in stats().get("policies", []), 60, "policy applied after restart", log)

        def landed() -> int:
            done = subprocess.run([*CLI, "sql", "-f", "csv", "SELECT count(*) AS n FROM events"], env=_env(tmp_path),
                                  capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
            return int(done.stdout.splitlines()[-1]) if done.returncode == 0 else -1

        _wait(lambda: landed() == 400, 120, "the sink landing all 400 priced events", tmp_path / "sink.log")

        body = orjson.dumps(
            {"events": [e.model_dump(mode="json") for e in sample_events(10, agent="via-api")]}
        )
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

        def ingested() -> bool:
            try:
                url = f"http://127.0.0.1:{api_port}/v1/events"
                return httpx.post(url, content=body, headers=headers, timeout=10).status_code == 202
            except httpx.HTTPError:
                return False

        _wait(ingested, 60, "the API accepting events after the restart", tmp_path / "api.log")
        _wait(lambda: events() == 410, 60, "the events ingested through the API processed", log)
    finally:
        for proc in (worker, sink, api):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        _cli(tmp_path, "kafka", "down")


def test_a_running_health_worker_keeps_consuming_across_a_broker_restart(tmp_path: Path) -> None:
    """`agentledger health` (its own Faust app and group) commits the events sent after the
    broker came back, without a restart, and says it was ready once."""
    up = _cli(tmp_path, "kafka", "up")
    bootstrap = up.strip().splitlines()[-1]
    log = tmp_path / "health.log"
    health = None
    events_topic = "agentledger.events.v1"
    try:
        _cli(tmp_path, "topics", "create")
        with log.open("wb") as out:
            health = subprocess.Popen([*CLI, "health", "--from", "earliest", "--progress", "1"], env=_env(tmp_path),
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        _wait(lambda: "health ready: bootstrap " + bootstrap in log.read_text(), 120, "ready line", log)

        def committed() -> int:
            """Records (envelopes) of the events topic the group committed, once caught up."""
            done = re.findall(rf"health: committed ([\d,]+) of \1 records on {re.escape(events_topic)} \(lag 0\)",
                              log.read_text())  # fmt: skip
            return int(done[-1].replace(",", "")) if done else 0

        _cli(tmp_path, "smoke", "--events", "200")
        _wait(lambda: committed() > 0, 60, "the events committed", log)
        before = committed()

        _cli(tmp_path, "kafka", "down")
        again = _cli(tmp_path, "kafka", "up")
        assert again.strip().splitlines()[-1] == bootstrap
        assert health.poll() is None, log.read_text()[-3000:]

        _cli(tmp_path, "smoke", "--events", "200")
        _wait(lambda: committed() > before, 180, "the events sent after the restart committed", log)
        assert health.poll() is None
        text = log.read_text()
        assert len([ln for ln in text.splitlines() if ln.startswith("health ready: ")]) == 1
        assert "Traceback" not in text and "\x1b[" not in text
    finally:
        if health is not None:
            os.killpg(health.pid, signal.SIGTERM)
            try:
                health.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(health.pid, signal.SIGKILL)
                health.wait(10)
        _cli(tmp_path, "kafka", "down")
