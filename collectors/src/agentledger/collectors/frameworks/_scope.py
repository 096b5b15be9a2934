"""What the CrewAI, Agent Framework and Haystack adapters share: "this agent is running now"
as a context variable, set by wrapping the framework's own run methods, and the record of
what was wrapped so ``uninstall`` puts it back.

A context variable follows the call into ``asyncio`` tasks and into the threads the
frameworks start with a copied context; the provider hook reads it through
``naming.add_agent_source``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from agentledger.collectors import naming
from agentledger.collectors.exceptions import AgentKilled, Throttled
from agentledger.collectors.hook import FailoverUnavailable

# The hook's decisions: a framework that wraps them in its own error hides them from the agent
# author, who catches these.
STOPS: tuple[type[Exception], ...] = (AgentKilled, Throttled, FailoverUnavailable)


def stop_inside(exc: BaseException) -> Exception | None:
    """The hook's decision (``STOPS``) that ``exc`` is or wraps (its causes), if any."""
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            return None
        if isinstance(seen, STOPS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


_ABSENT = object()


class AgentScope:
    """One framework's current agent, and the methods wrapped to set it."""

    def __init__(self, framework: str) -> None:
        self.var: ContextVar[str | None] = ContextVar(f"agentledger_{framework}_agent", default=None)
        self._patched: list[tuple[Any, str, Any, Any]] = []  # (owner, attribute, original, wrapper)

    def current(self) -> str | None:
        return self.var.get()

    def wrap(
        self,
        owner: Any,
        attribute: str,
        name_of: Callable[[Any, tuple[Any, ...], dict[str, Any]], str | None],
    ) -> None:
        """Wrap ``owner.attribute`` (a sync or async method, or a method returning an
        awaitable) so the agent ``name_of(self, args, kwargs)`` names is current inside it."""
        original = owner.__dict__.get(attribute) if isinstance(owner, type) else getattr(owner, attribute)
        if original is None or getattr(original, "__agentledger_scope__", False):
            return
        var = self.var

        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def async_wrapper(self_: Any, *args: Any, **kwargs: Any) -> Any:
                token = var.set(_name(name_of, self_, args, kwargs) or var.get())
                try:
                    return await original(self_, *args, **kwargs)
                finally:
                    var.reset(token)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(original)
            def sync_wrapper(self_: Any, *args: Any, **kwargs: Any) -> Any:
                name = _name(name_of, self_, args, kwargs) or var.get()
                token = var.set(name)
                try:
                    result = original(self_, *args, **kwargs)
                finally:
                    var.reset(token)
                if inspect.iscoroutine(result):  # the work runs when awaited: keep the agent then
                    return _scoped(var, name, result)
                return result

            wrapper = sync_wrapper
        wrapper.__agentledger_scope__ = True
        setattr(owner, attribute, wrapper)
        self._patched.append((owner, attribute, original, wrapper))

    def patch(self, owner: Any, attribute: str, wrapper: Any) -> Any:
        """Set ``owner.attribute`` (a class's, or an object's own) to ``wrapper``, undone by
        ``uninstall``; returns what was there (for an object: the bound method)."""
        current = getattr(owner, attribute)
        own = (
            owner.__dict__.get(attribute, _ABSENT)
            if isinstance(owner, type)
            else vars(owner).get(attribute, _ABSENT)
        )
        setattr(owner, attribute, wrapper)
        self._patched.append((owner, attribute, own, wrapper))
        return own if own is not _ABSENT and isinstance(owner, type) else current

    def install(self) -> None:
        naming.add_agent_source(self.current)

    def uninstall(self) -> None:
        naming.remove_agent_source(self.current)
        for owner, attribute, original, wrapper in reversed(self._patched):
            if (owner.__dict__ if isinstance(owner, type) else vars(owner)).get(attribute) is not wrapper:
                continue  # wrapped again by someone else since: left as is
            if original is _ABSENT:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)
        self._patched.clear()

    @property
    def installed(self) -> bool:
        return bool(self._patched)


async def _scoped(var: ContextVar[str | None], name: str | None, coroutine: Any) -> Any:
    token = var.set(name)
    try:
        return await coroutine
    finally:
        var.reset(token)


def _name(
    name_of: Callable[[Any, tuple[Any, ...], dict[str, Any]], str | None],
    obj: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> str | None:
    try:
        name = name_of(obj, args, kwargs)
    except Exception:  # noqa: BLE001 - naming never breaks the agent's run
        return None
    return str(name) if name else None
