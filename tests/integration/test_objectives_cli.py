"""`agentledger objectives apply | list | delete` on the real broker: what it writes is what the
health worker reads (the compacted objectives topic), and a bad file is one clear line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from agentledger.streams.objectivetopic import read_objectives

CLI = [sys.executable, "-m", "agentledger"]


def _cli(topics: Any, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTLEDGER_KAFKA_BOOTSTRAP": topics.bootstrap,
           "AGENTLEDGER_TOPIC_PREFIX": topics.prefix, "AGENTLEDGER_HOME": str(home), "COLUMNS": "200"}  # fmt: skip
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_objectives_apply_list_delete(topics: Any, tmp_path: Path) -> None:
    file = tmp_path / "objectives.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "policies": [],  # other sections of the policy file are ignored
                "objectives": [
                    {"objective_id": "planner-p99", "kind": "latency", "target": 0.99, "threshold_ms": 10000,
                     "selector": {"tenant": "acme", "agent": "planner"}},
                    {"objective_id": "openai-avail", "kind": "availability", "target": 0.999,
                     "selector": {"provider": "openai", "per": "provider"}},
                ],
            }
        )
    )  # fmt: skip
    done = _cli(topics, tmp_path, "objectives", "apply", str(file))
    assert done.returncode == 0, done.stderr
    assert "applied  planner-p99" in done.stdout and "latency 0.99 within 10000 ms per agent" in done.stdout
    on_topic = asyncio.run(read_objectives(topics.bootstrap, topics.prefix))
    assert sorted(on_topic) == ["openai-avail", "planner-p99"]
    assert (
        on_topic["planner-p99"].threshold_ms == 10000 and on_topic["openai-avail"].selector.per == "provider"
    )
    listed = _cli(topics, tmp_path, "objectives", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {
        oid: line
        for line in listed.stdout.splitlines()
        for oid in ("planner-p99", "openai-avail")
        if oid in line
    }
    assert "tenant=acme agent=planner" in rows["planner-p99"] and "page 14.4x" in rows["planner-p99"]
    assert "provider=openai" in rows["openai-avail"], listed.stdout
    assert _cli(topics, tmp_path, "objectives", "delete", "planner-p99").returncode == 0
    assert sorted(asyncio.run(read_objectives(topics.bootstrap, topics.prefix))) == ["openai-avail"]
    # a bad objective: one line naming the field, nothing written
    file.write_text(yaml.safe_dump({"objectives": [{"objective_id": "x", "kind": "latency", "target": 0.9}]}))
    bad = _cli(topics, tmp_path, "objectives", "apply", str(file))
    assert bad.returncode != 0 and "objectives[0]" in bad.stderr and "threshold_ms" in bad.stderr, bad.stderr
    assert sorted(asyncio.run(read_objectives(topics.bootstrap, topics.prefix))) == ["openai-avail"]


def test_read_objectives_ignores_a_record_that_does_not_validate_as_the_worker_does(topics: Any) -> None:
    from agentledger import topics as specs
    from agentledger.compacted import publish
    from agentledger.events import ObjectivePolicy
    from agentledger.streams.objectivetopic import put_objectives

    good = ObjectivePolicy.model_validate(
        {"objective_id": "p99", "kind": "latency", "target": 0.99, "threshold_ms": 5000}
    )
    asyncio.run(put_objectives(topics.bootstrap, topics.prefix, [good]))
    asyncio.run(publish(topics.bootstrap, topics.prefix + specs.OBJECTIVES.name, [("p99", b"{not json")]))
    on_topic = asyncio.run(read_objectives(topics.bootstrap, topics.prefix))
    assert list(on_topic) == ["p99"] and on_topic["p99"].threshold_ms == 5000
