"""Names a hostile ingest key could send: HTML in the agent and model names."""

from __future__ import annotations

from typing import Any

from agentledger.events import SpanEvent, UsageEvent
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import priced_events

EVIL = '<a href="https://evil.example/phish">click</a>'


def land_hostile_names(root: str) -> None:
    """A few traces whose agent and model names are HTML, landed next to what is there."""
    out = []
    for p in priced_events(6, seed=3):
        update: dict[str, Any] = {"agent": EVIL}
        if isinstance(p.event, UsageEvent | SpanEvent) and p.event.model:
            update["model"] = EVIL
        out.append(p.model_copy(update={"event": p.event.model_copy(update=update)}))
    land_priced(Store(root), out, "hostile")
