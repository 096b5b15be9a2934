"""The collectors benchmark runs in quick mode and writes sane figures (not the targets: the
machine is shared and noisy; the targets are read off a full run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "emitter.py"


def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "emitter.json"
    env = {
        k: v for k, v in os.environ.items() if k != "AGENTLEDGER_KAFKA_BOOTSTRAP"
    }  # own broker: real outage
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    for key in ("record_usage_ns_median", "span_ns_median", "otel_span_ns_median", "guard_check_ns_median"):
        assert 0 < figures[key] < 1_000_000, (key, figures[key])
    assert figures["ratio_span_vs_otel"] == round(
        figures["span_ns_median"] / figures["otel_span_ns_median"], 3
    )
    assert figures["delivered_events_per_s"] > 1_000
    assert figures["delivered_stats"]["failed"] == 0 and figures["delivered_stats"]["dropped"] == 0
    assert 0 < figures["max_enqueue_us"] < 1_000_000
    assert figures["outage_missing"] == 0 and figures["outage_duplicates"] == 0
    assert "record_usage (ns, median)" in proc.stdout
