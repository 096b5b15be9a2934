"""LangChain / LangGraph: which agent an LLM call belongs to.

LangChain hands every runnable its config through a context variable, so at the moment the
provider SDK is called the config of the calling node is at hand. Its metadata names the
agent: ``lc_agent_name`` (set by ``create_agent(name=...)``; the innermost named agent), else
the top-level LangGraph node the call runs under (``langgraph_checkpoint_ns`` starts with it:
a supervisor's ``researcher`` node, even when that node is a subgraph), else
``langgraph_node``. A kill raised by the hook inside a node reaches the caller of
``graph.invoke`` as ``AgentKilled`` itself (LangGraph re-raises a node's exception).

OpenInference's LangChain spans are never made current, so the hook cannot find the LLM span
of a call by the OpenTelemetry context: the adapter notes the chat model's run id while it
generates (``_generate_with_cache``) and asks OpenInference for that run's span.

Tool permissions (docs/security.md): ``install`` also wraps ``_run`` / ``_arun`` of
``StructuredTool`` (``@tool`` functions) and ``Tool``, so each is checked with the Guard's tool
policy before it runs. A denied tool does not run; its result (the ``ToolMessage`` the model
gets) says it was denied, and the agent goes on.
"""

from __future__ import annotations

import functools
import sys
from contextvars import ContextVar
from typing import Any

from agentledger.collectors import frameworks, naming

_STATE = {"installed": False}
_RUN: ContextVar[Any] = ContextVar("agentledger_langchain_llm_run", default=None)
_PATCHED: list[tuple[type, str, Any]] = []


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


def llm_span() -> Any:
    """OpenInference's span of the chat model run generating now (None without it)."""
    run_id = _RUN.get()
    module = sys.modules.get("openinference.instrumentation.langchain")
    if run_id is None or module is None:
        return None
    return module.LangChainInstrumentor().get_span(run_id)


def _wrap(original: Any, is_async: bool) -> Any:
    if is_async:

        @functools.wraps(original)
        async def agenerate(
            self: Any, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> Any:
            token = _RUN.set(getattr(run_manager, "run_id", None))
            try:
                return await original(self, messages, stop, run_manager, **kw)
            finally:
                _RUN.reset(token)

        return agenerate

    @functools.wraps(original)
    def generate(self: Any, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        token = _RUN.set(getattr(run_manager, "run_id", None))
        try:
            return original(self, messages, stop, run_manager, **kw)
        finally:
            _RUN.reset(token)

    return generate


DENIED_PREFIX = "agentledger denied this tool call: "
_SKIP = frozenset({"config", "run_manager", "callbacks"})


def _denied(tool: Any, exc: Exception) -> Any:
    text = DENIED_PREFIX + str(exc)
    return (text, None) if getattr(tool, "response_format", None) == "content_and_artifact" else text


def _wrap_tool(original: Any, is_async: bool) -> Any:
    from agentledger.collectors.exceptions import ToolDenied
    from agentledger.collectors.guard import get_guard

    if is_async:

        @functools.wraps(original)
        async def arun(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                await get_guard().atool(
                    self.name, {k: v for k, v in kwargs.items() if k not in _SKIP} or list(args)
                )
            except ToolDenied as exc:
                return _denied(self, exc)
            return await original(self, *args, **kwargs)

        return arun

    @functools.wraps(original)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            get_guard().tool(self.name, {k: v for k, v in kwargs.items() if k not in _SKIP} or list(args))
        except ToolDenied as exc:
            return _denied(self, exc)
        return original(self, *args, **kwargs)

    return run


def install() -> bool:
    import langchain_core.runnables.config  # noqa: F401 - fails here, not per call, if absent
    from langchain_core.language_models.chat_models import BaseChatModel

    if not _PATCHED:
        for name, is_async in (("_generate_with_cache", False), ("_agenerate_with_cache", True)):
            original = BaseChatModel.__dict__[name]
            setattr(BaseChatModel, name, _wrap(original, is_async))
            _PATCHED.append((BaseChatModel, name, original))
        from langchain_core.tools import StructuredTool, Tool

        for cls in (StructuredTool, Tool):
            for name, is_async in (("_run", False), ("_arun", True)):
                original = cls.__dict__[name]
                setattr(cls, name, _wrap_tool(original, is_async))
                _PATCHED.append((cls, name, original))
    naming.add_agent_source(current_agent)
    frameworks.add_llm_span_source(llm_span)
    _STATE["installed"] = True
    return True


def uninstall() -> None:
    naming.remove_agent_source(current_agent)
    frameworks.remove_llm_span_source(llm_span)
    while _PATCHED:
        cls, name, original = _PATCHED.pop()
        setattr(cls, name, original)
    _STATE["installed"] = False
