"""The sql and warehouse commands on a real folder of Parquet (no broker needed)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import priced_events

EVENTS = priced_events(60, seed=4)
TOTAL = sum((e.cost_usd for e in EVENTS), Decimal(0))
SQL = "SELECT sum(cost_usd) AS total, count(*) AS n FROM events"


@pytest.fixture
def root(tmp_path: Path) -> str:
    store = Store(str(tmp_path / "wh"))
    land_priced(store, EVENTS, "p0-a")
    land_priced(store, EVENTS[:20], "p0-b")  # duplicates
    return store.root


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentledger", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )


def test_sql_prints_a_table_and_writes_files(root: str, tmp_path: Path) -> None:
    shown = _cli("sql", "--root", root, SQL)
    assert shown.returncode == 0, shown.stderr
    assert format(TOTAL.normalize(), "f") in shown.stdout and str(len(EVENTS)) in shown.stdout
    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"out.{fmt}"
        done = _cli("sql", "--root", root, SQL, "--format", fmt, "--out", str(out))
        assert done.returncode == 0, done.stderr
        if fmt == "csv":
            row = next(csv.DictReader(out.open()))
        elif fmt == "json":
            row = json.loads(out.read_text())[0]
        else:
            row = pq.read_table(out).to_pylist()[0]
        assert Decimal(str(row["total"])) == TOTAL and int(row["n"]) == len(EVENTS)


def test_sql_prompt_and_errors(root: str) -> None:
    done = _cli("sql", "--root", root, stdin="SELECT count(*) AS n\nFROM events;\nSELECT * FROM nope;\n")
    assert done.returncode == 0
    assert str(len(EVENTS)) in done.stdout and "nope" in done.stderr
    bad = _cli("sql", "--root", root, "SELEC 1")
    assert bad.returncode == 1 and "error" in bad.stderr.lower()


def test_warehouse_query_compact_and_reprice(root: str) -> None:
    top = _cli("warehouse", "query", "top_traces", "--root", root, "--tenant", "acme")
    assert top.returncode == 0, top.stderr
    assert "globex" not in top.stdout
    compacted = _cli("warehouse", "compact", "--root", root)
    assert compacted.returncode == 0 and "rows -> 1 file" in compacted.stdout
    again = _cli("sql", "--root", root, SQL)
    assert format(TOTAL.normalize(), "f") in again.stdout
    priced = _cli("warehouse", "reprice", "--root", root, "--group-by", "model")
    assert priced.returncode == 0, priced.stderr
    assert "gpt-4o" in priced.stdout and "mystery-1" in priced.stdout
