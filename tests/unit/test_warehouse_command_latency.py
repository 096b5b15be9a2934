"""command_latency: each command joined with the event that caused it (the demo's latency column)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from agentledger.events import Action, ControlCommand, Scope, ScopeKind
from agentledger.warehouse import queries as q
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.rows import ModelBuffer
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import priced_events
from agentledger.wire import dump


def test_latency_from_cause_event_to_command(tmp_path: Path) -> None:
    events = priced_events(50, seed=3)
    store = Store(str(tmp_path))
    land_priced(store, events, "p0-a")
    cause = events[10].event
    kill = ControlCommand(
        command_id="cmd-latency-1", ts=cause.ts + timedelta(milliseconds=250), reason="budget",
        scope=Scope(kind=ScopeKind.AGENT, tenant=cause.tenant, agent=cause.agent), action=Action.KILL,
        cause_event_id=cause.event_id,
    )  # fmt: skip
    manual = kill.model_copy(
        update={"command_id": "cmd-latency-2", "cause_event_id": None, "ts": cause.ts + timedelta(seconds=5)}
    )
    buf = ModelBuffer("commands")
    buf.add_record(dump(kill), 0, 0)
    buf.add_record(dump(manual), 0, 1)
    store.write("commands", cause.ts.date().isoformat(), "p0-0-1", buf.to_table())
    rows = q.command_latency(Catalog(store))
    assert [(r["action"], r["latency_ms"]) for r in rows] == [("kill", 250), ("kill", None)]
    assert q.command_latency(Catalog(store), tenant="nobody") == []
    assert q.event_count(Catalog(store)) == len({e.event.event_id for e in events})
