"""Microsoft Agent Framework: which agent an LLM call belongs to.

The agent is the ``Agent``'s ``name`` (what the framework's own telemetry puts in
``gen_ai.agent.name``). The adapter wraps ``RawAgent.run`` (``Agent`` and every agent built on
it, in workflows too) so the name is the current agent while the run works: for
``run(...)`` while it is awaited; for ``run(..., stream=True)`` each time the returned
``ResponseStream`` is advanced (the provider is called while the stream is consumed, after
``run`` has returned).

The framework's OpenAI clients wrap any error of the SDK call in their ``ChatClientException``;
the adapter unwraps the hook's decisions, so a kill reaches the caller of ``agent.run`` (or of
the stream's iteration, or of ``workflow.run``) as ``AgentKilled`` itself (likewise
``Throttled`` and ``FailoverUnavailable``).

Tool permissions (docs/security.md): ``install`` also wraps ``FunctionTool.invoke``, the one
door every function tool goes through (with or without function middleware, after the
framework's own ``approval_mode``), so each call is checked with the Guard's tool policy
before the function runs. A denied tool does not run; its result (the ``function_result`` the
model gets) says agentledger denied it and why, and the run goes on. A declaration-only tool
is left to the framework (it never runs here).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from ._scope import AgentScope, stop_inside

SCOPE = AgentScope("agent_framework")
_TAG = "_agentledger_agent"


def _name(agent: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    name = getattr(agent, "name", None)
    return str(name) if name else None


def install() -> bool:
    from agent_framework import _agents, _types

    var = SCOPE.var
    original_run = _agents.RawAgent.__dict__["run"]

    @functools.wraps(original_run)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = _name(self, args, kwargs) or var.get()
        token = var.set(name)
        try:
            result = original_run(self, *args, **kwargs)
        finally:
            var.reset(token)
        if isinstance(result, _types.ResponseStream):
            try:
                setattr(result, _TAG, name)
            except AttributeError:  # a stream class that takes no attributes: calls stay unnamed
                pass
            return result
        return _scoped(name, result) if inspect.isawaitable(result) else result

    async def _scoped(name: str | None, awaitable: Any) -> Any:
        token = var.set(name)
        try:
            return await awaitable
        except Exception as exc:
            _reraise_stop(exc)
            raise
        finally:
            var.reset(token)

    original_next = _types.ResponseStream.__dict__["__anext__"]

    @functools.wraps(original_next)
    async def anext(self: Any) -> Any:
        name = getattr(self, _TAG, None)
        if name is None:
            return await original_next(self)
        token = var.set(name)
        try:
            return await original_next(self)
        except Exception as exc:
            _reraise_stop(exc)
            raise
        finally:
            var.reset(token)

    SCOPE.patch(_agents.RawAgent, "run", run)
    SCOPE.patch(_types.ResponseStream, "__anext__", anext)
    _guard_tools()
    SCOPE.install()
    return True


DENIED_PREFIX = "agentledger denied this tool call: "


def _arguments(arguments: Any, context: Any, kwargs: dict[str, Any]) -> Any:
    """The call's arguments as a plain mapping (for the approval request's hash and the event)."""
    if arguments is None and context is not None:
        arguments = getattr(context, "arguments", None)
    if arguments is None:
        arguments = kwargs
    dump = getattr(arguments, "model_dump", None)
    return dump() if callable(dump) else dict(arguments) if isinstance(arguments, dict) else arguments


def _guard_tools() -> None:
    from agent_framework import _tools
    from agent_framework._types import Content

    original = _tools.FunctionTool.__dict__["invoke"]
    if getattr(original, "__agentledger_hook__", False):
        return

    @functools.wraps(original)
    async def invoke(self: Any, *args: Any, **kwargs: Any) -> Any:
        from agentledger.collectors.exceptions import ToolDenied
        from agentledger.collectors.guard import get_guard

        if not getattr(self, "declaration_only", False):
            called = {k: v for k, v in kwargs.items() if k not in _INVOKE_OPTIONS}
            try:
                await get_guard().atool(
                    str(self.name), _arguments(kwargs.get("arguments"), kwargs.get("context"), called)
                )
            except ToolDenied as exc:
                text = DENIED_PREFIX + str(exc)
                raw = kwargs.get("skip_parsing") or self.result_parser is _tools.SKIP_PARSING
                return text if raw else [Content.from_text(text)]
        return await original(self, *args, **kwargs)

    invoke.__agentledger_hook__ = True  # type: ignore[attr-defined]
    SCOPE.patch(_tools.FunctionTool, "invoke", invoke)


_INVOKE_OPTIONS = frozenset({"arguments", "context", "tool_call_id", "skip_parsing"})


def _reraise_stop(exc: Exception) -> None:
    stop = stop_inside(exc)
    if stop is not None and stop is not exc:
        raise stop from None  # its own traceback still shows where the hook refused the call


def uninstall() -> None:
    SCOPE.uninstall()
