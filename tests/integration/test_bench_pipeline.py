"""benchmarks/pipeline.py --quick runs end to end on the test broker and writes sane figures
(not the targets: the machine is shared and noisy), for one worker and for two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_benchmark_quick(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    env = dict(os.environ, AGENTLEDGER_KAFKA_BOOTSTRAP=kafka_bootstrap)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pipeline.py"), "--quick", "--workers", "2",
                           "--json", str(out)], env=env, capture_output=True, text=True, timeout=420)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    for key in ("worker_events_per_s", "raw_consume_events_per_s", "ratio_worker_vs_raw", "enforce_p50_ms",
                "enforce_p99_ms", "validated_consume_events_per_s", "ratio_worker_vs_validated", "overshoot_usd", "overshoot_calls"):  # fmt: skip
        assert key in res, key
    assert res["worker_events_per_s"] > 0 and res["raw_consume_events_per_s"] > 0
    assert 0 < res["ratio_worker_vs_raw"] < 10
    # validating through the contract is slower than a bare JSON parse of the same records
    assert 0 < res["validated_consume_events_per_s"] < res["raw_consume_events_per_s"]
    assert res["enforce_trials"] >= 20 and res["enforce_trials_missed"] == 0
    assert 0 < res["enforce_p50_ms"] <= res["enforce_p95_ms"] <= res["enforce_p99_ms"] < 10_000
    assert res["nodes"] == "external" and res["enforce_target_p99_ms"] == 100
    client = res["enforce_hops_ms"]["client"]
    assert 0 <= client["p50"] <= client["p95"] <= client["p99"] <= client["max"]
    assert 0 <= res["overshoot_calls"] < res["runaway_calls"]
    assert "worker events/s" in proc.stdout
    # both worker counts ran and processed every event, and their CPU was measured
    for key in ("worker_events_per_s_1w", "worker_events_per_s_2w", "events_per_worker_cpu_s",
                "events_per_worker_cpu_s_2w", "fast_validated_consume_events_per_s",
                "validated_consume_events_per_cpu_s", "ratio_worker_cpu_vs_validated_cpu"):  # fmt: skip
        assert res[key] > 0, key
    assert res["worker_events_per_s"] == res["worker_events_per_s_1w"] and res["workers"] == 2
    assert res["decode_us_per_event_fast"] > 0 and res["decode_us_per_event_pydantic"] > 0
    assert res["core_us_per_event"] > 0 and "core us/event" in proc.stdout
    # the tenant budget spread over partitions: every trial is either measured or counted missed
    assert res["enforce_tenant_trials"] + res["enforce_tenant_trials_missed"] == 10
    if res["enforce_tenant_trials"]:
        assert 0 < res["enforce_tenant_p50_ms"] <= res["enforce_tenant_p99_ms"] < 10_000
    else:
        assert res["enforce_tenant_p99_ms"] is None
    assert "tenant p99 ms" in proc.stdout
