"""The compacted-topic view remembers values by id, superseded ones included, within a bound."""

from __future__ import annotations

from agentledger.api.kafka import CompactedView


def test_by_id_finds_superseded_values_and_forgets_the_oldest() -> None:
    view: CompactedView[str] = CompactedView("t", "unused:9", {}, bytes.decode, id_of=lambda v: v, remember=3)
    view.apply(b"scope-a", b"kill-1")
    view.apply(b"scope-a", b"resume-2")  # replaces kill-1 for the scope
    assert view.get("scope-a") == "resume-2" and view.by_id("kill-1") == "kill-1"
    view.put("scope-b", "kill-3")
    view.apply(b"scope-c", b"kill-4")
    assert view.by_id("kill-1") is None  # beyond the bound
    assert [view.by_id(i) for i in ("resume-2", "kill-3", "kill-4")] == ["resume-2", "kill-3", "kill-4"]
    view.apply(b"scope-a", b"\xff")  # unreadable: skipped, nothing changes
    assert view.get("scope-a") == "resume-2"
