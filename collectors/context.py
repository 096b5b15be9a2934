"""The current span, carried by ``contextvars`` (asyncio tasks inherit it; threads get it via
``contextvars.copy_context().run`` or ``extract``/``attach`` of a ``traceparent``)."""

from __future__ import annotations

from contextvars import ContextVar, Token


class SpanContext:
    """What nested events inherit: ids, and the agent/workflow the work is credited to.

    A plain slots class: a running ``SpanScope`` *is* its own context (no extra object per
    span on the hot path).
    """

    __slots__ = (
        "agent", "agent_version", "conversation", "parent_span_id", "remote", "span_id", "trace_id", "user",
        "workflow",
    )  # fmt: skip

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None = None,
        agent: str | None = None,
        workflow: str | None = None,
        agent_version: str | None = None,
        remote: bool = False,  # True when extracted from a traceparent (no local span)
        user: str | None = None,
        conversation: str | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.agent = agent
        self.workflow = workflow
        self.agent_version = agent_version
        self.remote = remote
        self.user = user  # the end user and conversation the work is for (Guard scopes)
        self.conversation = conversation

    def __repr__(self) -> str:
        return f"SpanContext(trace_id={self.trace_id!r}, span_id={self.span_id!r}, remote={self.remote})"


_CURRENT: ContextVar[SpanContext | None] = ContextVar("agentledger_span", default=None)


def current() -> SpanContext | None:
    """The innermost active span (or an attached remote parent), if any."""
    return _CURRENT.get()


def attach(ctx: SpanContext | None) -> Token[SpanContext | None]:
    """Make ``ctx`` the current parent (e.g. one extracted from a message); ``detach`` undoes it."""
    return _CURRENT.set(ctx)


def detach(token: Token[SpanContext | None]) -> None:
    _CURRENT.reset(token)
