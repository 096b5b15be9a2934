"""`agentledger tools` and `agentledger approvals` through the real CLI against the real API on
a real broker: policies put, read, listed and deleted; approvals listed, approved and denied;
an approval decided (or left pending past its timeout) is deleted from the tools topic with a
tombstone, so the topic does not keep every request ever made."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.settings import Settings

POLICY = {
    "policy_id": "acme-support-tools",
    "selector": {"tenant": "acme", "agent": "support"},
    "rules": [
        {"tool": "shell_*", "decision": "deny"},
        {"tool": "send_email", "decision": "require_approval"},
        {"tool": "*", "decision": "allow", "max_calls_per_trace": 20},
    ],
    "approval_timeout_s": 600,
}
KEEP_S = 30  # room for the CLI runs between an answer and its "already approved" check
QUICK = {  # an approval nobody answers: the agent's Guard gave up after 1 s
    "policy_id": "acme-quick",
    "selector": {"tenant": "acme", "agent": "support", "agent_version": "v2"},
    "rules": [{"tool": "send_email", "decision": "require_approval"}],
    "approval_timeout_s": 1,
}


def tools_records(bootstrap: str, topic: str) -> list[tuple[str, bytes | None]]:
    async def run() -> list[tuple[str, bytes | None]]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: list[tuple[str, bytes | None]] = []
        try:
            for _ in range(10):
                batch = await consumer.getmany(timeout_ms=300)
                out.extend((r.key.decode(), r.value) for rs in batch.values() for r in rs)
                if out and not batch:
                    break
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


def test_tools_and_approvals_through_the_cli(topics: Any, tmp_path: Path) -> None:
    tokens = standard_keys(tmp_path / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=topics.bootstrap, topic_prefix=topics.prefix, home=tmp_path),
        ApiSettings(keys_path=tmp_path / "keys.sqlite", approvals_keep_s=KEEP_S),
    )
    with ApiServer(app) as url:
        env = dict(
            os.environ, AGENTLEDGER_API_URL=url, AGENTLEDGER_API_KEY=tokens["acme_admin"], COLUMNS="250"
        )

        def cli(*args: str, ok: bool = True) -> str:
            done = subprocess.run([sys.executable, "-m", "agentledger", *args], env=env, capture_output=True,
                                  text=True, timeout=60, check=False)  # fmt: skip
            assert (done.returncode == 0) is ok, done.stdout + done.stderr
            return done.stdout + done.stderr

        def ask(tool: str, policy: dict[str, Any] = POLICY) -> str:
            body = {"tenant": "acme", "agent": "support", "tool": tool, "args_hash": "ab" * 16,
                    "policy_id": policy["policy_id"]}  # fmt: skip
            h = {"authorization": f"Bearer {tokens['acme_ingest']}"}
            answer = httpx.post(url + "/v1/approvals", json=body, headers=h, timeout=30)
            assert answer.status_code == 201, answer.text
            return str(answer.json()["approval_id"])

        file = tmp_path / "tools.yaml"
        file.write_text(yaml.safe_dump({"tool_policies": [POLICY, QUICK]}))
        assert "put  acme-support-tools\nput  acme-quick" in cli("tools", "put", str(file))
        listed = cli("tools", "list")
        assert "acme-support-tools" in listed and "shell_*: deny" in listed and "acme/support" in listed
        got = json.loads(cli("tools", "get", "acme-support-tools"))
        assert got["rules"][1] == {
            "tool": "send_email",
            "decision": "require_approval",
            "max_calls_per_trace": None,
        }
        assert "globex" in cli("tools", "put", str(file), "--api-key", tokens["globex_admin"], ok=False)

        first, second, third = ask("send_email"), ask("send_email"), ask("send_email", QUICK)
        pending = cli("approvals", "list", "--state", "pending")
        assert first in pending and second in pending
        assert f"approved  {first} (send_email)" in cli("approvals", "approve", first)
        assert f"denied  {second} (send_email)" in cli("approvals", "deny", second)
        decided = time.monotonic()  # both answers are in (each CLI run takes seconds under load)
        h = {"authorization": f"Bearer {tokens['acme_read']}"}
        states = {a["approval_id"]: a["state"] for a in httpx.get(url + "/v1/approvals", headers=h).json()}
        assert (states[first], states[second]) == ("approved", "denied")  # kept a while for late readers
        assert "already approved" in cli("approvals", "deny", first, ok=False)
        # past approvals_keep_s for the decided; past timeout + keep for the third (asked earlier)
        time.sleep(max(0.0, decided + KEEP_S + 1 - time.monotonic()))
        listed = cli("approvals", "list")
        assert first not in listed and second not in listed and third not in listed
        assert "no approval" in cli("approvals", "approve", third, ok=False)

        assert "deleted  acme-support-tools" in cli("tools", "delete", "acme-support-tools")
        cli("tools", "delete", "acme-quick")
        assert "acme-support-tools" not in cli("tools", "list")
        assert "no tool policy" in cli("tools", "get", "acme-support-tools", ok=False)

    records = tools_records(topics.bootstrap, topics.prefix + "agentledger.tools.v1")
    last: dict[str, bytes | None] = {}
    for key, value in records:
        last[key] = value
    assert last == {
        "policy:acme-support-tools": None,
        "policy:acme-quick": None,
        f"approval:{first}": None,
        f"approval:{second}": None,
        f"approval:{third}": None,
    }
