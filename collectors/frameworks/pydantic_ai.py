"""Pydantic AI: which agent an LLM call belongs to.

Pydantic AI keeps the current run's ``RunContext`` in a context variable while it calls the
model; its ``agent.name`` (given, or inferred by Pydantic AI from the variable holding the
agent) is the agent. A delegate agent run from a tool of another agent is its own run, so its
calls are its own. A kill raised by the hook inside a run propagates out of ``agent.run()``
/ ``run_sync()`` as ``AgentKilled`` (from a delegate: out of the delegating tool, so the
outer run stops too unless that tool catches it).
"""

from __future__ import annotations

from agentledger.collectors import naming

_STATE = {"installed": False}


def current_agent() -> str | None:
    from pydantic_ai._run_context import get_current_run_context

    ctx = get_current_run_context()
    agent = getattr(ctx, "agent", None) if ctx is not None else None
    name = getattr(agent, "name", None)
    return str(name) if name else None


def install() -> bool:
    from pydantic_ai._run_context import get_current_run_context  # noqa: F401 - fails here if absent

    naming.add_agent_source(current_agent)
    _STATE["installed"] = True
    return True


def uninstall() -> None:
    naming.remove_agent_source(current_agent)
    _STATE["installed"] = False
