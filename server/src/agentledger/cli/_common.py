"""Helpers shared by the command modules: console, settings, the broker to talk to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from agentledger.settings import Settings, get_settings

# rich writes no colour or cursor codes when the stream is not a terminal
console = Console(highlight=False, soft_wrap=True)  # a log line is never folded
err = Console(stderr=True, highlight=False, soft_wrap=True)


LOGLEVELS = ("debug", "info", "warning", "error")


def _check_loglevel(value: str) -> str:
    if value.lower() not in LOGLEVELS:
        raise typer.BadParameter(f"--loglevel is one of {', '.join(LOGLEVELS)}")
    return value.lower()


def loglevel_option() -> Any:
    """``--loglevel`` as every long-running service takes it: one spelling, one default
    (``warning``; each service prints its ready line and its progress whatever the level)."""
    return typer.Option(
        "warning", "--loglevel", callback=_check_loglevel, help=f"Log level: {', '.join(LOGLEVELS)}."
    )


def settings() -> Settings:
    return get_settings()


def kafka_home(s: Settings | None = None) -> Path:
    return (s or settings()).home / "kafka"


def bootstrap(s: Settings | None = None) -> str:
    """The cluster to talk to: ``AGENTLEDGER_KAFKA_BOOTSTRAP``, else the local one.

    Raises a clear error when neither exists, and ``BrokerUnavailable`` (exit 69) when no
    broker of it accepts a connection within 3 s.
    """
    from agentledger.admin import BrokerUnavailable, probe_broker
    from agentledger.localkafka import LocalKafka

    s = s or settings()
    if s.kafka_bootstrap:
        probe_broker(s.kafka_bootstrap)
        return s.kafka_bootstrap
    local = LocalKafka(kafka_home(s), s.kafka_version)
    state, alive = local.status()
    if state is None or not alive:
        stopped = " (it is stopped; its data is kept)" if local.kept() else ""
        raise BrokerUnavailable(
            f"no Kafka to talk to{stopped}: run `agentledger kafka up` or set AGENTLEDGER_KAFKA_BOOTSTRAP"
        )
    probe_broker(state.bootstrap)
    return state.bootstrap


def checked_bootstrap(service: str, s: Settings | None = None) -> str:
    """``bootstrap()`` plus ``require_topics()``: the broker answers and the topics are there."""
    s = s or settings()
    boot = bootstrap(s)
    require_topics(boot, service, s)
    return boot


def require_topics(boot: str, service: str, s: Settings | None = None) -> None:
    """Refuse (exit 78, one line) to start ``service`` when its topics are missing or a
    compacted one is not compacted."""
    from agentledger.admin import require_topics as check

    s = s or settings()
    check(boot, service, s.topic_prefix, s.kafka_client_options())
