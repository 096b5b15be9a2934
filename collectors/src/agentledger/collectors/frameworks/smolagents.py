"""smolagents: which agent an LLM call belongs to, and a kill that stops it cleanly.

Each agent's steps run in ``MultiStepAgent._run_stream`` (``run()``, streamed or not, and a
managed agent called by its manager go through it). The adapter wraps it: while one of its
steps runs, that agent (its ``name``) is the current one, so a managed agent's calls are its
own and its manager's are the manager's. smolagents wraps a model error in
``AgentGenerationError``; when the error is the hook's ``AgentKilled`` the adapter raises
the ``AgentKilled`` itself, so ``agent.run(...)`` stops with it. A managed agent that is
killed fails its manager's tool call (the manager sees the error and goes on).

Tool permissions (docs/security.md): ``Tool.__call__`` (a ``@tool`` function, a ``Tool``
subclass, in a ToolCallingAgent or a CodeAgent's code) is checked with the Guard's tool policy
first. A denied tool does not run; its result is a text saying agentledger denied it, and why,
so the model sees it and the run goes on. ``final_answer`` is not checked (a run must be able
to end).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Iterator
from contextvars import ContextVar
from typing import Any

from agentledger.collectors import naming
from agentledger.collectors.exceptions import AgentKilled

_AGENT: ContextVar[str | None] = ContextVar("agentledger_smolagents_agent", default=None)
_PATCHED: list[tuple[type, str, Any]] = []


def current_agent() -> str | None:
    return _AGENT.get()


def _killed(exc: BaseException) -> AgentKilled | None:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None or isinstance(seen, AgentKilled):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _wrap(original: Callable[..., Generator[Any]]) -> Callable[..., Iterator[Any]]:
    @functools.wraps(original)
    def _run_stream(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        name = getattr(self, "name", None)
        steps = original(self, *args, **kwargs)
        try:
            while True:
                token = _AGENT.set(str(name) if name else None)
                try:
                    item = next(steps)
                except StopIteration:
                    return
                except Exception as exc:
                    killed = _killed(exc)
                    if killed is not None and killed is not exc:
                        raise killed from exc
                    raise
                finally:
                    _AGENT.reset(token)
                yield item
        finally:
            steps.close()

    _run_stream.__agentledger_hook__ = True  # type: ignore[attr-defined]
    return _run_stream


DENIED_PREFIX = "agentledger denied this tool call: "


def _wrap_tool(original: Callable[..., Any]) -> Callable[..., Any]:
    from agentledger.collectors.exceptions import ToolDenied
    from agentledger.collectors.guard import get_guard

    @functools.wraps(original)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = str(getattr(self, "name", "") or type(self).__name__)
        if name != "final_answer":
            try:
                get_guard().tool(
                    name, {k: v for k, v in kwargs.items() if k != "sanitize_inputs_outputs"} or list(args)
                )
            except ToolDenied as exc:
                return DENIED_PREFIX + str(exc)
        # bound through the descriptor: when another instrumentation (OpenInference) wrapped
        # Tool.__call__ first, its wrapper must see the tool as its instance, not as an argument
        return original.__get__(self, type(self))(*args, **kwargs)

    call.__agentledger_hook__ = True  # type: ignore[attr-defined]
    return call


def install() -> bool:
    from smolagents.agents import MultiStepAgent
    from smolagents.tools import Tool

    if not _PATCHED:
        original = MultiStepAgent.__dict__["_run_stream"]
        MultiStepAgent._run_stream = _wrap(original)  # type: ignore[method-assign]
        _PATCHED.append((MultiStepAgent, "_run_stream", original))
        original_call = Tool.__dict__["__call__"]
        Tool.__call__ = _wrap_tool(original_call)  # type: ignore[method-assign]
        _PATCHED.append((Tool, "__call__", original_call))
    naming.add_agent_source(current_agent)
    return True


def uninstall() -> None:
    naming.remove_agent_source(current_agent)
    while _PATCHED:
        cls, name, original = _PATCHED.pop()
        setattr(cls, name, original)
