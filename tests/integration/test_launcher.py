"""The launcher's promises: clear errors, idempotent up, clean down, stale state handled."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agentledger.errors import LauncherError
from agentledger.localkafka import LocalKafka, free_ports, pid_alive


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        with pytest.raises(LauncherError, match=f"port {busy} on 127.0.0.1 is in use"):
            LocalKafka(tmp_path).up(ports=[busy, free_ports(1)[0]])


def test_java_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LauncherError, match="`java` was not found"):
        LocalKafka(tmp_path).up()


def test_stale_pid_file_is_replaced(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    ports = free_ports(2)
    (tmp_path / "cluster.json").write_text(json.dumps({
        "version": "4.1.1", "started_at": 0, "startup_s": 0,
        "nodes": [{"node_id": 1, "port": ports[0], "controller_port": ports[1], "pid": dead.pid}],
    }))  # fmt: skip
    local = LocalKafka(tmp_path)
    assert local.status()[1] == []
    state = local.up(timeout=120)
    try:
        assert local.status()[1] == [1]
        assert local.up() == local.load()  # idempotent: the running cluster is returned
    finally:
        report = local.down()
    assert "stopped" in report[0]
    assert not pid_alive(state.nodes[0].pid or 0)


def test_never_ready_shows_the_log_tail(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="not ready after"):
        LocalKafka(tmp_path).up(timeout=0.2)
    assert LocalKafka(tmp_path).load() is None  # it cleaned up after itself


def test_cli_up_status_down(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTLEDGER_HOME": str(tmp_path)}
    env.pop("AGENTLEDGER_KAFKA_BOOTSTRAP", None)
    cli = [sys.executable, "-m", "agentledger", "kafka"]
    port = free_ports(1)[0]
    # two consecutive free ports are likely but not certain; retry once on a clash
    up = subprocess.run(
        [*cli, "up", "--port", str(port)], env=env, capture_output=True, text=True, timeout=180
    )
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip().splitlines()[-1] == f"127.0.0.1:{port}"
    status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "running" in status.stdout
    down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=60)
    assert "stopped" in down.stdout
    status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 1 and "not running" in status.stdout


def test_configured_bootstrap_launches_nothing(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AGENTLEDGER_HOME": str(tmp_path),
        "AGENTLEDGER_KAFKA_BOOTSTRAP": "10.255.255.1:9092",
    }
    up = subprocess.run(
        [sys.executable, "-m", "agentledger", "kafka", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 0 and "nothing launched" in up.stdout
    assert not (tmp_path / "kafka" / "cluster.json").exists()
