"""benchmarks/rollout.py runs in --quick mode and writes its keys (figures, not targets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rollout_benchmark_quick_writes_its_keys(tmp_path: Path) -> None:
    out = tmp_path / "rollout.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rollout.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    for bad in ("cost_2x", "quality_minus_10pct"):
        assert res[f"{bad}_rolled_back_share"] == 1.0, bad  # every bad version is caught
        assert res[f"{bad}_anchor_rolled_back_share"] == 1.0, bad
        assert 0 < res[f"{bad}_exposed_tasks_median"] <= res[f"{bad}_anchor_static50_exposed_tasks_median"]
    assert res["good_promoted_share"] == 1.0
    assert res["good_time_to_100pct_s_median"] > 0
    assert "static 50%" in proc.stdout
