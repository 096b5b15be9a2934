"""``agentledger schema``: write the JSON Schema of every contract model."""

from __future__ import annotations

from pathlib import Path

import typer

from agentledger.cli._common import console


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)


def schema(out: Path = typer.Option(Path("docs/schema"), help="Folder for <Model>.json files.")) -> None:
    """Write docs/schema/<Model>.json for every model in agentledger.events."""
    from agentledger.schemas import write_schemas

    for path in write_schemas(out):
        console.print(f"wrote {path}")
