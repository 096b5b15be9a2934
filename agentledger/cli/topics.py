"""``agentledger topics create|list``."""

from __future__ import annotations

import asyncio

import typer

from agentledger.cli._common import bootstrap, console, settings

topics_app = typer.Typer(help="Create and list agentledger's Kafka topics.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")


@topics_app.command("create")
def create(
    replication: int = typer.Option(None, help="Default: min(3, brokers)."),
) -> None:
    """Create every topic that does not exist yet (safe to run again)."""
    from agentledger.admin import create_topics

    s = settings()
    results = asyncio.run(
        create_topics(bootstrap(s), prefix=s.topic_prefix, replication=replication, settings=s)
    )
    for r in results:
        what = "created" if r.created else "exists "
        kind = "compacted" if r.compacted else "retention"
        console.print(f"{what}  {r.name:<36} partitions={r.partitions} {kind}")


@topics_app.command("list")
def list_() -> None:
    """Print the topic table (name, key, partitions, cleanup) from agentledger.topics."""
    from agentledger import topics

    s = settings()
    for spec in topics.ALL:
        cleanup = "compact" if spec.compacted else "delete"
        console.print(
            f"{s.topic_prefix + spec.name:<36} key={spec.key:<16} partitions={spec.partitions} {cleanup}"
        )
