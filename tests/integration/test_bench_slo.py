"""benchmarks/slo.py runs in --quick mode and writes sane JSON (not the targets: shared CI)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_slo_benchmark_quick_writes_its_keys(tmp_path: Path) -> None:
    out = tmp_path / "slo.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "slo.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    for key in (
        "false_alerts_per_10k_windows",
        "anchor_p95_false_alerts_per_10k_windows",
        "failover_delay_s_x3",
        "anchor_p95_failover_delay_s_x3",
    ):
        assert isinstance(res[key], float) and math.isfinite(res[key]), key
    x10 = res["detection"]["x10"]
    # nearly every call is bad: the page fires close to the workbook's 1 h x 14.4 x 1 % / share
    assert x10["burn_rate_missed"] == 0
    assert abs(x10["burn_rate_delay_median_s"] - x10["predicted_s"]) <= 120
    assert 0 <= res["false_alerts_per_10k_windows"] <= res["anchor_p95_false_alerts_per_10k_windows"]
    assert 0 < res["failover_delay_s_x3"] < 600
    assert "static p95" in proc.stdout and "load average" in proc.stdout
