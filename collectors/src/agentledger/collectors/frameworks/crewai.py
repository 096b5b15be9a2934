"""CrewAI: which agent an LLM call belongs to, and a clean stop.

The agent is the CrewAI ``Agent``'s ``role`` (what CrewAI's own telemetry reports as
``crewai.agent.role``; its ``gen_ai.agent.name`` is a hash). The adapter wraps
``Agent.execute_task`` / ``aexecute_task`` (a crew's tasks) and ``Agent.kickoff`` /
``kickoff_async`` (an agent on its own) so the role is the current agent while they run.

A kill is a deliberate stop, not a transient error: CrewAI retries a failed task
``max_retry_limit`` times, except for the exceptions it lists as pass-through. The adapter
adds ``AgentKilled``, ``Throttled`` and ``FailoverUnavailable`` to that list, so
``crew.kickoff()`` raises ``AgentKilled`` itself at the first refused call.
"""

from __future__ import annotations

from typing import Any

from ._scope import STOPS, AgentScope

SCOPE = AgentScope("crewai")
_SAVED: dict[str, Any] = {}


def _role(agent: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    role = getattr(agent, "role", None)
    return str(role).strip() if role else None


def install() -> bool:
    from crewai.agent import core

    for method in ("execute_task", "aexecute_task", "kickoff", "kickoff_async"):
        SCOPE.wrap(core.Agent, method, _role)
    passthrough = getattr(core, "_passthrough_exceptions", None)
    if isinstance(passthrough, tuple) and "passthrough" not in _SAVED:
        _SAVED["passthrough"] = passthrough
        core._passthrough_exceptions = (*passthrough, *(e for e in STOPS if e not in passthrough))
    SCOPE.install()
    return True


def uninstall() -> None:
    SCOPE.uninstall()
    if "passthrough" in _SAVED:
        from crewai.agent import core

        core._passthrough_exceptions = _SAVED.pop("passthrough")
