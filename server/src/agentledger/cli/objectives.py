"""``agentledger objectives apply FILE.yaml | list | delete ID`` (the compacted objectives topic)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from agentledger.cli._common import checked_bootstrap, console, settings

objectives_app = typer.Typer(
    help="Latency/availability objectives: apply, list and delete.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(objectives_app, name="objectives")


@objectives_app.command("apply")
def apply(
    file: Path = typer.Argument(..., help="YAML with an `objectives:` list (other keys ignored)."),
) -> None:
    """Create or replace every objective in FILE (the health worker judges it within a second)."""
    from agentledger.streams.objectivetopic import load_objectives_file, put_objectives

    objectives = load_objectives_file(file)
    s = settings()
    boot = checked_bootstrap("objectives", s)
    asyncio.run(put_objectives(boot, s.topic_prefix, objectives, **s.kafka_client_options()))
    for o in objectives:
        bound = f" within {o.threshold_ms:g} ms" if o.threshold_ms else ""
        console.print(
            f"applied  {o.objective_id:<24} {o.kind.value} {o.target:g}{bound} per {o.selector.per}"
        )
    if not objectives:
        console.print("no objectives in the file")


@objectives_app.command("list")
def list_() -> None:
    """Print the objectives on the topic (those in the health worker's policy file are not listed)."""
    from agentledger.streams.objectivetopic import read_objectives

    s = settings()
    found = asyncio.run(
        read_objectives(checked_bootstrap("objectives", s), s.topic_prefix, **s.kafka_client_options())
    )
    from agentledger.cli._output import print_table

    rows = []
    for oid, o in sorted(found.items()):
        sel = o.selector
        what = " ".join(f"{k}={v}" for k, v in (("tenant", sel.tenant), ("agent", sel.agent),
                        ("version", sel.agent_version), ("workflow", sel.workflow),
                        ("provider", sel.provider), ("model", sel.model)) if v != "*")  # fmt: skip
        rules = ", ".join(f"{r.name} {r.burn_rate:g}x" for r in o.alerts) or "-"
        rows.append([oid, o.kind.value, f"{o.target:g}", f"{o.threshold_ms:g}" if o.threshold_ms else "-",
                     sel.per, what or "*", f"{o.window_days} d", rules, "yes" if o.enabled else "no"])  # fmt: skip
    print_table(["objective", "kind", "target", "ms", "per", "selector", "window", "alerts", "enabled"], rows)


@objectives_app.command("delete")
def delete(objective_id: str = typer.Argument(...)) -> None:
    """Delete an objective (tombstone); the health worker stops judging it."""
    from agentledger.streams.objectivetopic import delete_objective

    s = settings()
    boot = checked_bootstrap("objectives", s)
    asyncio.run(delete_objective(boot, s.topic_prefix, objective_id, **s.kafka_client_options()))
    console.print(f"deleted  {objective_id}")
