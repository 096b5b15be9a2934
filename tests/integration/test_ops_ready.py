"""Every long-running service, started as a person starts it (default log level), prints one
ready line once it really consumes, with the facts a person checks first: broker, prefix,
what it loaded, the partitions it holds (issue #12). Real broker, real CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from agentledger import topics as specs
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind
from agentledger.wire import dump

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "agentledger"]
POLICY = """  - policy_id: {pid}
    selector: {{per: agent}}
    window: calendar_day
    limit: 1000
    unit: usd
"""
ALL_PARTS = f"0-{specs.PARTITIONS - 1}"


def _env(home: Path, bootstrap: str, prefix: str) -> dict[str, str]:
    env = {**os.environ, "AGENTLEDGER_HOME": str(home), "AGENTLEDGER_KAFKA_BOOTSTRAP": bootstrap,
           "AGENTLEDGER_TOPIC_PREFIX": prefix, "PYTHONUNBUFFERED": "1",
           "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack", "PAGERDUTY_ROUTING_KEY": "k",
           "WEBHOOK_SECRET": "s"}  # fmt: skip
    env.pop("AGENTLEDGER_WAREHOUSE_URI", None)
    return env


def _commands(now: datetime) -> list[ControlCommand]:
    """Two in force (a kill, a throttle), one lifted (resume), one expired."""

    def cmd(agent: str, action: Action, expires: datetime | None = None, **params: float) -> ControlCommand:
        return ControlCommand(command_id=f"ready-cmd-{agent}", ts=now, scope=Scope(kind=ScopeKind.AGENT, tenant="acme",
                              agent=agent), action=action, reason="test", params=CommandParams(**params),
                              expires_at=expires, issued_by="test")  # fmt: skip

    return [
        cmd("a", Action.KILL),
        cmd("b", Action.THROTTLE, rate_per_s=1.0),
        cmd("c", Action.RESUME),
        cmd("d", Action.KILL, expires=now - timedelta(minutes=1)),
    ]


async def _produce(bootstrap: str, topic: str, commands: list[ControlCommand]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for c in commands:
            await producer.send_and_wait(topic, dump(c), key=c.scope.key.encode())
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """Topics under a fresh prefix, three policies, two commands in force."""
    from agentledger.admin import create_topics

    home = tmp_path_factory.mktemp("ready")
    prefix = f"r{os.getpid()}{int(time.time() * 1000) % 10**6}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    path = home / "policies.yaml"
    path.write_text("policies:\n" + "".join(POLICY.format(pid=f"p{i}") for i in range(3)))
    done = subprocess.run([*CLI, "policies", "apply", str(path)], env=_env(home, kafka_bootstrap, prefix),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    asyncio.run(_produce(kafka_bootstrap, prefix + specs.CONTROL.name, _commands(datetime.now(UTC))))
    yield home, prefix


def _ready_line(
    home: Path, bootstrap: str, prefix: str, service: str, *args: str,
    while_running: Callable[[str], None] | None = None,
) -> tuple[str, str]:  # fmt: skip
    """Start the service, wait for its ready line; (that line, everything it printed)."""
    log = home / f"{service.replace(' ', '-')}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, *args], env=_env(home, bootstrap, prefix), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = [ln for ln in log.read_text().splitlines() if ln.startswith(f"{service} ready: ")]
            if found:
                time.sleep(1.0)  # one line, not one per poll or per rebalance
                text = log.read_text()
                assert [ln for ln in text.splitlines() if ln.startswith(f"{service} ready: ")] == found
                if while_running is not None:
                    while_running(found[0])
                return found[0], text
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        raise AssertionError(f"no ready line from {service} in 120 s:\n{log.read_text()[-3000:]}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_worker_ready_line_counts_policies_commands_and_partitions(
    kafka_bootstrap: str, deployment: tuple[Path, str]
) -> None:
    home, prefix = deployment
    line, text = _ready_line(home, kafka_bootstrap, prefix, "worker", "worker", "--progress", "0")
    assert line == (
        f'worker ready: bootstrap {kafka_bootstrap}, prefix "{prefix}", 3 policies, '
        f"2 commands in force, partitions {ALL_PARTS}"
    )
    assert "\x1b[" not in text


def test_health_ready_line(kafka_bootstrap: str, deployment: tuple[Path, str]) -> None:
    home, prefix = deployment
    line, _ = _ready_line(home, kafka_bootstrap, prefix, "health", "health", "--progress", "0")
    assert line == (
        f'health ready: bootstrap {kafka_bootstrap}, prefix "{prefix}", config defaults, 0 objectives, '
        f"group {prefix}agentledger-health, partitions {prefix}{specs.EVENTS.name} {ALL_PARTS}; "
        f"{prefix}{specs.PRICED.name} {ALL_PARTS}; {prefix}{specs.HEALTH_PROVIDERS.name} {ALL_PARTS}"
    )


def test_sink_ready_line_and_its_group_carries_the_prefix(
    kafka_bootstrap: str, deployment: tuple[Path, str]
) -> None:
    home, prefix = deployment
    root = home / "wh"
    line, _ = _ready_line(
        home, kafka_bootstrap, prefix, "sink", "sink", "--progress", "0", "--root", str(root)
    )
    group = f"{prefix}agentledger-warehouse"
    assert line == (
        f'sink ready: bootstrap {kafka_bootstrap}, prefix "{prefix}", group {group}, root {root}, '
        f"partitions {prefix}{specs.PRICED.name} {ALL_PARTS}; {prefix}{specs.CONTROL.name} 0; "
        f"{prefix}{specs.ALERTS.name} {ALL_PARTS}"
    )

    async def groups() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            return {g[0] for g in await admin.list_consumer_groups()}
        finally:
            await admin.close()

    assert group in asyncio.run(groups())  # a second prefixed deployment gets a group of its own


def test_alerts_dispatch_ready_line(kafka_bootstrap: str, deployment: tuple[Path, str]) -> None:
    home, prefix = deployment
    state = home / "dispatch.db"
    line, _ = _ready_line(home, kafka_bootstrap, prefix, "alerts dispatch", "alerts", "dispatch",
                          "--config", "examples/alerts.yaml", "--state", str(state))  # fmt: skip
    assert line == (
        f'alerts dispatch ready: bootstrap {kafka_bootstrap}, prefix "{prefix}", '
        f"3 channels (ops-slack, oncall, audit-hook), state {state}, partitions {ALL_PARTS}"
    )


def test_api_ready_line_names_the_port_it_serves_on(
    kafka_bootstrap: str, deployment: tuple[Path, str]
) -> None:
    home, prefix = deployment
    pattern = (
        rf'api ready: bootstrap {re.escape(kafka_bootstrap)}, prefix "{re.escape(prefix)}", '
        r"records up to ([\d,]+) bytes, serving on (http://127\.0\.0\.1:\d+)"
    )

    def answers(line: str) -> None:  # the line comes after the bind: its port answers
        found = re.fullmatch(pattern, line)
        assert found, line
        assert int(found.group(1).replace(",", "")) > 0
        assert httpx.get(found.group(2) + "/healthz", timeout=5).status_code == 200

    _ready_line(home, kafka_bootstrap, prefix, "api", "api", "serve", "--port", "0", while_running=answers)
