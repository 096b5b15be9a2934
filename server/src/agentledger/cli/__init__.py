"""The ``agentledger`` console script.

Each command group lives in its own module here and is registered in ``COMMANDS``; layers
(streams, warehouse, api) are imported inside the command functions, never at start-up, so
``agentledger --help`` stays fast and works with the client-only install.

Exit codes (docs/kafka.md): 0 done; 1 an error the message explains (bad input or
configuration); 2 wrong usage of the command line; 3 and 4 ``guard check``: killed and
throttled; 69 no Kafka broker answers; 78 topics missing or with the wrong cleanup policy.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

EXIT_ERROR = 1
EXIT_BROKER_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE
EXIT_TOPICS = 78  # sysexits EX_CONFIG

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
    "agentledger.cli.keys",
    "agentledger.cli.tools",
    "agentledger.cli.report",
    "agentledger.cli.ui",
    "agentledger.cli.health",
    "agentledger.cli.worker",
    "agentledger.cli.policies",
    "agentledger.cli.objectives",
    "agentledger.cli.budgets",
    "agentledger.cli.guard",
    "agentledger.cli.rollout",
]

# `agentledger --help` groups commands by what people do with them, in this order.
PANELS: dict[str, tuple[str, ...]] = {
    "Start": ("demo", "kafka", "topics"),
    "Run": ("worker", "health", "sink", "alerts", "api"),
    "Operate": ("policies", "objectives", "budgets", "rollout", "guard", "keys", "tools", "approvals", "ui"),
    "Analyse": ("sql", "warehouse", "report"),
    "Dev": ("smoke", "schema"),
}


def _group_help(app: typer.Typer) -> None:
    panel_of = {name: panel for panel, names in PANELS.items() for name in names}
    for cmd in app.registered_commands:
        cmd.rich_help_panel = panel_of.get(cmd.name or "", "Other")
    for group in app.registered_groups:
        group.rich_help_panel = panel_of.get(group.name or "", "Other")
    for cmd in app.registered_commands:
        doc = cmd.help or (cmd.callback.__doc__ if cmd.callback else None) or ""
        first = " ".join(doc.split("\n\n")[0].split())
        cmd.short_help = cmd.short_help or first.split("; ")[0].rstrip(".") + "."
    order = {name: i for i, name in enumerate(n for names in PANELS.values() for n in names)}
    app.registered_commands.sort(key=lambda c: order.get(c.name or "", 99))
    app.registered_groups.sort(key=lambda g: order.get(g.name or "", 99))


def _version(value: bool) -> None:
    if value:
        import typer

        from agentledger.version import __version__

        typer.echo(f"agentledger {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    import typer

    app = typer.Typer(
        name="agentledger",
        help="Cost attribution and cost control for AI agents in production.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",  # docstrings' line breaks fold; blank lines split paragraphs
    )

    @app.callback()
    def root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """Cost attribution and cost control for AI agents in production."""

    for module_name in COMMANDS:
        importlib.import_module(module_name).register(app)
    _group_help(app)
    return app


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code) from None


def main() -> None:
    try:
        import typer  # noqa: F401
    except ImportError:
        sys.stderr.write(
            "the agentledger command line needs the server extra: pip install 'agentledger[server]'\n"
        )
        raise SystemExit(2) from None
    from aiokafka.errors import (
        KafkaConnectionError,
        KafkaTimeoutError,
        NodeNotReadyError,
        RequestTimedOutError,
    )

    from agentledger.admin import BrokerUnavailable, TopicsNotReady
    from agentledger.errors import AgentLedgerError

    try:
        build_app()()
    except BrokerUnavailable as exc:
        _fail(str(exc), EXIT_BROKER_UNAVAILABLE)
    except TopicsNotReady as exc:
        _fail(str(exc), EXIT_TOPICS)
    except AgentLedgerError as exc:
        _fail(str(exc), EXIT_ERROR)
    except (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError) as exc:
        # the broker went away after the start-up probe
        _fail(f"lost the Kafka broker ({type(exc).__name__}: {exc}); is it running?", EXIT_BROKER_UNAVAILABLE)
