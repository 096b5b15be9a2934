"""Fault suite: every test records one row of the closing table (what it injected, what it found)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class FaultRow:
    test: str
    fault: str
    sent: int = 0
    acked: int = 0
    found: int = 0
    lost: int = 0
    duplicated: int = 0
    after_dedupe: int = 0
    notes: list[str] = field(default_factory=list)


ROWS: list[FaultRow] = []


@pytest.fixture
def fault_row(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    def make(fault: str) -> FaultRow:
        row = FaultRow(request.node.name, fault)
        ROWS.append(row)
        return row

    return make


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if not ROWS:
        return
    tr = terminalreporter
    tr.section("fault suite: what was injected, what was found")
    head = f"{'test':<44} {'fault':<38} {'sent':>7} {'acked':>7} {'found':>7} {'lost':>5} {'dup':>5} {'dup after dedupe':>16}"
    tr.write_line(head)
    for r in ROWS:
        tr.write_line(
            f"{r.test[:44]:<44} {r.fault[:38]:<38} {r.sent:>7} {r.acked:>7} {r.found:>7} {r.lost:>5} {r.duplicated:>5} {r.after_dedupe:>16}"
        )
        for note in r.notes:
            tr.write_line(f"    {note}")
