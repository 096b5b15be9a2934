"""A service's progress line is printed when a figure moves, not every interval."""

from __future__ import annotations

from agentledger.cli._progress import ProgressReporter


def test_progress_lines_only_when_something_moved() -> None:
    rep = ProgressReporter("sink", "127.0.0.1:1", "g", ["a", "b"], {})
    first = rep.lines({"a": (10, 12), "b": (0, 0)})
    assert first == [
        "sink: committed 10 of 12 records on a (lag 2)",
        "sink: committed 0 of 0 records on b (lag 0)",
    ]
    assert rep.lines({"a": (10, 12), "b": (0, 0)}) == []
    assert rep.lines({"a": (1_200, 1_200), "b": (0, 0)}) == [
        "sink: committed 1,200 of 1,200 records on a (lag 0)"
    ]
