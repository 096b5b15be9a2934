"""Who is calling: the one place the provider hook resolves tenant, agent, version, workflow
and trace for an LLM call, with the same rules for enforcement and for telemetry.

Order: an explicit ``al.span`` (or an agent given to ``configure``) first; else the agent a
framework adapter reports as running now (``add_agent_source``: LangGraph's node, Pydantic
AI's agent, smolagents' agent, CrewAI's role, Agent Framework's agent name, Haystack's
component; see ``agentledger.collectors.frameworks``); else the innermost
agent span of the active OpenTelemetry context (method suffixes such as ``.run`` stripped);
else the OpenTelemetry resource's ``service.name``; else the configured default.

What an OTel *agent span* is and where its name lives are the OTLP mapping's rules
(``agentledger.genai``): they are reused here, not copied. OpenTelemetry is optional and
imported lazily; without it the OTel steps are skipped.

``response_event_id`` derives a usage event's id from the provider's response id, so the
hook's record and the same call arriving over OTLP (``gen_ai.response.id``) dedupe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from agentledger.events import SpanKind
from agentledger.genai import (
    _VERSION,
    HOOKED_CALL,
    OtelSpan,
    _agent_of_agent_span,
    _clean_name,
    _first,
    _kind,
    response_event_id,
    span_usage_event_id,
    unique_response_id,
)
from agentledger.settings import Settings

__all__ = [
    "Caller",
    "add_agent_source",
    "agent_of_span",
    "end_recording_call",
    "from_request",
    "recording_call",
    "remove_agent_source",
    "resolve",
    "response_event_id",
    "track_open_spans",
    "usage_event_id",
]

from . import _ids
from .context import _CURRENT

if TYPE_CHECKING:
    from .emitter import Emitter

_DEFAULT_AGENT = Settings.model_fields["agent"].default


def agent_of_span(name: str, attributes: Mapping[str, Any]) -> str | None:
    """The agent an OTel span names, if it is an agent span (``genai`` rules + suffix strip)."""
    if _kind(attributes) is not SpanKind.AGENT:
        return None
    agent = _agent_of_agent_span(OtelSpan("", "", None, name, 0, 0, attributes))
    return agent  # genai strips the method suffix already


class Caller:
    """Who an LLM call is made for, right now."""

    __slots__ = (
        "agent", "agent_version", "attempts", "conversation", "downgraded_from", "in_llm_span", "parent_span_id",
        "span_id", "tenant", "timeout_s", "trace_id", "user", "waited_s", "workflow",
    )  # fmt: skip

    def __init__(
        self,
        tenant: str,
        agent: str,
        agent_version: str | None,
        workflow: str | None,
        trace_id: str | None,
        span_id: str | None,
        parent_span_id: str | None,
        user: str | None = None,
        conversation: str | None = None,
    ) -> None:
        self.tenant = tenant
        self.agent = agent
        self.agent_version = agent_version
        self.workflow = workflow
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.user = user
        self.conversation = conversation
        self.downgraded_from: str | None = None  # the model asked for, when a downgrade rewrote it
        self.in_llm_span = False  # the call runs inside an OpenTelemetry LLM span (span_id is its id)
        self.attempts = 0  # requests the SDK sent for the call (its retries included)
        self.waited_s = 0.0  # time the call's attempts waited on a shared backoff pause
        self.timeout_s: float | None = None  # the per-call timeout the hook gave the SDK

    def __repr__(self) -> str:
        return f"Caller(tenant={self.tenant!r}, agent={self.agent!r}, version={self.agent_version!r})"


_AGENT_SOURCES: list[Callable[[], str | None]] = []


def add_agent_source(source: Callable[[], str | None]) -> None:
    """Register a framework adapter's "which of my agents is running now" (None: not inside
    one). Consulted after an explicit ``al.span``/``configure`` agent, before OpenTelemetry."""
    if source not in _AGENT_SOURCES:
        _AGENT_SOURCES.append(source)


def remove_agent_source(source: Callable[[], str | None]) -> None:
    if source in _AGENT_SOURCES:
        _AGENT_SOURCES.remove(source)


def _framework_agent() -> str | None:
    for source in _AGENT_SOURCES:
        try:
            name = source()
        except Exception:  # noqa: BLE001 - an adapter must never break the agent's call
            continue
        if name:
            return _clean_name(name)
    return None


def resolve(emitter: Emitter) -> Caller:
    """The caller of an LLM call made now, in this context (thread or task)."""
    cur = _CURRENT.get()
    if cur is not None and not cur.remote:  # inside an al.span: explicit
        return Caller(
            emitter.tenant, cur.agent or emitter.agent, cur.agent_version, cur.workflow,
            cur.trace_id, cur.span_id, cur.parent_span_id, cur.user, cur.conversation,
        )  # fmt: skip
    unnamed = emitter.agent == _DEFAULT_AGENT  # configure named no agent
    framework = _framework_agent() if unnamed and _AGENT_SOURCES else None
    user, conversation = emitter.user, emitter.conversation
    otel = _otel_caller() if _OTEL.available else None
    if otel is not None:
        otel_agent, otel_version, trace_id, span_id, service, otel_user, otel_conversation, in_llm = otel
        agent, version = emitter.agent, emitter.agent_version
        if unnamed and (framework or otel_agent or service):
            agent, version = framework or otel_agent or service or agent, otel_version or version
        caller = Caller(
            emitter.tenant, agent, version, emitter.workflow, trace_id, span_id, None,
            user or otel_user, conversation or otel_conversation,
        )  # fmt: skip
        caller.in_llm_span = in_llm
        return caller
    agent = framework or emitter.agent
    if cur is not None:  # a remote parent (extracted traceparent): the call joins its trace
        return Caller(
            emitter.tenant, agent, emitter.agent_version, emitter.workflow, cur.trace_id,
            _ids.span_id(), cur.span_id, user, conversation,
        )  # fmt: skip
    return Caller(
        emitter.tenant, agent, emitter.agent_version, emitter.workflow, None, None, None, user, conversation
    )  # fmt: skip


def usage_event_id(response_id: str | None, caller: Caller) -> str:
    """The hook's usage event id: from a unique response id (the OTLP copy derives the same);
    else, inside an OpenTelemetry LLM span, that span's usage id (ditto); else a fresh one.
    docs/adr/0009-reused-response-ids.md says why."""
    if response_id and unique_response_id(response_id):
        return response_event_id(response_id)
    if caller.in_llm_span and caller.trace_id is not None and caller.span_id is not None:
        return span_usage_event_id(caller.trace_id, caller.span_id)
    return _ids.event_id()


# The request's own fields naming the end user / conversation, when no al.span or configure did.
def from_request(caller: Caller, kwargs: Mapping[str, Any]) -> None:
    """Fill the caller's user and conversation from the request: OpenAI's ``user`` (or
    ``safety_identifier``), Anthropic's ``metadata.user_id``, the Responses API's
    ``conversation`` (an id or ``{"id": ...}``). Values a Name cannot hold are skipped."""
    # (None tested first: an isinstance() against the Mapping ABC costs more than the rest)
    if caller.user is None:
        user = kwargs.get("user") or kwargs.get("safety_identifier")
        if user is None:
            metadata = kwargs.get("metadata")
            user = metadata.get("user_id") if metadata is not None and isinstance(metadata, Mapping) else None
        if user is not None:
            caller.user = _name_or_none(user)
    if caller.conversation is None:
        conversation = kwargs.get("conversation")
        if conversation is not None:
            if isinstance(conversation, Mapping):
                conversation = conversation.get("id")
            caller.conversation = _name_or_none(conversation)


def _name_or_none(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 128 or "/" in value or value[0].isspace():
        return None
    return value


# -- OpenTelemetry (optional) ----------------------------------------------------------


class _OtelState:
    """Lazily imported OpenTelemetry, and the open spans seen by ``OpenSpans``."""

    def __init__(self) -> None:
        self.checked = False
        self.available = True  # until an import says otherwise
        self.get_current_span: Any = None
        self.open: dict[int, Any] = {}  # span id -> open SDK span (for the parent walk)
        self.providers: list[Any] = []  # TracerProviders the open-span processor is on
        self.lock = threading.Lock()

    def load(self) -> bool:
        if not self.checked:
            try:
                from opentelemetry.trace import get_current_span
            except ImportError:
                self.available = False
            else:
                self.get_current_span = get_current_span
            self.checked = True
        return self.available


_OTEL = _OtelState()


_RECORDING: ContextVar[Caller | None] = ContextVar("agentledger_hook_recording", default=None)


def recording_call(caller: Caller) -> Token[Caller | None]:
    """Mark the provider call the hook makes now for ``caller`` and records (until
    ``end_recording_call``): spans an instrumentation starts inside it (OpenInference's span of
    the SDK's request carries no response id to dedupe on) get ``agentledger.hook.recorded``, and
    the OTLP mapping leaves their usage to the hook's record (needs the open-span processor on
    the TracerProvider); the SDK's attempts inside it are counted on ``caller``."""
    return _RECORDING.set(caller)


