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
    SCOPE.install()
    return True


def _reraise_stop(exc: Exception) -> None:
    stop = stop_inside(exc)
    if stop is not None and stop is not exc:
        raise stop from None  # its own traceback still shows where the hook refused the call


def uninstall() -> None:
    SCOPE.uninstall()
