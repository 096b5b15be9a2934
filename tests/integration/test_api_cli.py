"""The user's path: `agentledger keys create`, `agentledger api serve`, ingest, `keys revoke`,
`agentledger report --out` — real processes, real broker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from agentledger.admin import create_topics
from agentledger.api.testing import land_demo_warehouse
from agentledger.events import BudgetState, BudgetStatus, LimitUnit, Window
from agentledger.samples import sample_events
from agentledger.wire import dump

CLI = [sys.executable, "-m", "agentledger"]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_keys_serve_ingest_revoke(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    env = {**os.environ, "AGENTLEDGER_HOME": str(tmp_path), "AGENTLEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "AGENTLEDGER_TOPIC_PREFIX": prefix}  # fmt: skip
    created = _cli(env, "keys", "create", "bot", "--scope", "ingest", "--tenant", "acme")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    key_id = re.search(r"key id (\w+)", created.stdout).group(1)  # type: ignore[union-attr]
    assert _cli(env, "keys", "create", "x", "--scope", "read").returncode == 1  # needs --tenant

    port = _free_port()
    server = subprocess.Popen([*CLI, "api", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "api serve did not come up"
            time.sleep(0.2)
        body = orjson.dumps({"events": [e.model_dump(mode="json") for e in sample_events(10, agent="cli")]})
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        response = httpx.post(f"{url}/v1/events", content=body, headers=headers, timeout=30)
        assert response.status_code == 202 and response.json()["accepted"] == 10
        assert _cli(env, "keys", "revoke", key_id).returncode == 0
        assert httpx.post(f"{url}/v1/events", content=body, headers=headers, timeout=30).status_code == 401
        listed = _cli(env, "keys", "list").stdout
        assert key_id in listed and "revoked" in listed
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


async def _publish_budget(bootstrap: str, topic: str, scope_key: str) -> None:
    now = datetime.now(UTC)
    status = BudgetStatus(policy_id="daily", scope_key=scope_key, window=Window.DAY, window_start=now,
                          spend=Decimal("7.5"), limit=Decimal(10), unit=LimitUnit.USD, state=BudgetState.WARN,
                          updated_at=now, projected_exhaustion=now + timedelta(hours=2))  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, dump(status), key=f"daily|{scope_key}".encode())
    finally:
        await producer.stop()


def test_report_writes_every_view_into_one_file(kafka_bootstrap: str, tmp_path: Path) -> None:
    land_demo_warehouse(str(tmp_path / "wh"))
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    for scope_key in ("agent/acme/planner", "agent/globex/planner"):
        asyncio.run(_publish_budget(kafka_bootstrap, prefix + "agentledger.budgets.v1", scope_key))
    env = {**os.environ, "AGENTLEDGER_HOME": str(tmp_path), "AGENTLEDGER_WAREHOUSE_URI": str(tmp_path / "wh"),
           "AGENTLEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap, "AGENTLEDGER_TOPIC_PREFIX": prefix}  # fmt: skip
    out = tmp_path / "report.html"
    done = _cli(env, "report", "--out", str(out), "--tenant", "acme")
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert html.count('class="plotly-graph-div"') == 12 and "<script src=" not in html
    assert all(
        f'id="{slug}"' in html
        for slug in ("overview", "agent", "trace", "traces", "agents", "providers", "timeline")
    )
    html = html.replace("\\u002f", "/")  # plotly's JSON escapes slashes
    assert "agent/acme/planner" in html, done.stdout
    assert "agent/globex/planner" not in html  # live budgets, one tenant
    assert "no live budgets" not in done.stdout
