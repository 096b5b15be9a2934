"""Pydantic AI: which agent an LLM call belongs to.

Pydantic AI keeps the current run's ``RunContext`` in a context variable while it calls the
model; its ``agent.name`` (given, or inferred by Pydantic AI from the variable holding the
agent) is the agent. A delegate agent run from a tool of another agent is its own run, so its
calls are its own. A kill raised by the hook inside a run propagates out of ``agent.run()``
/ ``run_sync()`` as ``AgentKilled`` (from a delegate: out of the delegating tool, so the
outer run stops too unless that tool catches it).

Tool permissions (docs/security.md): ``install`` also wraps ``FunctionToolset.call_tool``, so
every function tool is checked with the Guard's tool policy before it runs. A denied tool does
not run; the model gets a tool result saying it was denied (the run goes on and ends as the
model decides), so a denial never breaks a run.
"""

from __future__ import annotations

from typing import Any

from agentledger.collectors import naming

_STATE: dict[str, Any] = {"installed": False, "call_tool": None}
DENIED_PREFIX = "agentledger denied this tool call: "


def current_agent() -> str | None:
    from pydantic_ai._run_context import get_current_run_context

    ctx = get_current_run_context()
    agent = getattr(ctx, "agent", None) if ctx is not None else None
    name = getattr(agent, "name", None)
    return str(name) if name else None


def install() -> bool:
    from pydantic_ai._run_context import get_current_run_context  # noqa: F401 - fails here if absent

    naming.add_agent_source(current_agent)
    _guard_tools()
    _STATE["installed"] = True
    return True


def _guard_tools() -> None:
    from pydantic_ai.toolsets.function import FunctionToolset

    if _STATE["call_tool"] is not None:
        return
    original = FunctionToolset.call_tool
    _STATE["call_tool"] = original

    async def call_tool(self: Any, name: str, tool_args: dict[str, Any], ctx: Any, tool: Any) -> Any:
        from agentledger.collectors.exceptions import ToolDenied
        from agentledger.collectors.guard import get_guard

        agent = getattr(getattr(ctx, "agent", None), "name", None)
        run_id = getattr(ctx, "run_id", None)
        try:
            await get_guard().atool(name, tool_args, agent=agent, trace=str(run_id) if run_id else None)
        except ToolDenied as exc:
            return DENIED_PREFIX + str(exc)
        return await original(self, name, tool_args, ctx, tool)

    FunctionToolset.call_tool = call_tool  # type: ignore[method-assign]


def uninstall() -> None:
    from pydantic_ai.toolsets.function import FunctionToolset

    naming.remove_agent_source(current_agent)
    if _STATE["call_tool"] is not None:
        FunctionToolset.call_tool = _STATE["call_tool"]  # type: ignore[method-assign]
        _STATE["call_tool"] = None
    _STATE["installed"] = False
