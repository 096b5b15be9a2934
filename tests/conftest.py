"""Fixtures shared by every test layer.

``kafka_bootstrap`` is a real Apache Kafka broker for the whole session: the one named by
``AGENTLEDGER_KAFKA_BOOTSTRAP``, or one started by the project's own launcher in a temporary
folder on free ports (and stopped at the end). ``topics`` gives each test its own uniquely
prefixed set of agentledger topics, so tests never see each other's records.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentledger import topics as topic_specs
from agentledger.localkafka import ClusterState, LocalKafka

_BROKERS: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "faults" in parts:
            item.add_marker(pytest.mark.faults)
    # The real-framework tests run last: their virtualenvs are built in the background while
    # the rest of the suite runs (pytest_collection_finish).
    items.sort(key=lambda item: "frameworks" in Path(str(item.fspath)).parts)


def pytest_collection_finish(session: pytest.Session) -> None:
    frameworks = Path(__file__).resolve().parent / "frameworks"
    needed = {
        Path(str(item.fspath)).stem.removeprefix("test_fw_")
        for item in session.items
        if frameworks in Path(str(item.fspath)).resolve().parents
    }
    if needed and len(session.items) > len(needed) * 4:  # something else runs meanwhile
        import importlib.util

        # registered under its own name: tests/frameworks/conftest.py's `import _venvs` then
        # gets this module, not a second copy
        spec = importlib.util.spec_from_file_location("_venvs", frameworks / "_venvs.py")
        assert spec is not None and spec.loader is not None
        module = sys.modules.setdefault("_venvs", importlib.util.module_from_spec(spec))
        if not hasattr(module, "prebuild_in_background"):
            spec.loader.exec_module(module)
        module.prebuild_in_background(sorted(needed))


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    for what, line in _BROKERS.items():
        terminalreporter.write_line(f"{what}: {line}")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("AGENTLEDGER_KAFKA_BOOTSTRAP")
    if configured:
        _BROKERS["kafka"] = f"configured cluster at {configured} (AGENTLEDGER_KAFKA_BOOTSTRAP)"
        yield configured
        return
    local = LocalKafka(tmp_path_factory.mktemp("kafka"))
    state = local.up(nodes=1, timeout=120)
    _BROKERS["kafka"] = (
        f"real Apache Kafka {state.version} broker launched at {state.bootstrap} "
        f"(ready in {state.startup_s:.1f}s)"
    )
    try:
        yield state.bootstrap
    finally:
        local.down()


@pytest.fixture(scope="session")
def kafka_cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, ClusterState]]:
    """A 3-node local cluster (replication 3, min ISR 2) for fault tests."""
    local = LocalKafka(tmp_path_factory.mktemp("kafka3"))
    state = local.up(nodes=3, timeout=180)
    _BROKERS["kafka3"] = (
        f"3-node Kafka {state.version} cluster at {state.bootstrap} (ready in {state.startup_s:.1f}s)"
    )
    try:
        yield local, state
    finally:
        local.down()


@dataclass(frozen=True)
class Topics:
    """Names of one test's private topics (same layout as production, unique prefix)."""

    bootstrap: str
    prefix: str

    @property
    def events(self) -> str:
        return self.prefix + topic_specs.EVENTS.name

    @property
    def priced(self) -> str:
        return self.prefix + topic_specs.PRICED.name

    @property
    def dlq(self) -> str:
        return self.prefix + topic_specs.DLQ.name

    @property
    def policies(self) -> str:
        return self.prefix + topic_specs.POLICIES.name

    @property
    def control(self) -> str:
        return self.prefix + topic_specs.CONTROL.name

    @property
    def budgets(self) -> str:
        return self.prefix + topic_specs.BUDGETS.name

    @property
    def alerts(self) -> str:
        return self.prefix + topic_specs.ALERTS.name


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> Topics:
    """Every agentledger topic, created under a prefix unique to this test."""
    from agentledger.admin import create_topics

    asyncio.run(create_topics(kafka_bootstrap, prefix=topic_prefix))
    return Topics(kafka_bootstrap, topic_prefix)
