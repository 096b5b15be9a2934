"""What `agentledger --help` and `--version` tell a newcomer, and that `warehouse query`
offers every named query the docs list, with the parameters each really takes."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

from agentledger.cli.warehouse import _flag
from agentledger.version import __version__
from agentledger.warehouse import queries
from agentledger.warehouse.queries import NAMED

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentledger", *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "120"}, check=False)  # fmt: skip


def _panels(text: str) -> dict[str, list[str]]:
    """Panel title -> first word of each row, from rich's boxed help."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        title = re.match(r"╭─ (\w+) ─", line)
        if title:
            current = out.setdefault(title.group(1), [])
        elif current is not None and line.startswith("│ ") and line[2] != " ":
            current.append(line[2:].split()[0])
    return out


def test_version() -> None:
    done = _cli("--version")
    assert done.returncode == 0 and done.stdout == f"agentledger {__version__}\n"


def test_help_groups_commands_by_what_people_do() -> None:
    done = _cli("--help")
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout  # no terminal codes into a pipe
    panels = _panels(done.stdout)
    assert list(panels) == ["Options", "Start", "Run", "Operate", "Analyse", "Dev"]
    assert set(panels["Start"]) == {"demo", "kafka", "topics"}
    assert set(panels["Run"]) == {"worker", "health", "sink", "alerts", "api"}
    assert set(panels["Operate"]) == {
        "policies",
        "objectives",
        "budgets",
        "rollout",
        "guard",
        "keys",
        "tools",
        "approvals",
        "ui",
    }
    assert set(panels["Analyse"]) == {"sql", "warehouse", "report"}
    assert set(panels["Dev"]) == {"smoke", "schema"}


def test_every_named_query_in_the_docs_is_offered_with_its_parameters() -> None:
    docs = (ROOT / "docs" / "warehouse.md").read_text().split("## Named queries", 1)[1].split("\n## ", 1)[0]
    documented = {n for n in re.findall(r"`(\w+)", docs) if inspect.isfunction(getattr(queries, n, None))}
    assert documented and documented <= set(NAMED)
    for name, q in NAMED.items():
        assert getattr(queries, name) is q.run, name  # the registry names each function by its name
        sig = inspect.signature(q.run).parameters
        assert set(q.params) == set(sig) - {"cat", "tenant"}, name
        assert "tenant" in sig, name
        assert set(q.required) == {p for p in q.params if sig[p].default is inspect.Parameter.empty}
    shown = _cli("warehouse", "query", "--help")
    assert shown.returncode == 0, shown.stderr
    assert all(f"{name}  [" in shown.stdout for name in NAMED)
    for flag in ("--start", "--end", "--group-by", "--bucket", "--limit", "--trace-id", "--daily-limit"):
        assert flag in shown.stdout
    options = shown.stdout.split("Options", 1)[1]
    for q in NAMED.values():  # the command line has an option for every parameter of every query
        assert all(_flag(p) in options for p in q.params), q.name
