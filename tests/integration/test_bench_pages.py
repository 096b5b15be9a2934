"""The page benchmark runs in quick mode: it builds its warehouse and times every page
(the figures are not checked against the targets here: no timed assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PAGES = ("overview", "agent", "trace", "traces", "agent_chain", "providers", "decisions")


def test_quick_page_benchmark_times_every_page_without_a_failed_query(tmp_path: Path) -> None:
    out = tmp_path / "pages.json"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "pages.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    assert figures["anchor_events"] == figures["events"] > 15_000  # every event built is read back
    assert figures["anchor_count_ms"] > 0
    for view in ("run", "agent"):
        for page in PAGES:
            timed = figures["pages"][f"{page} ({view})"]
            assert timed["page_ms"] > 0 and timed["queries"] and timed["queries_ms"] > 0, page
            assert timed["notes"] == [] or all(
                n.startswith(("agent:", "trace:", "from ")) for n in timed["notes"]
            ), timed
    assert figures["anchor_scan_ms"] > 0 and "x scan" in proc.stdout
