"""The hook benchmark runs in quick mode and writes every figure (not the targets: the machine
is shared and noisy; the targets are read off a full run)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "hook.py"


def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "hook.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    for way in ("plain", "hooked", "proxy"):
        assert 0 < figures[f"call_us_median_{way}"] <= figures[f"call_us_p99_{way}"], way
    for key in ("hook_overhead", "hook_work", "proxy_overhead", "hook_own"):
        assert math.isfinite(figures[f"{key}_us_median"]) and math.isfinite(figures[f"{key}_us_p99"])
    difference = figures["call_us_median_hooked"] - figures["call_us_median_plain"]
    assert abs(figures["hook_overhead_us_median"] - difference) <= 0.2
    # Every hooked call was recorded once, and only the hooked ones.
    assert figures["usage_events"] == figures["usage_events_expected"] == figures["hooked_calls"] == 440
    assert "hook overhead" in proc.stdout and "proxy overhead (anchor)" in proc.stdout
    assert 0 < figures["hook_own_us_median"] <= figures["hook_own_us_p99"]
