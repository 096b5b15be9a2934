"""The warehouse benchmark runs in quick mode and reports sane figures (not the targets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

KEYS = (
    "sink_events_per_s",
    "pyarrow_write_rows_per_s",
    "query_ms_cost_by_agent_day",
    "query_ms_top_traces",
    "pandas_ms_cost_by_agent_day",
)


def test_quick_benchmark_writes_its_keys(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "wh.json"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "warehouse.py"
    env = {**os.environ, "AGENTLEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap}
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    for key in KEYS:
        assert figures[key] > 0, key
    assert figures["sink_events"] == 30_000 and figures["query_events"] == 200_000
    assert figures["query_ms_cost_by_agent_day"] < 60_000
    assert "sink events/s" in proc.stdout
