"""``agentledger topics create|list``."""

from __future__ import annotations

import asyncio

import typer

from agentledger.cli._common import bootstrap, settings

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
    from agentledger.cli._output import print_table

    rows = [[r.name, "created" if r.created else "exists", r.partitions, "compact" if r.compacted else "delete"]
            for r in results]  # fmt: skip
    print_table(["topic", "now", "partitions", "cleanup"], rows)


@topics_app.command("list")
def list_() -> None:
    """Print the topic table (name, key, partitions, cleanup) from agentledger.topics."""
    from agentledger import topics
    from agentledger.cli._output import print_table

    s = settings()
    rows = [
        [s.topic_prefix + t.name, t.key, t.partitions, "compact" if t.compacted else "delete"]
        for t in topics.ALL
    ]
    print_table(["topic", "key", "partitions", "cleanup"], rows)
