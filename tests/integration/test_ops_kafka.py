"""`agentledger kafka down` then `up`: the data and the address survive; the broker never
creates a topic on its own. Real broker, real CLI, a home of its own (issue #13, item 5)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from agentledger.errors import LauncherError, PortTaken
from agentledger.localkafka import DEFAULT_PORT, LocalKafka, free_ports, port_free, wait_ready

CLI = [sys.executable, "-m", "agentledger"]


def _cli(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTLEDGER_HOME": str(home)}
    env.pop("AGENTLEDGER_KAFKA_BOOTSTRAP", None)
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=b"k")
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            out += [r.value for recs in batch.values() for r in recs]
            parts = list(consumer.assignment())
            if parts:
                ends = await consumer.end_offsets(parts)
                if all([await consumer.position(tp) >= ends[tp] for tp in parts]):
                    break
    finally:
        await consumer.stop()
    return out


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _try_auto_create(bootstrap: str, topic: str) -> bool:
    """Produce to a topic nobody created: True if the broker accepted it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"x"), 8)
        return True
    except (KafkaError, TimeoutError):
        return False
    finally:
        await producer.stop()


def _hold(port: int) -> socket.socket | None:
    """Keep ``port`` busy for the test (None when something else already holds it)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


def test_up_picks_a_free_port_keeps_data_and_address_across_down_up(tmp_path: Path) -> None:
    held = _hold(DEFAULT_PORT)  # 9092 taken, as on a machine with another Kafka
    try:
        assert not port_free(DEFAULT_PORT)
        up = _cli(tmp_path, "kafka", "up")
        assert up.returncode == 0, up.stderr
    finally:
        if held:
            held.close()
    bootstrap = up.stdout.strip().splitlines()[-1]
    assert bootstrap != f"127.0.0.1:{DEFAULT_PORT}"
    assert f"port {DEFAULT_PORT} is taken: using {bootstrap.rsplit(':', 1)[1]}" in " ".join(up.stdout.split())
    try:
        assert _cli(tmp_path, "topics", "create").returncode == 0
        events, policies = "agentledger.events.v1", "agentledger.policies.v1"
        asyncio.run(_produce(bootstrap, events, [b"e1", b"e2", b"e3"]))
        asyncio.run(_produce(bootstrap, policies, [b"p1"]))
        # the broker creates no topic by itself
        assert asyncio.run(_try_auto_create(bootstrap, "nobody.created.this")) is False
        assert "nobody.created.this" not in asyncio.run(_topics(bootstrap))

        down = _cli(tmp_path, "kafka", "down")
        assert down.returncode == 0 and "stopped" in down.stdout and "data kept" in down.stdout
        status = _cli(tmp_path, "kafka", "status")
        assert status.returncode == 1 and "data kept" in status.stdout

        again = _cli(tmp_path, "kafka", "up")  # no --port: 9092 is free now, yet the old port is kept
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines()[-1] == bootstrap
        assert asyncio.run(_read_all(bootstrap, events)) == [b"e1", b"e2", b"e3"]
        assert asyncio.run(_read_all(bootstrap, policies)) == [b"p1"]
    finally:
        _cli(tmp_path, "kafka", "down")


def test_up_fresh_deletes_the_data_and_a_changed_port_is_refused(tmp_path: Path) -> None:
    up = _cli(tmp_path, "kafka", "up")
    assert up.returncode == 0, up.stderr
    try:
        assert _cli(tmp_path, "topics", "create").returncode == 0
        _cli(tmp_path, "kafka", "down")
        other = _cli(tmp_path, "kafka", "up", "--port", "1")
        assert other.returncode == 1 and "--fresh" in other.stderr and len(other.stderr.splitlines()) == 1
        fresh = _cli(tmp_path, "kafka", "up", "--fresh")
        assert fresh.returncode == 0, fresh.stderr
        assert "agentledger.events.v1" not in asyncio.run(_topics(fresh.stdout.strip().splitlines()[-1]))
    finally:
        _cli(tmp_path, "kafka", "down")


def test_a_port_taken_while_the_broker_starts_is_never_mistaken_for_ours(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI once saw `kafka up --fresh` print 127.0.0.1:9092 and return another test's broker:
    the port was free when checked, another cluster bound it while our JVM started, our broker
    died on the bind and the readiness probe was answered by the other cluster."""
    taken = int(kafka_bootstrap.rsplit(":", 1)[1])
    with pytest.raises(LauncherError, match="not ours"):
        wait_ready(kafka_bootstrap, 1, 3, cluster_id="AAAAAAAAAAAAAAAAAAAAAA")
    wait_ready(kafka_bootstrap, 1, 30)  # without an expected id any cluster answers

    import agentledger.localkafka as localkafka

    monkeypatch.setattr(localkafka, "port_free", lambda port, host="127.0.0.1": True)  # the race
    local = LocalKafka(tmp_path / "kafka")
    with pytest.raises(PortTaken, match="Address already in use"):
        local.up(nodes=1, ports=[taken, free_ports(1)[0]], timeout=60)
    assert local.status() == (None, []) or not local.status()[1]