def end_recording_call(token: Token[Caller | None]) -> None:
    _RECORDING.reset(token)


current_call = _RECORDING.get  # the Caller of the hooked call being sent now, or None


def track_open_spans(provider: Any = None) -> bool:
    """Register a span processor on ``provider`` (default: the global TracerProvider) that
    remembers open spans, so the innermost *agent* span above the current one can be found.
    True when registered (an SDK TracerProvider); once per provider."""
    if not _OTEL.load():
        return False
    if provider is None:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
    add = getattr(provider, "add_span_processor", None)
    if add is None:  # the API's proxy: no SDK configured (yet)
        return False
    with _OTEL.lock:
        if any(p is provider for p in _OTEL.providers):
            return True
        add(_open_spans_processor(_OTEL.open))
        _OTEL.providers.append(provider)
        return True


def _open_spans_processor(open_spans: dict[int, Any]) -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class OpenSpans(SpanProcessor):
        """Keeps open spans by id (two dict operations per span; nothing else)."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            ctx = span.get_span_context()
            if ctx is not None:
                open_spans[ctx.span_id] = span
            if (
                _RECORDING.get() is not None
            ):  # started inside a call the hook records: its usage is the hook's
                span.set_attribute(HOOKED_CALL, True)

        def on_end(self, span: Any) -> None:
            ctx = span.get_span_context()
            if ctx is not None:
                open_spans.pop(ctx.span_id, None)

    return OpenSpans()


def _service_name(span: Any) -> str | None:
    resource = getattr(span, "resource", None)
    name = resource.attributes.get("service.name") if resource is not None else None
    if not name or str(name).startswith("unknown_service"):
        return None
    return _clean_name(name)


_USER_KEYS = ("user.id", "enduser.id")
_CONVERSATION_KEYS = ("gen_ai.conversation.id", "session.id")


def _otel_caller() -> (
    tuple[str | None, str | None, str, str, str | None, str | None, str | None, bool] | None
):
    """(agent, version, trace id, span id, service.name, user, conversation, whether the span is
    an LLM span) from the active OTel span and its open ancestors, or None."""
    if not _OTEL.load():
        return None
    span = _OTEL.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    agent = version = user = conversation = None
    in_llm = _kind(getattr(span, "attributes", None) or {}) is SpanKind.LLM
    node, hops = span, 0
    while node is not None and hops < 64:
        attrs = getattr(node, "attributes", None) or {}
        if attrs:
            if user is None:
                user = _name_or_none(_first(attrs, _USER_KEYS))
            if conversation is None:
                conversation = _name_or_none(_first(attrs, _CONVERSATION_KEYS))
        if agent is None:
            agent = agent_of_span(getattr(node, "name", ""), attrs)
            if agent is not None:
                version = _first(attrs, _VERSION)
        if agent is not None and user is not None and conversation is not None:
            break
        parent = getattr(node, "parent", None)
        node = _OTEL.open.get(parent.span_id) if parent is not None else None
        hops += 1
    service = _service_name(span)
    if version is None:
        resource = getattr(span, "resource", None)
        version = resource.attributes.get("service.version") if resource is not None else None
    return (
        agent,
        str(version)[:64] if version else None,
        format(ctx.trace_id, "032x"),
        format(ctx.span_id, "016x"),
        service,
        user,
        conversation,
        in_llm,
    )


def _framework_name(name: str) -> str | None:
    """An agent name a framework adapter passes, cleaned as the hook cleans one (None: empty)."""
    return _clean_name(name) or None
