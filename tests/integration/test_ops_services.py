"""Services as people start them: they refuse, in one line, to run without their topics or
with a compacted topic created as delete-policy; a dead broker is one line and exit 69, fast;
`agentledger budgets` shows what is on the budgets topic. Real broker, real CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agentledger import topics as specs
from agentledger.admin import create_topics
from agentledger.events import BudgetState, BudgetStatus, LimitUnit, Window
from agentledger.localkafka import free_ports
from agentledger.wire import dump

CLI = [sys.executable, "-m", "agentledger"]
EXIT_BROKER, EXIT_TOPICS = 69, 78
SERVICES = {
    "worker": ["worker"],
    "sink": ["sink"],
    "api": ["api", "serve", "--port", "0"],
    "health": ["health"],
    "alerts": ["alerts", "dispatch", "--config", "examples/alerts.yaml"],
    # one-shot commands on one compacted topic: a clear line instead of a 40 s timeout
    "policies": ["policies", "list"],
    "objectives": ["objectives", "list"],
    "budgets": ["budgets"],
    "guard": ["guard", "status"],
}


def _env(tmp: Path, bootstrap: str | None, prefix: str = "") -> dict[str, str]:
    env = {**os.environ, "AGENTLEDGER_HOME": str(tmp), "AGENTLEDGER_TOPIC_PREFIX": prefix,
           # the example alert channels' secrets (nothing is sent: the dispatcher refuses first)
           "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack", "PAGERDUTY_ROUTING_KEY": "k",
           "WEBHOOK_SECRET": "s"}  # fmt: skip
    env.pop("AGENTLEDGER_KAFKA_BOOTSTRAP", None)
    if bootstrap:
        env["AGENTLEDGER_KAFKA_BOOTSTRAP"] = bootstrap
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=root)  # fmt: skip


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_refuses_to_start_without_its_topics(
    kafka_bootstrap: str, tmp_path: Path, service: str
) -> None:
    prefix = f"missing{os.getpid()}{service}."  # nothing was created under it
    done = _cli(_env(tmp_path, kafka_bootstrap, prefix), *SERVICES[service])
    assert done.returncode == EXIT_TOPICS, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{service} cannot start: missing topic" in lines[0] and "agentledger topics create" in lines[0]
    assert all(prefix + t.name in lines[0] for t in specs.NEEDED_BY[service])
    # nothing was created behind our back by the attempt
    assert prefix + specs.EVENTS.name not in asyncio.run(_list(kafka_bootstrap))


async def _list(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _create_delete_policy(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 4, 1, topic_configs={"cleanup.policy": "delete"})])
    finally:
        await admin.close()


@pytest.mark.parametrize("service", ["worker", "api"])
def test_a_compacted_topic_with_delete_policy_is_refused(
    kafka_bootstrap: str, tmp_path: Path, service: str
) -> None:
    prefix = f"t{os.getpid()}wrong{service}."
    others = tuple(s for s in specs.ALL if s is not specs.POLICIES)
    asyncio.run(create_topics(kafka_bootstrap, others, prefix=prefix))
    # what an auto-creating broker made of the policies topic
    asyncio.run(_create_delete_policy(kafka_bootstrap, prefix + specs.POLICIES.name))
    done = _cli(_env(tmp_path, kafka_bootstrap, prefix), *SERVICES[service])
    assert done.returncode == EXIT_TOPICS, done.stdout + done.stderr
    line = done.stderr.strip()
    assert "\n" not in line
    assert f"{prefix}{specs.POLICIES.name} has cleanup.policy=delete but must be compact" in line


@pytest.mark.parametrize(
    "args",
    [
        ["policies", "list"],
        ["guard", "status"],
        ["guard", "check", "--tenant", "a", "--agent", "b"],
        ["budgets"],
        ["worker"],
        ["sink"],
        ["topics", "create"],
    ],
)
def test_a_dead_broker_is_one_line_and_exit_69(tmp_path: Path, args: list[str]) -> None:
    dead = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    started = time.monotonic()
    _cli(_env(tmp_path, None), *args)  # the same command's start-up, which stops before Kafka
    startup = time.monotonic() - started
    started = time.monotonic()
    done = _cli(_env(tmp_path, dead), *args)
    took = time.monotonic() - started - startup  # the probe's own time, whatever the load
    assert done.returncode == EXIT_BROKER, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"no Kafka broker answers at {dead}" in done.stderr and "agentledger kafka up" in done.stderr
    assert took < 5, f"took {took:.1f}s (beyond a {startup:.1f}s start-up) to say the broker is dead"


def test_no_local_broker_is_one_line_and_exit_69(tmp_path: Path) -> None:
    done = _cli(_env(tmp_path, None), "policies", "list")
    assert done.returncode == EXIT_BROKER
    assert done.stderr.strip() == (
        "error: no Kafka to talk to: run `agentledger kafka up` or set AGENTLEDGER_KAFKA_BOOTSTRAP"
    )


async def _publish_budget(bootstrap: str, topic: str, status: BudgetStatus) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, dump(status), key=f"{status.policy_id}|{status.scope_key}".encode()
        )
    finally:
        await producer.stop()


def _status(policy: str, scope_key: str, spend: str, limit: int, state: BudgetState) -> Any:
    now = datetime.now(UTC)
    return BudgetStatus(policy_id=policy, scope_key=scope_key, window=Window.DAY, window_start=now,
                        spend=Decimal(spend), limit=Decimal(limit), unit=LimitUnit.USD, state=state,
                        updated_at=now, projected_exhaustion=now + timedelta(hours=2))  # fmt: skip


def test_budgets_shows_spend_against_limit(topics: Any, tmp_path: Path) -> None:
    for status in (
        _status("daily", "agent/acme/planner", "7.123456789", 10, BudgetState.WARN),
        _status("daily", "agent/globex/coder", "1.5", 10, BudgetState.OK),
    ):
        asyncio.run(_publish_budget(topics.bootstrap, topics.budgets, status))
    env = _env(tmp_path, topics.bootstrap, topics.prefix)
    shown = _cli(env, "budgets")
    assert shown.returncode == 0, shown.stderr
    header = next(line for line in shown.stdout.splitlines() if "policy" in line)
    assert all(h in header for h in ("scope", "spend", "limit", "used %", "state"))
    row = next(line for line in shown.stdout.splitlines() if "agent/acme/planner" in line)
    cells = [c.strip() for c in row.strip("│┃ ").split("│")]
    assert cells[:8] == [
        "daily",
        "agent/acme/planner",
        Window.DAY.value,
        "7.123457",
        "10",
        "usd",
        "71",
        "warn",
    ]
    assert "\x1b[" not in shown.stdout  # no terminal codes into a pipe
    only = _cli(env, "budgets", "--tenant", "globex", "--format", "csv")
    assert only.returncode == 0, only.stderr
    lines = only.stdout.strip().splitlines()
    assert lines[0].startswith('"policy","scope"') and len(lines) == 2
    assert '"agent/globex/coder"' in lines[1] and ",1.5" in lines[1]  # exact in CSV
