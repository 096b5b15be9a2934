"""``agentledger guard status|check`` against the real control topic."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from agentledger import wire
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind


def run(topics: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AGENTLEDGER_KAFKA_BOOTSTRAP": topics.bootstrap,
        "AGENTLEDGER_TOPIC_PREFIX": topics.prefix,
    }
    return subprocess.run([sys.executable, "-m", "agentledger", "guard", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)  # fmt: skip


def produce(bootstrap: str, topic: str, cmd: ControlCommand) -> None:
    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, wire.dump(cmd), key=cmd.scope.key.encode())
        finally:
            await producer.stop()

    asyncio.run(send())


def test_guard_status_and_check(topics: Any) -> None:
    kill = ControlCommand(command_id=f"cmd-{uuid.uuid4().hex[:12]}", ts=datetime.now(UTC), action=Action.KILL,
                          reason="over budget", scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent="planner"),
                          params=CommandParams(kill_reason="budget"))  # fmt: skip
    produce(topics.bootstrap, topics.control, kill)
    status = run(topics, "status")
    assert status.returncode == 0, status.stderr
    assert "agent/acme/planner" in status.stdout and "kill" in status.stdout and "active" in status.stdout
    killed = run(topics, "check", "--tenant", "acme", "--agent", "planner")
    assert killed.returncode == 3 and "BudgetKilled" in killed.stdout
    free = run(topics, "check", "--tenant", "acme", "--agent", "coder")
    assert free.returncode == 0 and "nothing applies" in free.stdout
