"""Alert lifecycle per dedup key, and its durable store (lifecycle, delivery outbox, offsets).

Producers (the health detectors, the budget worker) publish *transitions*, maybe repeated,
maybe 1,000 times in a storm. The lifecycle turns them into notifications:

    OK ──► WARN ──► ALERT ──► RESOLVED        (any active state can resolve; WARN ⇄ ALERT)

- entering WARN or ALERT notifies (``warn`` / ``trigger``), once;
- the same state again notifies nobody, except a ``renotify`` after ``renotify_s``;
- OK/RESOLVED after an active state sends a recovery notice (``resolve``) to the channels
  that got the trigger; OK/RESOLVED otherwise is silent.

``AlertStore`` keeps it all in one sqlite file and applies a batch of Kafka records in ONE
transaction (lifecycle rows, outbox rows, the records' offsets): a crash either happened
before (the records are read again) or after (they are done), so nothing is lost and nothing
is queued twice.
Outbox ids are deterministic, so a replay cannot add a second copy either.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agentledger.events import AlertEvent, AlertState

Kind = Literal["trigger", "warn", "resolve", "renotify"]
ACTIVE = (AlertState.WARN, AlertState.ALERT)


@dataclass(frozen=True, slots=True)
class Notification:
    """Something to tell the channels about one alert."""

    kind: Kind
    alert: AlertEvent
    previous: AlertState | None
    notify_count: int


@dataclass(slots=True)
class LifecycleRow:
    dedup_key: str
    state: AlertState
    updated_ts: float
    last_notified_ts: float
    notify_count: int
    channels: list[str]
    alert_json: str


def transition(
    row: LifecycleRow | None, alert: AlertEvent, now: float, renotify_s: float, notify: bool = True
) -> tuple[LifecycleRow, Notification | None]:
    """The lifecycle as a pure function: the new row, and the notification if any."""
    ts = alert.ts.timestamp()
    if row is not None and ts < row.updated_ts:
        return row, None  # an older transition arriving late changes nothing
    prev = row.state if row else AlertState.OK
    new_state = alert.state
    kind: Kind | None = None
    # Active and never told (e.g. first seen in an old replay): the first fresh one triggers.
    untold = row is not None and row.notify_count == 0
    if new_state in ACTIVE and (new_state != prev or untold):
        kind = "trigger" if new_state is AlertState.ALERT else "warn"
    elif new_state in ACTIVE and row is not None and now - row.last_notified_ts >= renotify_s:
        kind = "renotify"
    elif new_state not in ACTIVE and prev in ACTIVE:
        kind = "resolve"
        new_state = AlertState.RESOLVED
    if row is None:
        row = LifecycleRow(alert.dedup_key, new_state, ts, 0.0, 0, [], "")
    row.state, row.updated_ts, row.alert_json = new_state, ts, alert.model_dump_json()
    if kind is None or not notify:
        return row, None
    row.last_notified_ts = now
    row.notify_count += 1
    return row, Notification(kind, alert, prev, row.notify_count)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS lifecycle (
  dedup_key TEXT PRIMARY KEY, state TEXT NOT NULL, updated_ts REAL NOT NULL,
  last_notified_ts REAL NOT NULL, notify_count INTEGER NOT NULL, channels TEXT NOT NULL,
  alert_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, channel TEXT NOT NULL,
  dedup_key TEXT NOT NULL, kind TEXT NOT NULL, alert_json TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
  sent_at REAL, last_error TEXT);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(status, next_at);
CREATE TABLE IF NOT EXISTS offsets (topic TEXT, part INTEGER, next_offset INTEGER NOT NULL,
  PRIMARY KEY (topic, part));
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    id: str
    channel: str
    dedup_key: str
    kind: Kind
    alert: AlertEvent
    attempts: int


class AlertStore:
    """The dispatcher's durable state (one sqlite file, one dispatcher process per file)."""

    def __init__(
        self, path: str | Path, renotify_s: float, max_age_s: float, clock: Callable[[], float]
    ) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self.renotify_s, self.max_age_s, self.clock = renotify_s, max_age_s, clock

    def close(self) -> None:
        self.db.close()

    # --- offsets ------------------------------------------------------------------------
    def next_offsets(self, topic: str) -> dict[int, int]:
        rows = self.db.execute("SELECT part, next_offset FROM offsets WHERE topic=?", (topic,))
        return {int(p): int(o) for p, o in rows}

    # --- lifecycle ----------------------------------------------------------------------
    def _row(self, key: str) -> LifecycleRow | None:
        r = self.db.execute("SELECT * FROM lifecycle WHERE dedup_key=?", (key,)).fetchone()
        if r is None:
            return None
        return LifecycleRow(r[0], AlertState(r[1]), r[2], r[3], r[4], json.loads(r[5]), r[6])

    def _save(self, row: LifecycleRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO lifecycle VALUES (?,?,?,?,?,?,?)",
            (
                row.dedup_key,
                row.state.value,
                row.updated_ts,
                row.last_notified_ts,
                row.notify_count,
                json.dumps(row.channels),
                row.alert_json,
            ),
        )

    def state_of(self, key: str) -> AlertState | None:
        row = self._row(key)
        return row.state if row else None

    def _enqueue(self, row: LifecycleRow, n: Notification, channels: list[str], now: float) -> None:
        for ch in channels:
            item_id = (
                f"{n.alert.alert_id}:{n.kind}:{ch}"
                if n.kind != "renotify"
                else (f"{row.dedup_key}:renotify:{n.notify_count}:{ch}")
            )
            self.db.execute(
                "INSERT OR IGNORE INTO outbox (id, channel, dedup_key, kind, alert_json, next_at) "
                "VALUES (?,?,?,?,?,?)",
                (item_id, ch, row.dedup_key, n.kind, n.alert.model_dump_json(), now),
            )

    def ingest(
        self,
        topic: str,
        partition: int,
        offset: int,
        alert: AlertEvent,
        route: Callable[[AlertEvent], list[str]],
    ) -> Notification | None:
        """Apply one alerts-topic record, exactly once, in one transaction."""
        return self.ingest_batch(topic, [(partition, offset, alert)], route)[0]

    def ingest_batch(
        self,
        topic: str,
        records: list[tuple[int, int, AlertEvent | None]],
        route: Callable[[AlertEvent], list[str]],
    ) -> list[Notification | None]:
        """Apply records (partition, offset, alert or None for a record that is not an alert)
        in ONE transaction: one fsync per consumer batch, not per record, so a storm of
        thousands of alerts per second is absorbed."""
        now = self.clock()
        out: list[Notification | None] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for partition, offset, alert in records:
                out.append(self._apply(topic, partition, offset, alert, route, now))
            self.db.execute("COMMIT")
            return out
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _apply(
        self,
        topic: str,
        partition: int,
        offset: int,
        alert: AlertEvent | None,
        route: Callable[[AlertEvent], list[str]],
        now: float,
    ) -> Notification | None:
        seen = self.db.execute(
            "SELECT next_offset FROM offsets WHERE topic=? AND part=?", (topic, partition)
        ).fetchone()
        if seen is not None and offset < seen[0]:
            return None  # replayed after a restart: already applied
        self.db.execute("INSERT OR REPLACE INTO offsets VALUES (?,?,?)", (topic, partition, offset + 1))
        if alert is None:
            return None
        fresh = now - alert.ts.timestamp() <= self.max_age_s
        row, note = transition(self._row(alert.dedup_key), alert, now, self.renotify_s, notify=fresh)
        if note is not None:
            # A recovery goes where the trigger went, even if the resolve's severity routes
            # nowhere; a new trigger may add channels.
            chans = route(alert)
            if note.kind in ("trigger", "warn"):
                row.channels = list(dict.fromkeys(row.channels + chans)) if note.previous in ACTIVE else chans
            else:
                chans = row.channels or chans
            self._enqueue(row, note, chans, now)
        self._save(row)
        return note

    def renotify_due(self) -> list[Notification]:
        """Alerts still active past the renotify interval: remind their channels (queued)."""
        now = self.clock()
        out: list[Notification] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            keys = [
                r[0]
                for r in self.db.execute(
                    "SELECT dedup_key FROM lifecycle WHERE state IN (?,?) AND notify_count > 0 "
                    "AND last_notified_ts <= ?",
                    (AlertState.WARN.value, AlertState.ALERT.value, now - self.renotify_s),
                )
            ]
            for key in keys:
                row = self._row(key)
                if row is None:
                    continue
                row.last_notified_ts = now
                row.notify_count += 1
                note = Notification(
                    "renotify", AlertEvent.model_validate_json(row.alert_json), row.state, row.notify_count
                )
                self._enqueue(row, note, row.channels, now)
                self._save(row)
                out.append(note)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return out

    # --- outbox -------------------------------------------------------------------------
    def due(self, limit: int = 100) -> list[OutboxItem]:
        """Pending items whose time has come; only the oldest per (channel, alert) so a
        resolve never overtakes its trigger at a receiver that was down."""
        rows = self.db.execute(
            "SELECT o.seq, o.id, o.channel, o.dedup_key, o.kind, o.alert_json, o.attempts "
            "FROM outbox o WHERE o.status='pending' AND o.next_at <= ? AND NOT EXISTS ("
            " SELECT 1 FROM outbox p WHERE p.status='pending' AND p.channel=o.channel "
            " AND p.dedup_key=o.dedup_key AND p.seq < o.seq) ORDER BY o.seq LIMIT ?",
            (self.clock(), limit),
        ).fetchall()
        return [
            OutboxItem(r[0], r[1], r[2], r[3], r[4], AlertEvent.model_validate_json(r[5]), r[6]) for r in rows
        ]

    def mark_sent(self, item_id: str) -> None:
        self.db.execute("UPDATE outbox SET status='sent', sent_at=? WHERE id=?", (self.clock(), item_id))

    def retry_later(self, item_id: str, delay_s: float, error: str) -> None:
        self.db.execute(
            "UPDATE outbox SET attempts=attempts+1, next_at=?, last_error=? WHERE id=?",
            (self.clock() + delay_s, error, item_id),
        )

    def give_up(self, item_id: str, error: str) -> None:
        self.db.execute("UPDATE outbox SET status='dead', last_error=? WHERE id=?", (error, item_id))

    def counts(self) -> dict[str, int]:
        return {s: int(n) for s, n in self.db.execute("SELECT status, count(*) FROM outbox GROUP BY status")}
