"""OpenTelemetry GenAI spans -> contract events: the ONE mapping shared by the in-process
bridge (``agentledger.collectors.otel``) and the API's OTLP endpoint (``agentledger.api``).

Input is a neutral ``OtelSpan`` (both sides convert to it: the SDK's ReadableSpan in-process,
OTLP protobuf/JSON in the API). docs/integrations.md lists the attribute variants and the
traps (usage counted on LLM spans only, duplicate spans, cached tokens inside or outside
the input count, which agent, never storing message content).

Agent version: no framework sets one, so it is read from the span's (or the enclosing agent
span's) ``agentledger.agent.version`` / ``gen_ai.agent.version``, else the resource's
``service.version``, else ``MappingDefaults.agent_version``. Workflow: ``agentledger.workflow``
on the span or resource. Tenant: never from a span (``MappingDefaults.tenant``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from agentledger.events import (
    QualityEvent,
    SpanEvent,
    SpanKind,
    SpanStatus,
    ToolCallEvent,
    UsageEvent,
    clean_name,
)
from agentledger.wire import AnyEvent, describe

log = logging.getLogger("agentledger.genai")


@dataclass(slots=True, frozen=True)
class OtelSpanEvent:
    """A span event (``span.add_event``): its name, time and attributes."""

    name: str
    time_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class OtelSpan:
    """A finished span, independent of where it came from."""

    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    status_error: bool = False
    error_type: str | None = None
    resource: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[OtelSpanEvent] = ()


@dataclass(slots=True)
class MappingDefaults:
    """What to use when the spans do not say (tenant is never on a span)."""

    tenant: str = "default"
    agent: str = "unknown"
    agent_version: str | None = None
    workflow: str | None = None


def _first(attrs: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def _count(attrs: Mapping[str, Any], names: Sequence[str]) -> int | None:
    """The first of ``names`` present, as a token count; None when absent or not a number.

    Raises ``ValueError`` for a boolean: ``int(True)`` is 1, and one made-up token is a wrong
    count that looks right, so the span is refused with the reason instead."""
    for name in names:
        value = attrs.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            raise ValueError(f"{name} is a boolean ({value}), not a token count")
        try:
            count = int(value)
        except (TypeError, ValueError):
            return None
        return count if count >= 0 else None
    return None


def _has_count(attrs: Mapping[str, Any], names: Sequence[str]) -> bool:
    """Whether a span carries one of ``names`` (a boolean counts: the span is refused later)."""
    try:
        return _count(attrs, names) is not None
    except ValueError:
        return True


_MODEL_RESPONSE = ("gen_ai.response.model", "llm.response.model_name")
_MODEL_REQUEST = ("gen_ai.request.model", "llm.request.model_name", "llm.model_name")
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
# What the provider (or a gateway such as OpenRouter or LiteLLM) says the call cost, kept beside
# our own price: a total, else the sum of its parts.
_COST_TOTAL = ("gen_ai.usage.cost", "gen_ai.usage.cost.total", "llm.cost.total")
_COST_PARTS = (
    ("gen_ai.usage.cost.input", "gen_ai.usage.cost.output"),
    ("llm.cost.prompt", "llm.cost.completion"),
)
EVALUATION_EVENT = "gen_ai.evaluation.result"
_INPUT = ("gen_ai.usage.input_tokens", "llm.token_count.prompt", "gen_ai.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "llm.token_count.completion", "gen_ai.usage.completion_tokens")
_CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens", "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.details.cache_read_tokens", "gen_ai.usage.cache_read_input_tokens",
)  # fmt: skip
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens",
    "llm.token_count.prompt_details.cache_write", "gen_ai.usage.cache_creation_input_tokens",
)  # fmt: skip
_CACHE_WRITE_TTL = (
    "anthropic.usage.cache_creation.ephemeral_5m_input_tokens",
    "anthropic.usage.cache_creation.ephemeral_1h_input_tokens",
)
_REASONING = (
    "gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.details.reasoning_tokens", "llm.token_count.completion_details.reasoning",
)  # fmt: skip
_TOOL = ("gen_ai.tool.name", "tool.name", "haystack.tool.name")
_TOOL_ARGS = ("gen_ai.tool.call.arguments", "tool.parameters", "input.value")
# Where frameworks put the agent's name, most trustworthy first: OpenLLMetry's LangChain
# names the sub-agent on the chat span; CrewAI's gen_ai.agent.name is a hash, its role is not.
_AGENT = (
    "traceloop.association.properties.lc_agent_name", "crewai.agent.role", "gen_ai.agent.name",
    "agentledger.agent", "gen_ai.agent.id",
)  # fmt: skip
_VERSION = ("agentledger.agent.version", "gen_ai.agent.version")
_LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings", "completion"})
_OPENINFERENCE_KINDS = {
    "LLM": SpanKind.LLM, "EMBEDDING": SpanKind.LLM, "AGENT": SpanKind.AGENT, "TOOL": SpanKind.TOOL,
    "CHAIN": SpanKind.WORKFLOW, "RETRIEVER": SpanKind.WORKFLOW, "RERANKER": SpanKind.WORKFLOW,
    "GUARDRAIL": SpanKind.WORKFLOW, "EVALUATOR": SpanKind.WORKFLOW,
}  # fmt: skip
_TRACELOOP_KINDS = {
    "workflow": SpanKind.WORKFLOW, "task": SpanKind.WORKFLOW, "agent": SpanKind.AGENT, "tool": SpanKind.TOOL,
}  # fmt: skip
_GENAI_PREFIXES = ("gen_ai.", "llm.", "openinference.", "traceloop.", "crewai.", "haystack.", "agentledger.")
# Small, content-free attributes worth keeping on the events; everything else (prompts,
# completions, tool arguments) is dropped here, at the edge.
_KEEP = (
    "gen_ai.operation.name",
    "gen_ai.response.id",
    "gen_ai.response.finish_reasons",
    "gen_ai.request.model",
)


def _kind(attrs: Mapping[str, Any]) -> SpanKind | None:
    """The contract kind of a span, or None for spans that are not GenAI work."""
    operation = attrs.get("gen_ai.operation.name")
    if operation in _LLM_OPERATIONS:
        return SpanKind.LLM
    if operation in ("invoke_agent", "create_agent"):
        return SpanKind.AGENT
    if operation == "execute_tool":
        return SpanKind.TOOL
    oi = attrs.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in _OPENINFERENCE_KINDS:
        return _OPENINFERENCE_KINDS[oi.upper()]
    tl = attrs.get("traceloop.span.kind")
    if isinstance(tl, str) and tl in _TRACELOOP_KINDS:
        return _TRACELOOP_KINDS[tl]
    if attrs.get("llm.request.type") is not None or _has_count(attrs, _INPUT):
        return SpanKind.LLM
    if _first(attrs, _TOOL) is not None:
        return SpanKind.TOOL
    if _first(attrs, _AGENT) is not None:
        return SpanKind.AGENT
    if any(key.startswith(_GENAI_PREFIXES) for key in attrs):
        return SpanKind.WORKFLOW
    return None


def _clean_name(value: Any, limit: int = 128) -> str | None:
    """A value usable as an agent/workflow name (the contract forbids '/' and leading spaces)."""
    if value is None:
        return None
    text = str(value).replace("/", "_").strip()[:limit]
    return text or None


# Framework span names that are a method of the agent, not its name ("Researcher.run").
METHOD_SUFFIXES = (
    "._execute_core", ".execute_task", ".run_stream", ".run_sync", ".arun", "._arun", "._run",
    ".run", ".ainvoke", ".invoke", ".astream", ".stream", ".__call__", ".kickoff",
)  # fmt: skip


def strip_method_suffix(name: str) -> str:
    """``weather_agent.run`` -> ``weather_agent``: the agent, not the method it ran."""
    for suffix in METHOD_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


HOOKED_CALL = "agentledger.hook.recorded"
"""Set by the provider-SDK hook on the spans of a call it records itself: the framework's LLM
span current at the call, and any span an instrumentation starts inside the call (the SDK
request's own, e.g. OpenInference's). Their usage is not counted again (their span events
stay). OpenInference spans carry no response id to deduplicate by, and may miss counts the
hook has (smolagents: cached tokens)."""


def response_event_id(response_id: str) -> str:
    """The usage event id of the provider response ``response_id`` (``gen_ai.response.id`` on
    OTel spans, the response's ``id`` in the provider-SDK hook): every path's copy of one call
    gets the same id, so the (tenant, event_id) dedupe counts it once. Only for ids that
    ``unique_response_id`` accepts (docs/adr/0009-reused-response-ids.md)."""
    return "resp:" + hashlib.blake2b(response_id.encode(), digest_size=16).hexdigest()


_ID_PREFIX = re.compile(r"^[A-Za-z]+[-_]")


def unique_response_id(response_id: str) -> bool:
    """Whether a response id can stand for one call on its own: at least 16 characters after
    its kind prefix (``chatcmpl-``, ``msg_``, ``resp_``), not all digits. OpenAI, Anthropic,
    vLLM, llama.cpp and the hosted OpenAI-compatible APIs qualify; Ollama's ``chatcmpl-<0..998>``
    does not, and two calls sharing such an id must not be counted as one."""
    body = _ID_PREFIX.sub("", response_id, count=1)
    return len(body) >= 16 and not body.isdigit()


def span_usage_event_id(trace_id: str, span_id: str) -> str:
    """The usage event id of an LLM span whose response id is not unique (or absent): the
    span's own identity, which the hook sees too when the call runs inside that span."""
    return f"otel:{trace_id}:{span_id}:u"


def _agent_of_agent_span(span: OtelSpan) -> str | None:
    name = _clean_name(_first(span.attributes, _AGENT))
    if name:
        return _clean_name(strip_method_suffix(name))
    label = span.name
    for prefix in ("invoke_agent ", "create_agent "):
        if label.startswith(prefix):
            label = label[len(prefix) :]
    # OpenInference AGENT spans are named after the agent, sometimes with the method run
    return _clean_name(strip_method_suffix(label))


@dataclass(slots=True)
class _Node:
    span: OtelSpan
    kind: SpanKind | None
    parent: _Node | None = None
    llm_descendant_with_usage: bool = False


def _host(value: Any) -> str:
    text = str(value)
    if "://" in text:  # some instrumentations put the whole base URL in server.address
        from urllib.parse import urlsplit

        return urlsplit(text).hostname or text
    return text


def _attributes(span: OtelSpan) -> dict[str, str | int | float | bool]:
    out: dict[str, str | int | float | bool] = {}
    for key in _KEEP:
        value = span.attributes.get(key)
        if value is None:
            continue
        if isinstance(value, list | tuple):  # finish_reasons: a list, or a JSON string (kept as is)
            value = ",".join(str(v) for v in value)
        out[key] = value if isinstance(value, bool | int | float) else str(value)[:256]
    server = span.attributes.get("server.address")
    if server is not None:
        out["server.address"] = _host(server)[:256]
    return out


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _usage_counts(attrs: Mapping[str, Any]) -> tuple[int, int, int, int, int] | None:
    inp, out = _count(attrs, _INPUT), _count(attrs, _OUTPUT)
    if inp is None and out is None:
        return None
    inp, out = inp or 0, out or 0
    read = _count(attrs, _CACHE_READ) or 0
    write = _count(attrs, _CACHE_WRITE)
    if write is None:
        write = sum(_count(attrs, (name,)) or 0 for name in _CACHE_WRITE_TTL)
    reasoning = _count(attrs, _REASONING) or 0
    if read + write > inp:
        # The input count cannot have included the cached tokens (Agent Framework with
        # Anthropic reports the uncached part only): the contract's input includes them.
        inp += read + write
    if reasoning > out:
        out += reasoning
    return inp, out, read, write, reasoning


def spans_to_events(
    spans: Sequence[OtelSpan],
    defaults: MappingDefaults,
    rejected: list[tuple[OtelSpan, str]] | None = None,
) -> list[AnyEvent]:
    """Map a batch of spans (ideally a whole trace or export batch) to contract events.

    Every GenAI span becomes a ``SpanEvent``; LLM spans with token counts add one
    ``UsageEvent`` (deduplicated by ``gen_ai.response.id`` and by LLM-inside-LLM nesting:
    the innermost span with counts wins); tool spans add a ``ToolCallEvent`` whose argument
    hash never carries the arguments. Spans that are not GenAI work are skipped. Event ids
    derive from trace and span ids, so exporting the same span twice dedupes downstream.
    A span the contract cannot hold (invalid ids, a boolean token count, a name with control
    or format characters...) is skipped, not raised: appended to ``rejected`` with the reason
    when it is given (the OTLP endpoint reports them in ``partial_success``, the OTel bridge
    counts them in the emitter's stats), else logged at WARNING."""
    nodes = {s.span_id: _Node(s, _kind(s.attributes)) for s in spans}
    for node in nodes.values():
        if node.span.parent_span_id:
            node.parent = nodes.get(node.span.parent_span_id)
    for node in nodes.values():
        attrs = node.span.attributes
        if node.kind is SpanKind.LLM and (_has_count(attrs, _INPUT) or _has_count(attrs, _OUTPUT)):
            up = node.parent
            while up is not None:
                if up.kind is SpanKind.LLM:
                    up.llm_descendant_with_usage = True
                up = up.parent
    seen_responses: set[str] = set()
    out: list[AnyEvent] = []
    for node in sorted(nodes.values(), key=lambda n: (n.span.end_ns, n.span.span_id)):
        if node.kind is None:
            continue
        try:
            out.extend(_events_of(node, defaults, seen_responses))
        except (ValidationError, ValueError) as exc:
            reason = describe(exc) if isinstance(exc, ValidationError) else str(exc)
            if rejected is not None:  # the caller reports them (OTLP partial_success, stats)
                rejected.append((node.span, reason))
                continue
            # %r: a name with a newline or a bidi override must not forge or reorder log lines
            log.warning("skipping span %s (%r): %s", node.span.span_id, node.span.name[:128], reason)
    return out


def _resolve_agent(node: _Node, defaults: MappingDefaults) -> tuple[str, str | None]:
    """(agent, version): the span's own agent attribute, else the nearest enclosing agent span."""
    attrs = node.span.attributes
    agent = (
        _clean_name(_first(attrs, _AGENT))
        if node.kind is not SpanKind.AGENT
        else _agent_of_agent_span(node.span)
    )
    version = _first(attrs, _VERSION)
    up = node.parent
    while up is not None and (agent is None or version is None):
        if up.kind is SpanKind.AGENT:
            agent = agent or _agent_of_agent_span(up.span)
            version = version or _first(up.span.attributes, _VERSION)
        up = up.parent
    version = version or node.span.resource.get("service.version") or defaults.agent_version
    return agent or defaults.agent, str(version)[:64] if version is not None else None


def _events_of(node: _Node, defaults: MappingDefaults, seen_responses: set[str]) -> list[AnyEvent]:
    span, kind = node.span, node.kind
    assert kind is not None
    attrs = span.attributes
    try:  # like every name in the contract: hidden characters are refused, not kept
        name = str(clean_name(span.name))
    except ValueError as exc:
        raise ValueError(f"span name {exc}") from None
    agent, version = _resolve_agent(node, defaults)
    workflow = _clean_name(attrs.get("agentledger.workflow") or span.resource.get("agentledger.workflow"))
    provider = _first(attrs, _PROVIDER)
    provider = str(provider).lower()[:64] if provider is not None else None
    model = _first(attrs, _MODEL_RESPONSE) or _first(attrs, _MODEL_REQUEST)
    model = str(model)[:128] if model is not None else None
    end = _dt(max(span.end_ns, span.start_ns))
    common: dict[str, Any] = {
        "ts": end, "tenant": defaults.tenant, "agent": agent, "agent_version": version,
        "workflow": workflow or defaults.workflow, "trace_id": span.trace_id, "span_id": span.span_id,
        "parent_span_id": span.parent_span_id or None, "attributes": _attributes(span),
    }  # fmt: skip
    base_id = f"otel:{span.trace_id}:{span.span_id}"
    events: list[AnyEvent] = [
        SpanEvent(
            event_id=base_id,
            name=name[:256] or kind.value,
            kind=kind,
            start=_dt(span.start_ns),
            end=end,
            status=SpanStatus.ERROR if span.status_error else SpanStatus.UNSET,
            error_type=span.error_type[:256] if span.error_type else None,
            provider=provider,
            model=model,
            **common,
        )
    ]
    if kind is SpanKind.LLM and not node.llm_descendant_with_usage and not attrs.get(HOOKED_CALL):
        counts = _usage_counts(attrs)
        response_id = attrs.get("gen_ai.response.id")
        unique = response_id is not None and unique_response_id(str(response_id))
        duplicate = unique and str(response_id) in seen_responses
        if counts is not None and not duplicate:
            if unique:
                seen_responses.add(str(response_id))
            inp, out, read, write, reasoning = counts
            events.append(
                UsageEvent(
                    event_id=response_event_id(str(response_id))
                    if unique
                    else span_usage_event_id(span.trace_id, span.span_id),
                    provider=provider or "unknown",
                    model=model or "unknown",
                    input_tokens=inp,
                    output_tokens=out,
                    cache_read_tokens=read,
                    cache_write_tokens=write,
                    reasoning_tokens=reasoning,
                    reported_cost_usd=_reported_cost(attrs),
                    **common,
                )
            )
    elif kind is SpanKind.TOOL:
        tool = _first(attrs, _TOOL) or span.name.removeprefix("execute_tool ")
        raw_args = _first(attrs, _TOOL_ARGS)
        digest = hashlib.blake2b(str(raw_args).encode(), digest_size=8).hexdigest()
        events.append(
            ToolCallEvent(
                event_id=base_id + ":t",
                tool=str(tool)[:128] or "tool",
                args_hash=digest,
                status=SpanStatus.ERROR if span.status_error else SpanStatus.OK,
                **common,
            )
        )
    events += _evaluations(span, common, base_id)
    return events


def _usd(value: Any) -> Decimal | None:
    """A cost attribute as dollars: a finite number >= 0, else None (never fails the span)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        usd = Decimal(str(value))
    except ArithmeticError:
        return None
    return usd if usd.is_finite() and usd >= 0 else None


def _reported_cost(attrs: Mapping[str, Any]) -> Decimal | None:
    """The provider-reported cost of an LLM span (``gen_ai.usage.cost*``, ``llm.cost.*``)."""
    total = _usd(_first(attrs, _COST_TOTAL))
    if total is not None:
        return total
    for parts in _COST_PARTS:
        values = [_usd(attrs.get(name)) for name in parts]
        if any(v is not None for v in values):
            return sum((v for v in values if v is not None), Decimal(0))
    return None


def _evaluations(span: OtelSpan, common: Mapping[str, Any], base_id: str) -> list[AnyEvent]:
    """``gen_ai.evaluation.result`` span events as quality events of the span's agent: the
    evaluation's name is the metric, ``gen_ai.evaluation.score.value`` the score (an event
    without a numeric score is left out: a label alone is not a score)."""
    out: list[AnyEvent] = []
    for index, event in enumerate(span.events):
        if event.name != EVALUATION_EVENT:
            continue
        attrs = event.attributes
        score = attrs.get("gen_ai.evaluation.score.value")
        metric = attrs.get("gen_ai.evaluation.name")
        if isinstance(score, bool) or not isinstance(score, int | float) or not metric:
            continue
        label = attrs.get("gen_ai.evaluation.score.label")
        explanation = attrs.get("gen_ai.evaluation.explanation")
        try:
            out.append(
                QualityEvent(
                    event_id=f"{base_id}:e{index}",
                    metric=str(metric)[:64],
                    score=float(score),
                    evaluator=_clean_name(attrs.get("gen_ai.evaluation.evaluator") or None),
                    label=str(label)[:64] if label is not None else None,
                    comment=str(explanation)[:1024] if explanation is not None else None,
                    **{**common, "ts": _dt(event.time_ns or span.end_ns)},
                )
            )
        except ValidationError as exc:  # a NaN score, a bad name: this evaluation only
            log.info("evaluation event on span %s left out: %s", span.span_id, describe(exc))
    return out
