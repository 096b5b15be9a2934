"""CrewAI: which agent an LLM call belongs to, and a clean stop.

The agent is the CrewAI ``Agent``'s ``role`` (what CrewAI's own telemetry reports as
``crewai.agent.role``; its ``gen_ai.agent.name`` is a hash). The adapter wraps
``Agent.execute_task`` / ``aexecute_task`` (a crew's tasks) and ``Agent.kickoff`` /
``kickoff_async`` (an agent on its own) so the role is the current agent while they run.

A kill is a deliberate stop, not a transient error: CrewAI retries a failed task
``max_retry_limit`` times, except for the exceptions it lists as pass-through. The adapter
adds ``AgentKilled``, ``Throttled`` and ``FailoverUnavailable`` to that list, so
``crew.kickoff()`` raises ``AgentKilled`` itself at the first refused call.

Tool permissions (docs/security.md): a global ``before_tool_call`` hook (CrewAI's tool hooks)
checks every tool call with the Guard's tool policy; a denied call is blocked, so the tool does
not run and the agent gets CrewAI's "Tool execution blocked by hook" result and goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from ._scope import STOPS, AgentScope

log = logging.getLogger("agentledger.collectors")

SCOPE = AgentScope("crewai")
_SAVED: dict[str, Any] = {}


def _role(agent: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    role = getattr(agent, "role", None)
    return str(role).strip() if role else None


def _before_tool(ctx: Any) -> bool | None:
    """CrewAI's before_tool_call hook: False blocks the call."""
    from agentledger.collectors.exceptions import ToolDenied
    from agentledger.collectors.guard import get_guard

    name = str(getattr(ctx, "tool_name", "") or "")
    try:
        get_guard().tool(name, dict(getattr(ctx, "tool_input", None) or {}) or None)
    except ToolDenied as exc:
        log.warning("agentledger denied the CrewAI tool call %r: %s", name, exc)
        return False
    return None


def install() -> bool:
    from crewai.agent import core

    for method in ("execute_task", "aexecute_task", "kickoff", "kickoff_async"):
        SCOPE.wrap(core.Agent, method, _role)
    passthrough = getattr(core, "_passthrough_exceptions", None)
    if isinstance(passthrough, tuple) and "passthrough" not in _SAVED:
        _SAVED["passthrough"] = passthrough
        core._passthrough_exceptions = (*passthrough, *(e for e in STOPS if e not in passthrough))
    try:
        from crewai.hooks.tool_hooks import register_before_tool_call_hook
    except ImportError:  # a CrewAI without tool hooks: tools are not checked
        pass
    else:
        if "tool_hook" not in _SAVED:
            register_before_tool_call_hook(_before_tool)
            _SAVED["tool_hook"] = _before_tool
    SCOPE.install()
    return True


def uninstall() -> None:
    SCOPE.uninstall()
    if _SAVED.pop("tool_hook", None) is not None:
        from crewai.hooks.tool_hooks import unregister_before_tool_call_hook

        unregister_before_tool_call_hook(_before_tool)
    if "passthrough" in _SAVED:
        from crewai.agent import core

        core._passthrough_exceptions = _SAVED.pop("passthrough")
