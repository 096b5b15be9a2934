"""Where the client sends when nothing is configured, how it finds a local broker, and what an
implicit ``@guarded()`` does with no control plane at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentledger.collectors import ControlUnavailable, Emitter, NoOpTransport, client, emitter, guard, guarded
from agentledger.settings import get_settings, running_local_bootstrap


@pytest.fixture
def nothing_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in ("AGENTLEDGER_KAFKA_BOOTSTRAP", "AGENTLEDGER_API_KEY", "AGENTLEDGER_GUARD_FAIL_OPEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    monkeypatch.setattr(emitter, "_warned_noop", False)
    get_settings.cache_clear()
    try:
        yield tmp_path
    finally:
        client.shutdown(1.0)
        guard._default_guard = None
        get_settings.cache_clear()


def write_state(home: Path, *pids: int) -> Path:
    path = home / "kafka" / "cluster.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    nodes = [
        {"node_id": i, "port": 9100 + 2 * i, "controller_port": 9101 + 2 * i, "pid": p}
        for i, p in enumerate(pids)
    ]
    path.write_text(json.dumps({"version": "4.1.1", "nodes": nodes, "started_at": 0, "startup_s": 1}))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_local_broker_state_is_read_like_the_cli(tmp_path: Path) -> None:
    assert running_local_bootstrap(tmp_path / "kafka" / "cluster.json") is None  # no file
    assert running_local_bootstrap(write_state(tmp_path, dead_pid())) is None  # stopped
    assert (
        running_local_bootstrap(write_state(tmp_path, os.getpid(), dead_pid()))
        == "127.0.0.1:9100,127.0.0.1:9102"
    )
    (tmp_path / "kafka" / "cluster.json").write_text("{not json")
    assert running_local_bootstrap(tmp_path / "kafka" / "cluster.json") is None


def test_nothing_configured_warns_once_that_events_go_nowhere(
    nothing_configured: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = Emitter(tenant="acme", agent="a"), Emitter(tenant="acme", agent="b")
    try:
        assert isinstance(first.transport, NoOpTransport) and isinstance(second.transport, NoOpTransport)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1
        assert "go nowhere" in warnings[0] and "AGENTLEDGER_KAFKA_BOOTSTRAP" in warnings[0]
    finally:
        first.shutdown(1)
        second.shutdown(1)


def test_a_running_local_broker_is_used_when_nothing_else_is_set(nothing_configured: Path) -> None:
    write_state(nothing_configured, os.getpid())
    em = Emitter(tenant="acme", agent="a")
    try:
        assert em.bootstrap == "127.0.0.1:9100"
        assert getattr(em.transport, "bootstrap", None) == "127.0.0.1:9100"
    finally:
        em.shutdown(0.2)


def test_guarded_without_any_control_plane_fails_open_and_says_so(
    nothing_configured: Path, caplog: pytest.LogCaptureFixture
) -> None:
    @guarded(tenant="acme", agent="a")
    def work() -> str:
        return "ran"

    assert work() == "ran" and work() == "ran"
    assert guard._default_guard is not None and guard._default_guard.unready_checks == 2
    messages = [r.getMessage() for r in caplog.records if "failing open" in r.getMessage()]
    assert len(messages) == 1 and "bootstrap" in messages[0]


def test_guarded_fails_closed_when_configured(
    nothing_configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLEDGER_GUARD_FAIL_OPEN", "false")
    get_settings.cache_clear()

    @guarded(tenant="acme", agent="a")
    def work() -> str:
        return "ran"

    with pytest.raises(ControlUnavailable):
        work()
