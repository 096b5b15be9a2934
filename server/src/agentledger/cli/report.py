"""``agentledger report --out report.html``: the dashboard views as one static file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from agentledger.cli._common import console, settings


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    tenant: str = typer.Option(None, help="Only this tenant (default: every tenant)."),
    root: str = typer.Option(
        None, "--root", help="Warehouse root (default: AGENTLEDGER_WAREHOUSE_URI or <home>/warehouse)."
    ),
    warehouse: str = typer.Option(None, "--warehouse", hidden=True),  # its old name, still taken
    start: str = typer.Option(None, help="From this event time, inclusive (ISO; UTC if no zone)."),
    end: str = typer.Option(None, help="Until this event time, exclusive (ISO; UTC if no zone)."),
    agent: str = typer.Option(None, help="Only this agent."),
    user: str = typer.Option(None, help="Only the traces of this user (attribute user.id)."),
    conversation: str = typer.Option(
        None, help="Only the traces of this conversation (attribute gen_ai.conversation.id)."
    ),
) -> None:
    """Write the overview, agent, trace, traces, agent chain, providers and decisions views
    into one HTML file (plotly.js inlined: it opens anywhere, with no server and no internet)."""
    from agentledger.dashboards.pagedata import Sources, View, all_pages
    from agentledger.dashboards.pages import render_report
    from agentledger.warehouse.reader import WarehouseReader

    s = settings()
    reader = WarehouseReader(root or warehouse or s.warehouse_root)
    view = View(agent=agent, user=user, conversation=conversation)
    if start or end:
        view.range, view.start, view.end = "custom", _time(start, "--start"), _time(end, "--end")
    budgets, commands = _live_state(tenant)
    pages = all_pages(Sources(reader, tenant, budgets, commands, view=view))
    out.write_text(render_report(pages), encoding="utf-8")
    notes = sorted({n for p in pages for n in p.notes if ":" in n and not n.startswith(("agent:", "trace:"))})
    for note in notes:
        console.print(f"note: {note}")
    if not budgets:
        console.print("note: no live budgets (set AGENTLEDGER_KAFKA_BOOTSTRAP to include them)")
    console.print(f"wrote {out} ({out.stat().st_size // 1024} KiB, {len(pages)} views)")


def _time(value: str | None, flag: str) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{flag} takes an ISO date or time, e.g. 2026-11-24T10:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _live_state(tenant: str | None) -> tuple[list[Any], list[Any]]:
    """Budget statuses and commands in force, read once from their compacted topics when a
    broker is configured; empty otherwise (the report still has every warehouse view)."""
    import asyncio

    from agentledger import topics
    from agentledger.api.kafka import read_compacted
    from agentledger.api.routers.budgets import scope_key_tenant
    from agentledger.events import BudgetStatus, ControlCommand

    s = settings()
    if not s.kafka_bootstrap:
        return [], []
    options = s.kafka_client_options()

    async def read() -> tuple[list[Any], list[Any]]:
        budgets = await read_compacted(
            s.kafka_bootstrap or "",
            topics.name(topics.BUDGETS, s.topic_prefix),
            BudgetStatus.model_validate_json,
            options,
        )
        commands = await read_compacted(
            s.kafka_bootstrap or "",
            topics.name(topics.CONTROL, s.topic_prefix),
            ControlCommand.model_validate_json,
            options,
        )
        from agentledger.lanes import ControlRecords

        records = ControlRecords()  # in force per scope, lane and authority; old keys superseded
        for key, command in commands.items():
            records.apply(key, command)
        return (
            [b for b in budgets.values() if tenant is None or scope_key_tenant(b.scope_key) == tenant],
            [c for c in records.current.values() if tenant is None or c.scope.tenant in (None, tenant)],
        )

    return asyncio.run(read())
