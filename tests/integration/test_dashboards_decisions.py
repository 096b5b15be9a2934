"""The Decisions page under a user or conversation filter: the commands and alerts about
them (their traces', or a scope naming them), not every decision of the tenant."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from dashboard_data import LOOP_CONVERSATION, LOOP_START, LOOP_USER, land_loop_trace

from agentledger.api.testing import land_demo_warehouse
from agentledger.dashboards import pagedata
from agentledger.dashboards.pagedata import Sources, View
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind
from agentledger.warehouse.reader import WarehouseReader
from agentledger.warehouse.rows import ModelBuffer
from agentledger.warehouse.storage import Store, split_by_day
from agentledger.wire import dump


def _land_user_throttle(root: str) -> None:
    """A throttle on one end user (scope ``user/acme/user-bob``), with no trace of its own."""
    cmd = ControlCommand(
        command_id="bob-throttle-0",
        ts=LOOP_START + timedelta(minutes=5),
        scope=Scope(kind=ScopeKind.USER, tenant="acme", user="user-bob"),
        action=Action.THROTTLE,
        reason="user-bob over the per-user rate",
        params=CommandParams(rate_per_s=1.0),
    )
    buffer = ModelBuffer("commands")
    buffer.add_record(dump(cmd), 0, 200)
    for day, part in split_by_day(buffer.to_table()):
        Store(root).write("commands", day, "bob-commands", part)


def _decisions(root: str, **view: str) -> list[tuple[str, str]]:
    """(what, reason) of each row of the Decisions page's table."""
    page = pagedata.timeline(Sources(WarehouseReader(root), "acme", view=View(**view)))  # type: ignore[arg-type]
    (table,) = page.tables
    cols = table.columns
    return [(r[cols.index("what")].text, r[cols.index("reason")].text) for r in table.rows]


def test_decisions_follow_the_user_and_conversation_filters(tmp_path: Path) -> None:
    root = str(tmp_path / "wh")
    land_demo_warehouse(root)
    land_loop_trace(root)
    _land_user_throttle(root)
    everyone = _decisions(root)
    loop_kill = ("kill", "web_search called 6 times with the same arguments")
    bob = ("throttle", "user-bob over the per-user rate")
    assert loop_kill in everyone and bob in everyone and len(everyone) > 2
    # the loop trace is user-ana's (its root span says so): its kill is hers
    assert _decisions(root, user=LOOP_USER) == [loop_kill]
    assert _decisions(root, conversation=LOOP_CONVERSATION) == [loop_kill]
    # a command whose scope is the user, though it names no trace
    assert _decisions(root, user="user-bob") == [bob]
    assert _decisions(root, user="nobody") == []
    assert _decisions(root, user=LOOP_USER, conversation="another") == []
