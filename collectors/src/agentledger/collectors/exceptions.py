"""What the Guard raises into agent code: the one place agentledger raises on purpose there."""

from __future__ import annotations

from agentledger.errors import AgentLedgerError


class AgentKilled(AgentLedgerError):
    """A kill command applies to this agent/tenant/workflow/trace. Stop the work."""

    def __init__(self, message: str, *, command_id: str = "", scope_key: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.command_id = command_id
        self.scope_key = scope_key
        self.reason = reason


class BudgetKilled(AgentKilled):
    """Killed because a budget's hard limit was reached."""


class LoopKilled(AgentKilled):
    """Killed because a runaway loop was detected."""


class ManualKill(AgentKilled):
    """Killed by an operator."""


class ControlUnavailable(AgentKilled):
    """The Guard has not read the control topic, and it is set to fail closed
    (``fail_open=False`` / ``AGENTLEDGER_GUARD_FAIL_OPEN=false``): the work is refused."""


class Throttled(AgentLedgerError):
    """A throttle applies and no token is available now (raised only with ``wait=False``)."""

    def __init__(self, message: str, *, retry_after_s: float, scope_key: str = "") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.scope_key = scope_key


class ToolDenied(AgentLedgerError):
    """A tool policy denies this tool call (or its approval was denied or timed out): the tool
    did not run. Not an ``AgentKilled``: the agent may handle it and go on."""

    def __init__(
        self, message: str, *, tool: str, policy_id: str | None = None, approval_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.tool = tool
        self.policy_id = policy_id
        self.approval_id = approval_id
