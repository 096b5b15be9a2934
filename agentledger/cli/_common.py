"""Helpers shared by the command modules: console, settings, the broker to talk to."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from agentledger.settings import Settings, get_settings

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def settings() -> Settings:
    return get_settings()


def kafka_home(s: Settings | None = None) -> Path:
    return (s or settings()).home / "kafka"


def bootstrap(s: Settings | None = None) -> str:
    """The cluster to talk to: ``AGENTLEDGER_KAFKA_BOOTSTRAP``, else the local one.

    Raises a clear error when neither exists.
    """
    from agentledger.errors import ConfigError
    from agentledger.localkafka import LocalKafka

    s = s or settings()
    if s.kafka_bootstrap:
        return s.kafka_bootstrap
    state, alive = LocalKafka(kafka_home(s), s.kafka_version).status()
    if state is None or not alive:
        raise ConfigError(
            "no Kafka to talk to: set AGENTLEDGER_KAFKA_BOOTSTRAP or run `agentledger kafka up`"
        )
    return state.bootstrap
