"""One error root for agentledger.

Every error says whether retrying can help: ``TransientError`` (retry with backoff) or
``TerminalError`` (dead-letter it, or report it to the caller). The API maps these to HTTP in
one place; the worker maps them to "retry" or "DLQ".
"""

from __future__ import annotations


class AgentLedgerError(Exception):
    """Root of every error agentledger raises on purpose."""


class TransientError(AgentLedgerError):
    """Retrying later may succeed (broker unavailable, timeout)."""


class TerminalError(AgentLedgerError):
    """Retrying will not help (invalid input, bad configuration)."""


class ContractError(TerminalError):
    """Input does not match the event contract. ``problems`` lists (field path, message)."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class ConfigError(TerminalError):
    """A setting or a configuration file is wrong; the message says which and how to fix it."""


class NotFoundError(TerminalError):
    """The thing asked for does not exist."""


class LauncherError(TerminalError):
    """The local Kafka launcher could not do what was asked (the message says why)."""


class PortTaken(LauncherError):
    """Another process bound a port the launcher had found free (a race, not a user error)."""
