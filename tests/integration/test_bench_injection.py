"""benchmarks/injection.py runs in --quick mode and writes sane JSON (not the targets: shared CI)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_injection_benchmark_quick_writes_its_keys(tmp_path: Path) -> None:
    out = tmp_path / "injection.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "injection.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["split"] == "test"
    for key in ("public", "direct", "indirect", "lookalikes"):
        for figure in ("recall", "fpr"):
            for prefix in ("", "rules_", "linear_"):  # the default (rules + model), each alone
                value = res[f"{prefix}{key}_{figure}"]
                assert isinstance(value, float | int) and 0 <= value <= 1, (prefix, key, figure)
        assert res[f"{key}_positives"] > 0 and res[f"{key}_negatives"] > 0
    for key in (
        "screen_us_median", "screen_us_p99", "anchor_naive_us_median", "anchor_json_loads_us_median",
        "hook_check_us_first_median", "hook_check_us_cached_median", "rules_us_median", "linear_us_median",
    ):  # fmt: skip
        assert isinstance(res[key], float) and math.isfinite(res[key]) and res[key] > 0, key
    # the naive keyword anchor is measured on the same cases
    assert 0 <= res["anchor_naive_public_recall"] <= 1
    assert res["public_positives"] == res["direct_positives"] + res["indirect_positives"]
    assert res["detector"] == "rules+linear-v2"
    assert (
        "RuleDetector.screen" in proc.stdout
        and "LinearDetector.screen" in proc.stdout
        and "json.loads" in proc.stdout
    )
