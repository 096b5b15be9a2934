"""Every service and command that checks its topics at start names them in ``topics.NEEDED_BY``
(a missing entry is a KeyError at start, not a clear line)."""

from __future__ import annotations

import re
from pathlib import Path

from agentledger import topics

ROOT = Path(__file__).resolve().parents[2]


def test_every_service_that_checks_its_topics_has_an_entry() -> None:
    names: set[str] = set()
    for path in (ROOT / "server" / "src").rglob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r'require_topics\([^,]+,\s*"([a-z]+)"', text))
        names |= set(re.findall(r'checked_bootstrap\("([a-z]+)"', text))
    assert {"worker", "health", "sink", "api", "alerts"} <= names  # the scan finds the services
    assert names <= set(topics.NEEDED_BY), names - set(topics.NEEDED_BY)


def test_each_service_needs_only_topics_that_exist() -> None:
    every = {t.name for t in topics.ALL}
    for service, specs in topics.NEEDED_BY.items():
        assert {t.name for t in specs} <= every, service
    assert topics.SCOPE_DELTAS in topics.NEEDED_BY["worker"]
    assert topics.HEALTH_PROVIDERS in topics.NEEDED_BY["health"]
