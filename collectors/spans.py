"""``span()``: a context manager and decorator (sync and async) that records a SpanEvent."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _ids
from .context import _CURRENT, SpanContext

if TYPE_CHECKING:
    from .emitter import Emitter

F = TypeVar("F", bound=Callable[..., Any])

KINDS = frozenset({"agent", "llm", "tool", "workflow"})
_time_ns = time.time_ns
_bits = _ids._rng.getrandbits  # bound once: the hot path skips two lookups and a call


def _who(user: str | None, conversation: str | None) -> dict[str, str]:
    """The end user and conversation as the OpenTelemetry attributes that name them."""
    out = {}
    if user:
        out["user.id"] = user
    if conversation:
        out["gen_ai.conversation.id"] = conversation
    return out


class SpanScope(SpanContext):
    """One span. Enter it (``with``/``async with``) or decorate a function with it.

    While entered it is the current ``SpanContext`` (ids valid inside the block).
    """

    __slots__ = (
        "_agent_arg", "_conversation_arg", "_emitter", "_start", "_token", "_user_arg", "_workflow_arg",
        "attributes", "kind", "model", "name", "provider", "status",
    )  # fmt: skip

    def __init__(
        self,
        emitter: Emitter,
        name: str,
        kind: str = "agent",
        agent: str | None = None,
        workflow: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        provider: str | None = None,
        model: str | None = None,
        user: str | None = None,
        conversation: str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        if not name or len(name) > 256:
            raise ValueError("span name must be 1-256 characters")
        if agent is not None:
            agent = emitter._check_name(agent)
        self._emitter = emitter
        self.name = name
        self.kind = kind
        self._agent_arg = agent
        self._workflow_arg = workflow
        self._user_arg = emitter._check_name(user, "user") if user else None
        self._conversation_arg = emitter._check_name(conversation, "conversation") if conversation else None
        self.attributes = emitter._check_attributes(attributes) if attributes else None
        self.provider = emitter._label(provider) if provider else provider
        self.model = emitter._label(model) if model else model
        self.status = "unset"
        self.remote = False

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        attrs = dict(self.attributes or {})
        attrs[key] = value
        self.attributes = self._emitter._check_attributes(attrs)

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> SpanScope:
        parent = _CURRENT.get()
        em = self._emitter
        agent = self._agent_arg
        self.span_id = "%016x" % (_bits(64) or 1)
        if parent is None or parent.remote:  # a root, or the first local span under a remote parent
            if parent is None:
                self.trace_id = _ids.trace_id()
                self.parent_span_id = None
            else:
                self.trace_id = parent.trace_id
                self.parent_span_id = parent.span_id
            self.agent = agent or em.agent
            self.workflow = self._workflow_arg or em.workflow
            self.user = self._user_arg or em.user
            self.conversation = self._conversation_arg or em.conversation
            self.agent_version = em.agent_version if agent is None or agent == em.agent else None
        else:
            self.trace_id = parent.trace_id
            self.parent_span_id = parent.span_id
            self.agent = agent or parent.agent or em.agent
            self.workflow = self._workflow_arg or parent.workflow
            self.user = self._user_arg or parent.user
            self.conversation = self._conversation_arg or parent.conversation
            if agent is None:
                self.agent_version = parent.agent_version
            else:
                self.agent_version = em.agent_version if agent == em.agent else None
        self._token: Token[SpanContext | None] = _CURRENT.set(self)
        self._start = _time_ns()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end = _time_ns()
        try:
            _CURRENT.reset(self._token)
        except ValueError:  # exited in another context (e.g. a generator): nothing to restore
            pass
        event = {
            "event_id": _ids.event_id(), "type": "span", "ts": end, "tenant": self._emitter.tenant,
            "agent": self.agent, "agent_version": self.agent_version, "workflow": self.workflow,
            "trace_id": self.trace_id, "span_id": self.span_id, "parent_span_id": self.parent_span_id,
            "name": self.name, "kind": self.kind, "start": self._start, "end": end,
            "status": self.status if exc_type is None else "error",
        }  # fmt: skip
        if exc_type is not None:
            event["error_type"] = exc_type.__name__
        if self.attributes:
            event["attributes"] = self.attributes
        if self.user or self.conversation:
            event["attributes"] = {**(self.attributes or {}), **_who(self.user, self.conversation)}
        if self.provider:
            event["provider"] = self.provider
        if self.model:
            event["model"] = self.model
        self._emitter._worker.put(event)

    async def __aenter__(self) -> SpanScope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator ---------------------------------------------------------------------

    def _fresh(self) -> SpanScope:
        return SpanScope(
            self._emitter, self.name, self.kind, self._agent_arg, self._workflow_arg, self.attributes,
            self.provider, self.model, self._user_arg, self._conversation_arg,
        )  # fmt: skip

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return cast(F, wrapper)
