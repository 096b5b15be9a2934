"""The client and the Guard find the broker the way the CLI does, and the Guard is honest about
what it has read: a killed agent's first ``@guarded`` call raises; a Guard that cannot read
the control topic says why and fails open or closed as configured."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_collectors_exit import read_events
from test_collectors_guard import command, produce

from agentledger.collectors import AgentKilled, ControlUnavailable, Emitter, Guard, client, guard, guarded
from agentledger.events import Action, ScopeKind
from agentledger.localkafka import ClusterState, LocalKafka, Node, free_ports
from agentledger.settings import get_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No bootstrap in the environment, an empty AGENTLEDGER_HOME, no process-wide client."""
    monkeypatch.delenv("AGENTLEDGER_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        yield tmp_path / "home"
    finally:
        client.shutdown(1.0)
        if guard._default_guard is not None:
            guard._default_guard.close()
            guard._default_guard = None
        get_settings.cache_clear()


def pretend_kafka_up(home: Path, bootstrap: str) -> None:
    """Write the launcher's state file for the running test broker, as `agentledger kafka up` does."""
    port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
    node = Node(node_id=1, port=port, controller_port=0, pid=os.getpid())  # a live pid
    LocalKafka(home / "kafka")._save(ClusterState("test", [node], started_at=0.0, startup_s=0.0))


def test_guard_after_configure_uses_its_bootstrap(clean_env: Path, topics: Any) -> None:
    kill = command(Action.KILL, kind=ScopeKind.AGENT, tenant="acme", agent="planner")
    produce(topics.bootstrap, topics.control, kill)
    client.configure(tenant="acme", agent="planner", bootstrap=topics.bootstrap, topic=topics.events)
    g = Guard(control_topic=topics.control)  # no bootstrap given: the configured one
    try:
        assert g.bootstrap == topics.bootstrap
        assert g.wait_ready(30)
        with pytest.raises(AgentKilled):
            g.check(tenant="acme", agent="planner")
    finally:
        g.close()


def test_killed_agents_first_guarded_call_raises(
    clean_env: Path, topics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLEDGER_TOPIC_PREFIX", topics.prefix)
    get_settings.cache_clear()
    produce(topics.bootstrap, topics.control, command(Action.KILL, kind=ScopeKind.AGENT, tenant="acme", agent="planner"))  # fmt: skip
    client.configure(tenant="acme", agent="planner", bootstrap=topics.bootstrap)
    ran = []

    @guarded()
    def work() -> None:
        ran.append(1)

    with pytest.raises(AgentKilled):
        work()  # the process-wide Guard is built now, and has read nothing yet
    assert ran == []
    assert guard._default_guard is not None and guard._default_guard.unready_checks == 0


def test_killed_agents_first_async_guarded_call_raises(
    clean_env: Path, topics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLEDGER_TOPIC_PREFIX", topics.prefix)
    get_settings.cache_clear()
    produce(topics.bootstrap, topics.control, command(Action.KILL, kind=ScopeKind.AGENT, tenant="acme", agent="planner"))  # fmt: skip
    client.configure(tenant="acme", agent="planner", bootstrap=topics.bootstrap)

    @guarded()
    async def work() -> str:
        return "ran"

    with pytest.raises(AgentKilled):
        asyncio.run(work())


def test_client_and_guard_find_the_local_broker(clean_env: Path, topics: Any) -> None:
    pretend_kafka_up(clean_env, topics.bootstrap)
    get_settings.cache_clear()
    em = Emitter(tenant="acme", agent="found", topic=topics.events)  # no bootstrap anywhere else
    event_id = em.record_usage("openai", "gpt-4o", 10, 2)
    assert em.flush(30)
    em.shutdown(1)
    assert [e.event_id for e in read_events(topics.bootstrap, topics.events, 1)] == [event_id]
    g = Guard(control_topic=topics.control)
    try:
        assert g.wait_ready(30)
    finally:
        g.close()


def test_wait_ready_says_the_topic_is_missing_and_returns_early(
    topics: Any, caplog: pytest.LogCaptureFixture
) -> None:
    missing = topics.prefix + "no.such.control.topic"
    g = Guard(topics.bootstrap, missing)
    try:
        started = time.monotonic()
        assert g.wait_ready(120) is False
        assert time.monotonic() - started < 60  # it did not sit out the whole timeout
    finally:
        g.close()
    assert any(missing in r.getMessage() and "does not exist" in r.getMessage() for r in caplog.records)


def test_unreachable_control_plane_fails_open_or_closed_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    (port,) = free_ports(1)  # nothing listens here
    open_guard = Guard(f"127.0.0.1:{port}", "control", ready_timeout_s=0.3)
    closed_guard = Guard(f"127.0.0.1:{port}", "control", ready_timeout_s=0.3, fail_open=False)
    try:
        for _ in range(3):
            open_guard.check(tenant="acme", agent="planner")  # runs, counted
        assert open_guard.unready_checks == 3
        warnings = [r for r in caplog.records if "failing open" in r.getMessage()]
        assert len(warnings) == 1  # once a minute, not per call
        with pytest.raises(ControlUnavailable):
            closed_guard.check(tenant="acme", agent="planner")
        assert open_guard.wait_ready(0.5) is False
        assert any("not ready" in r.getMessage() for r in caplog.records)
    finally:
        open_guard.close()
        closed_guard.close()
