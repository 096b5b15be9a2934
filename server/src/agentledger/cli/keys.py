"""``agentledger keys rotate``: move every running agent's key pool for a provider off a key
(docs/security.md, "Rotating a key"). The other ``keys`` commands (API keys) are in ``api.py``."""

from __future__ import annotations

import asyncio
import getpass
import uuid

import typer

from agentledger.cli._common import checked_bootstrap, console, settings
from agentledger.cli.api import keys_app


def register(app: typer.Typer) -> None:
    """``rotate`` joins the ``keys`` group ``agentledger.cli.api`` registers."""


@keys_app.command("rotate")
def rotate(
    provider: str = typer.Option(..., help="As the hook records it: openai, anthropic, groq..."),
    tenant: str = typer.Option(None, help="Only this tenant's agents (default: every tenant)."),
    fingerprint: str = typer.Option(
        None,
        help="The key to move off, e.g. k-3f2a9c01b4de (events and alerts name keys so); "
        "default: the key each process is using.",
    ),
    reason: str = typer.Option("key rotation", help="Recorded with the command."),
) -> None:
    """Provider keys: every running Guard re-reads its key source and moves off a key."""
    from datetime import UTC, datetime

    from agentledger import topics
    from agentledger.compacted import publish
    from agentledger.errors import ConfigError
    from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind
    from agentledger.wire import dump

    try:
        command = ControlCommand(
            command_id=f"rotate-{uuid.uuid4().hex[:16]}",
            ts=datetime.now(UTC),
            scope=Scope(kind=ScopeKind.PROVIDER, provider=provider, tenant=tenant),
            action=Action.ROTATE,
            reason=reason,
            params=CommandParams(fingerprint=fingerprint),
            issued_by=f"cli:{getpass.getuser()}"[:128],
        )
    except ValueError as exc:  # never echo the input: it may be a key given by mistake
        bad = "fingerprint (k- and 12 hex digits, never the key)" if "fingerprint" in str(exc) else "options"
        raise ConfigError(f"keys rotate: invalid {bad}") from None
    s = settings()
    asyncio.run(
        publish(
            checked_bootstrap("guard", s),  # the control topic
            topics.name(topics.CONTROL, s.topic_prefix),
            [(command.key, dump(command))],
            s.kafka_client_options(),
        )
    )
    console.print(
        f"rotate {command.command_id} on {command.key}: moving off {fingerprint or 'the key in use'}"
    )
