"""LangChain / LangGraph: which agent an LLM call belongs to.

LangChain hands every runnable its config through a context variable, so at the moment the
provider SDK is called the config of the calling node is at hand. Its metadata names the
agent: ``lc_agent_name`` (set by ``create_agent(name=...)``; the innermost named agent), else
the top-level LangGraph node the call runs under (``langgraph_checkpoint_ns`` starts with it:
a supervisor's ``researcher`` node, even when that node is a subgraph), else
``langgraph_node``. A kill raised by the hook inside a node reaches the caller of
``graph.invoke`` as ``AgentKilled`` itself (LangGraph re-raises a node's exception).
"""

from __future__ import annotations

from typing import Any

from agentledger.collectors import naming

_STATE = {"installed": False}


def agent_of_metadata(metadata: Any) -> str | None:
    """The agent named by a LangChain run's metadata (None when it names none)."""
    if not isinstance(metadata, dict):
        return None
    named = metadata.get("lc_agent_name")
    if named:
        return str(named)
    namespace = metadata.get("langgraph_checkpoint_ns")
    if isinstance(namespace, str) and namespace:
        top = namespace.split("|", 1)[0].split(":", 1)[0]
        if top:
            return top
    node = metadata.get("langgraph_node")
    return str(node) if node else None


def current_agent() -> str | None:
    from langchain_core.runnables.config import var_child_runnable_config

    config = var_child_runnable_config.get()
    return agent_of_metadata(config.get("metadata")) if config else None


def install() -> bool:
    import langchain_core.runnables.config  # noqa: F401 - fails here, not per call, if absent

    naming.add_agent_source(current_agent)
    _STATE["installed"] = True
    return True


def uninstall() -> None:
    naming.remove_agent_source(current_agent)
    _STATE["installed"] = False
