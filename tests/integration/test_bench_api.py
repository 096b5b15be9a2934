"""The API benchmark runs in quick mode and reports sane figures (not the targets: the
machine is shared and noisy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_its_keys(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    env = {**os.environ, "AGENTLEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "api.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    for key in ("ingest_events_per_s", "ingest_p99_ms", "query_p99_ms", "anchor_kafka_events_per_s",
                "ingest_events_per_server_cpu_s"):  # fmt: skip
        assert figures[key] > 0, key
    assert figures["events"] >= 20_000
    assert (
        figures["ingest_p99_ms"] >= figures["ingest_p50_ms"]
        and figures["query_p99_ms"] >= figures["query_p50_ms"]
    )
    assert "ingest_events_per_s" in done.stdout and "anchor" in done.stdout
