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
    for key in ("hook_overhead", "hook_cpu", "hook_work", "proxy_overhead", "hook_own"):
        assert math.isfinite(figures[f"{key}_us_median"]) and math.isfinite(figures[f"{key}_us_p99"])
    # The overheads are medians of per-round differences (blocks of each way in turn), so they
    # are not the difference of the per-call medians; the p99s are per call.
    assert figures["block"] >= 1 and figures["calls"] == 200
    difference = figures["call_us_p99_hooked"] - figures["call_us_p99_plain"]
    assert abs(figures["hook_overhead_us_p99"] - difference) <= 0.2
    anchor = figures["proxy_overhead_us_median"]
    if anchor > 0:
        assert figures["hook_proxy_ratio"] == round(figures["hook_overhead_us_median"] / anchor, 3)
    # The load the figures were taken under is part of them.
    assert figures["cpus"] >= 1 and figures["load_avg_start"] >= 0 and figures["load_avg_end"] >= 0
    # The usage events are built on the sender's thread: that costs CPU too, reported beside.
    assert figures["sender_build_cpu_us_median"] > 0
    # Every hooked call was recorded once, and only the hooked ones.
    assert figures["usage_events"] == figures["usage_events_expected"] == figures["hooked_calls"] == 440
    assert "hook overhead" in proc.stdout and "proxy overhead (anchor)" in proc.stdout
    assert 0 < figures["hook_own_us_median"] <= figures["hook_own_us_p99"]
    # Minor page faults per call on the timing thread, per way, over the network and in memory.
    for prefix in ("minflt_per_call", "minflt_per_call_work"):
        for way in ("plain", "hooked") + (("proxy",) if prefix == "minflt_per_call" else ()):
            assert figures[f"{prefix}_{way}"] >= 0, (prefix, way)
    assert "minor page faults per call" in proc.stdout
