"""``agentledger report --out report.html``: the dashboard views as one static file."""

from __future__ import annotations

from pathlib import Path

import typer

from agentledger.cli._common import console, settings


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    tenant: str = typer.Option(None, help="Only this tenant (default: every tenant)."),
    warehouse: str = typer.Option(
        None, help="Parquet root (default: AGENTLEDGER_WAREHOUSE_URI or <home>/warehouse)."
    ),
) -> None:
    """Write overview, agent, trace, providers and alerts/commands views into one HTML file
    (plotly.js inlined: it opens anywhere, with no server and no internet)."""
    from agentledger.api.pagedata import Sources, all_pages
    from agentledger.api.warehouse import WarehouseReader
    from agentledger.dashboards.pages import render_report

    reader = WarehouseReader(warehouse or settings().warehouse_root)
    pages = all_pages(Sources(reader, tenant))
    out.write_text(render_report(pages), encoding="utf-8")
    notes = sorted({n for p in pages for n in p.notes if ":" in n and not n.startswith(("agent:", "trace:"))})
    for note in notes:
        console.print(f"note: {note}")
    console.print(f"wrote {out} ({out.stat().st_size // 1024} KiB, {len(pages)} views)")
