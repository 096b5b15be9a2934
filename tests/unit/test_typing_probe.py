"""The type checker sees across layers: a wrong call from one layer into another fails
`make typecheck` (mypy strict with the repository's settings), a right one passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
from agentledger.streams.worker.processor import Processor
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.queries import cost_by_agent_day
from agentledger.collectors import Guard
from agentledger.warehouse import queries
from agentledger.warehouse.reader import WarehouseReader


def probe(p: Processor, cat: Catalog, guard: Guard, reader: WarehouseReader) -> None:
    p.{processor_call}
    cost_by_agent_day(cat, tenant={tenant})
    guard.{guard_call}
    reader.rows({named_query})
"""

GOOD = {
    "processor_call": "totals('agent@acme/planner', '1h', 0.0)",
    "tenant": "'acme'",
    "guard_call": "check('acme', 'planner')",
    "named_query": "queries.costs, group_by=['model'], tenant='acme'",  # as the API calls them
}


def mypy(tmp_path: Path, **probe: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "probe.py"
    path.write_text(PROBE.format(**(GOOD | probe)), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_right_calls_across_layers_type_check(tmp_path: Path) -> None:
    done = mypy(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        ({"processor_call": "no_such_method()"}, '"Processor" has no attribute "no_such_method"'),
        ({"tenant": "42"}, 'incompatible type "int"; expected "str | None"'),
        (
            {"guard_call": "check('acme', 'planner', no_such_argument=1)"},
            'Unexpected keyword argument "no_such_argument"',
        ),
        ({"named_query": "queries.cost_by_model, tenant='acme'"}, 'has no attribute "cost_by_model"'),
        (
            {"named_query": "queries.costs, group_by=['model'], tenant=7"},
            'Argument "tenant" to "rows" of "WarehouseReader" has incompatible type "int"',
        ),
    ],
)
def test_a_wrong_call_across_layers_fails_type_checking(
    tmp_path: Path, probe: dict[str, str], message: str
) -> None:
    done = mypy(tmp_path, **probe)
    assert done.returncode == 1 and message in done.stdout, done.stdout + done.stderr
