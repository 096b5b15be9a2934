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
    # a table shows money at 6 decimals, under a header; CSV and JSON keep it exact
    assert f"{TOTAL:.6f}" in shown.stdout and str(len(EVENTS)) in shown.stdout
    assert "total" in shown.stdout.splitlines()[1] and format(TOTAL.normalize(), "f") not in shown.stdout
    piped = _cli("sql", "--root", root, SQL, "--format", "csv")  # no --out: to stdout
    assert piped.returncode == 0, piped.stderr
    row = next(csv.DictReader(piped.stdout.splitlines()))
    assert Decimal(row["total"]) == TOTAL and int(row["n"]) == len(EVENTS)
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
    listed = _cli("warehouse", "files", "--root", root)
    assert listed.returncode == 0, listed.stderr
    header = next(line for line in listed.stdout.splitlines() if "dataset" in line)
    assert all(h in header for h in ("date", "files", "bytes"))
    assert any(line.split("│")[1].strip() == "events" for line in listed.stdout.splitlines() if "│" in line)
    again = _cli("sql", "--root", root, SQL, "-f", "json")
    assert Decimal(json.loads(again.stdout)[0]["total"]) == TOTAL
    priced = _cli("warehouse", "reprice", "--root", root, "--group-by", "model")
    assert priced.returncode == 0, priced.stderr
    assert "gpt-4o" in priced.stdout and "mystery-1" in priced.stdout


def test_warehouse_query_takes_each_querys_parameters(root: str) -> None:
    by_model = _cli("warehouse", "query", "costs", "--root", root, "--group-by", "model",
                    "--bucket", "day", "-f", "json")  # fmt: skip
    assert by_model.returncode == 0, by_model.stderr
    rows = json.loads(by_model.stdout)
    assert {r["model"] for r in rows} == {getattr(e.event, "model", None) for e in EVENTS}
    assert all("bucket" in r for r in rows)
    assert sum(Decimal(r["cost_usd"] or 0) for r in rows) == TOTAL
    trace = EVENTS[0].event.trace_id
    tree = _cli("warehouse", "query", "trace_tree", "--root", root, "--trace-id", trace, "-f", "csv")
    assert tree.returncode == 0, tree.stderr
    spans = {e.event.span_id for e in EVENTS if e.event.trace_id == trace}
    assert len(tree.stdout.strip().splitlines()) - 1 == len(spans), tree.stdout
    later = _cli(
        "warehouse", "query", "cost_by_agent_day", "--root", root, "--start", "2999-01-01", "-f", "json"
    )
    assert later.returncode == 0 and json.loads(later.stdout) == []
    needs = _cli("warehouse", "query", "trace_tree", "--root", root)
    assert needs.returncode == 2 and "trace_tree needs --trace-id" in needs.stderr
    wrong = _cli("warehouse", "query", "agents", "--root", root, "--bucket", "day")
    assert wrong.returncode == 2 and "agents does not take --bucket" in wrong.stderr


def test_csv_writes_a_list_column_as_json_text(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    from agentledger.cli._output import emit_rows

    rows = [{"trace_id": "t1", "agents": ["planner", "writer"]}, {"trace_id": "t2", "agents": []}]
    emit_rows(rows, "csv", None)  # the `traces` query's shape; pyarrow's CSV writer refuses lists
    emit_rows(rows, "csv", tmp_path / "t.csv")
    printed = capfdbinary.readouterr().out.decode()
    for text in (printed, (tmp_path / "t.csv").read_text()):
        assert '"[""planner"", ""writer""]"' in text and '"[]"' in text
