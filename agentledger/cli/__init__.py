"""The ``agentledger`` console script.

Each command group lives in its own module here and is registered in ``COMMANDS``; layers
(streams, warehouse, api) are imported inside the command functions, never at start-up, so
``agentledger --help`` stays fast and works with the client-only install.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

# (module, attribute): a typer.Typer registered as a group, or a function as a command.
COMMANDS: list[str] = [
    "agentledger.cli.kafka",
    "agentledger.cli.topics",
    "agentledger.cli.sample",
    "agentledger.cli.schema",
    "agentledger.cli.demo",
    "agentledger.cli.sink",
    "agentledger.cli.sql",
    "agentledger.cli.warehouse",
    "agentledger.cli.api",
    "agentledger.cli.report",
    "agentledger.cli.ui",
    "agentledger.cli.health",
    "agentledger.cli.worker",
    "agentledger.cli.policies",
    "agentledger.cli.guard",
]


def build_app() -> typer.Typer:
    import typer

    app = typer.Typer(
        name="agentledger",
        help="Cost attribution and cost control for AI agents in production.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(app)
    return app


def main() -> None:
    try:
        import typer  # noqa: F401
    except ImportError:
        sys.stderr.write(
            "the agentledger command line needs the server extra: pip install 'agentledger[server]'\n"
        )
        raise SystemExit(2) from None
    from agentledger.errors import AgentLedgerError

    try:
        build_app()()
    except AgentLedgerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(1) from None
