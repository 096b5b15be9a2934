"""benchmarks/drift.py runs in --quick mode and writes sane JSON (not the targets: shared CI)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_drift_benchmark_quick_writes_its_keys(tmp_path: Path) -> None:
    out = tmp_path / "drift.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "drift.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    for key in (
        "detect_delay_scores_median",
        "false_alarms_per_10k",
        "anchor_cusum_only_false_alarms_per_10k",
    ):
        assert isinstance(res[key], float) and math.isfinite(res[key]), key
    assert 0 < res["detect_delay_scores_median"] < 2000
    assert 0 <= res["false_alarms_per_10k"] < 10_000
    assert res["stable_scores"] > 0 and res["missed_changes"] <= res["change_streams"]
    assert "detect delay median" in proc.stdout
