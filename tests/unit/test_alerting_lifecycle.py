"""Alert lifecycle and its sqlite store, with a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agentledger.events import AlertEvent, AlertState, Severity
from agentledger.streams.alerts.alerting import AlertStore

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _alert(i: int, state: AlertState, at: float, key: str = "budget.hard|acme/planner") -> AlertEvent:
    return AlertEvent(
        alert_id=f"alert-{i:08d}",
        dedup_key=key,
        ts=datetime.fromtimestamp(at, UTC),
        rule=key.split("|")[0],
        entity=key.split("|")[1],
        tenant="acme",
        state=state,
        severity=Severity.ERROR if state is AlertState.ALERT else Severity.INFO,
        summary="spend over the limit",
        figures={"spend_usd": 12.5},
    )


def _route(alert: AlertEvent) -> list[str]:
    # severity-based routing: the INFO-severity resolve routes nowhere by itself
    return ["slack", "pd"] if alert.severity is Severity.ERROR else []


def _store(tmp_path: Path, clock: Clock, renotify_s: float = 3600) -> AlertStore:
    return AlertStore(tmp_path / "state.db", renotify_s=renotify_s, max_age_s=3600, clock=clock)


def test_storm_of_1000_breaches_gives_one_trigger_and_one_resolve(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock)
    kinds = []
    for start in range(0, 1000, 100):  # consumer batches of 100, one transaction each
        batch = []
        for i in range(start, start + 100):
            clock.t += 0.01
            batch.append((0, i, _alert(i, AlertState.ALERT, clock.t)))
        kinds += [n.kind if n else None for n in store.ingest_batch("alerts", batch, _route)]
    clock.t += 1
    note = store.ingest("alerts", 0, 1000, _alert(1000, AlertState.RESOLVED, clock.t), _route)
    kinds.append(note.kind if note else None)
    assert [k for k in kinds if k] == ["trigger", "resolve"]
    sent = [(i.kind, i.channel) for i in store.due()]
    # the resolve waits behind its trigger per channel; both channels get the trigger
    assert sent == [("trigger", "slack"), ("trigger", "pd")]
    for item in store.due():
        store.mark_sent(item.id)
    assert [(i.kind, i.channel) for i in store.due()] == [("resolve", "slack"), ("resolve", "pd")]
    assert store.state_of("budget.hard|acme/planner") is AlertState.RESOLVED


def test_replayed_records_after_restart_are_not_queued_twice(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock)
    store.ingest("alerts", 2, 10, _alert(1, AlertState.ALERT, clock.t), _route)
    store.close()
    again = _store(tmp_path, clock)
    assert again.next_offsets("alerts") == {2: 11}
    assert again.ingest("alerts", 2, 10, _alert(1, AlertState.ALERT, clock.t), _route) is None
    assert len(again.due()) == 2


def test_warn_then_alert_escalates_and_renotify_after_interval(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock, renotify_s=600)
    warn = store.ingest("a", 0, 0, _alert(1, AlertState.WARN, clock.t), lambda a: ["slack"])
    assert warn is not None and warn.kind == "warn"
    clock.t += 5
    trig = store.ingest("a", 0, 1, _alert(2, AlertState.ALERT, clock.t), _route)
    assert trig is not None and trig.kind == "trigger" and trig.previous is AlertState.WARN
    clock.t += 60
    assert store.ingest("a", 0, 2, _alert(3, AlertState.ALERT, clock.t), _route) is None
    assert store.renotify_due() == []
    clock.t += 600
    due = store.renotify_due()
    assert [n.kind for n in due] == ["renotify"]
    assert store.renotify_due() == []  # once per interval


def test_ok_without_an_active_alert_is_silent_and_old_alerts_notify_nobody(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock)
    assert store.ingest("a", 0, 0, _alert(1, AlertState.OK, clock.t), _route) is None
    assert store.ingest("a", 0, 1, _alert(2, AlertState.RESOLVED, clock.t), _route) is None
    old = _alert(3, AlertState.ALERT, clock.t - 7200, key="x|y")
    assert store.ingest("a", 0, 2, old, _route) is None
    assert store.state_of("x|y") is AlertState.ALERT
    assert store.due() == []


def test_late_older_transition_changes_nothing(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock)
    store.ingest("a", 0, 0, _alert(1, AlertState.ALERT, clock.t), _route)
    store.ingest("a", 0, 1, _alert(2, AlertState.RESOLVED, clock.t + 2), _route)
    assert store.ingest("a", 0, 2, _alert(3, AlertState.ALERT, clock.t + 1), _route) is None
    assert store.state_of("budget.hard|acme/planner") is AlertState.RESOLVED


def test_alert_first_seen_in_an_old_replay_triggers_on_its_first_fresh_repeat(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock, renotify_s=60)
    assert store.ingest("a", 0, 0, _alert(1, AlertState.ALERT, clock.t - 7200), _route) is None
    clock.t += 120
    assert store.renotify_due() == []  # never told: nothing to remind about
    note = store.ingest("a", 0, 1, _alert(2, AlertState.ALERT, clock.t), _route)
    assert note is not None and note.kind == "trigger"
    assert sorted(i.channel for i in store.due()) == ["pd", "slack"]
