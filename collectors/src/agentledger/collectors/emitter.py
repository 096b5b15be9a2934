"""The ``Emitter``: what agents record through. Recording builds a small dict and enqueues it;
the ``BatchSender`` does everything else on its own thread."""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import re
import threading
import time
import unicodedata
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from agentledger import topics
from agentledger.events import (
    INT64_MAX,
    INT64_MIN,
    MAX_ATTRIBUTE_VALUE_CHARS,
    MAX_ATTRIBUTES,
    BaseEvent,
    clean_name,
)
from agentledger.settings import get_settings

from . import _exit, _ids
from .context import _CURRENT
from .sender import BatchSender
from .spans import SpanScope
from .transport import NoOpTransport, Transport

log = logging.getLogger("agentledger.collectors")

_bits = _ids._rng.getrandbits
_time_ns = time.time_ns
_NAME = re.compile(r"^[^/\s][^/]{0,127}$")
_STATUSES = frozenset({"ok", "error", "unset"})
REJECTED_LOG_EVERY_S = 60.0
_warned_noop = False  # the "events go nowhere" warning is given once per process
_warned_data = False  # the "cleaned a label / shortened an attribute" warning: once per process
_TRUNCATED = "…"


def _check_name(value: str, what: str = "name") -> str:
    """A tenant/agent/workflow name, NFKC-normalised; ``ValueError`` when the contract would
    refuse it (these names are code or configuration, so a bad one is a programming error)."""
    try:
        cleaned = clean_name(value)
    except ValueError as exc:
        raise ValueError(f"{what} {value!r} {exc}") from None
    if not isinstance(cleaned, str) or not _NAME.match(cleaned):
        raise ValueError(f"{what} {value!r} must be 1-128 characters, not start with a space, no '/'")
    return cleaned


def _warn_data(what: str) -> None:
    global _warned_data
    if not _warned_data:
        _warned_data = True
        log.warning("agentledger %s (shown once; the event is kept)", what)


def _label(value: str) -> str:
    """A provider/model/tool name as data (often from a provider's response): never raises;
    control and format characters are removed so the event is kept, with one WARNING."""
    try:
        return clean_name(value)  # type: ignore[return-value]
    except ValueError:
        kept = "".join(c for c in unicodedata.normalize("NFKC", value) if not _hidden(c))
        _warn_data(f"removed control/format characters from the name {value!r}")
        return kept


def _timeout(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


def _cost_ok(value: Decimal | float | None) -> bool:
    try:
        return value is None or (math.isfinite(float(value)) and value >= 0)
    except (ArithmeticError, TypeError, ValueError):
        return False


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def hash_args(args: Any) -> str:
    """16-hex blake2b of the arguments' canonical JSON: equal arguments, equal hash; never sent."""
    raw = json.dumps(args, sort_keys=True, separators=(",", ":"), default=repr).encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


class Emitter:
    """A configured client: constructor arguments first, then ``AGENTLEDGER_*`` environment.

    Transport: ``transport`` if given; else Kafka when ``bootstrap`` (or
    ``AGENTLEDGER_KAFKA_BOOTSTRAP``) is set or a local broker started by ``agentledger kafka
    up`` is running; else HTTP when ``api_key`` (or ``AGENTLEDGER_API_KEY``) is set; else a
    no-op, with one WARNING saying that events go nowhere.
    """

    def __init__(
        self,
        tenant: str | None = None,
        agent: str | None = None,
        agent_version: str | None = None,
        workflow: str | None = None,
        transport: Transport | None = None,
        bootstrap: str | None = None,
        max_queue: int = 65_536,
        batch_size: int = 512,
        linger_ms: float = 20.0,
        *,
        topic: str | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        exit_timeout: float = 2.0,
        user: str | None = None,
        conversation: str | None = None,
        call_timeout_s: float | None = None,
        call_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        settings = get_settings()
        self.tenant = _check_name(tenant or settings.tenant, "tenant")
        self.agent = _check_name(agent or settings.agent, "agent")
        self.agent_version = agent_version or settings.agent_version
        if self.agent_version is not None:
            try:
                version = str(clean_name(self.agent_version))
            except ValueError as exc:
                raise ValueError(f"agent_version {self.agent_version!r} {exc}") from None
            if len(version) > 64:
                raise ValueError("agent_version must be at most 64 characters")
            self.agent_version = version
        self.workflow = _check_name(workflow, "workflow") if workflow else None
        # the end user / conversation every call of this process is for (Guard scopes), if one
        self.user = _check_name(user, "user") if user else None
        self.conversation = _check_name(conversation, "conversation") if conversation else None
        # the provider-SDK hook's per-call timeout (seconds), and per-agent overrides
        self.call_timeout_s = _timeout(call_timeout_s, "call_timeout_s")
        self.call_timeouts = {
            _check_name(name, "agent"): _timeout(value, f"call_timeouts[{name!r}]")
            for name, value in (call_timeouts or {}).items()
        }
        self._names: set[str] = {self.agent}
        self._labels: set[str] = set()  # provider/model/tool names already checked
        self.bootstrap: str | None = None  # the Kafka cluster events go to (the Guard uses it too)
        self.transport = transport or self._transport_from(settings, bootstrap, topic, api_url, api_key)
        if self.bootstrap is None and isinstance(getattr(self.transport, "bootstrap", None), str):
            self.bootstrap = self.transport.bootstrap  # type: ignore[attr-defined]
        self._worker = BatchSender(
            self.transport, max_queue=max_queue, batch_size=batch_size, linger_ms=linger_ms
        )
        self.exit_timeout = exit_timeout
        self._exit_flushed: bool | None = None
        self.rejected = 0  # spans the OTel mapping refused (never sent)
        self._rejected_unlogged = 0
        self._rejected_logged_at: float | None = None
        self._rejected_lock = threading.Lock()
        _exit.before_threads_stop(_exit.weak(self, "_flush_at_exit"))
        atexit.register(_exit.weak(self, "_shutdown_at_exit"))

    def _transport_from(
        self,
        settings: Any,
        bootstrap: str | None,
        topic: str | None,
        api_url: str | None,
        api_key: str | None,
    ) -> Transport:
        explicit = bootstrap or settings.kafka_bootstrap
        bootstrap = settings.resolve_bootstrap(bootstrap)
        if bootstrap:
            from .kafka import KafkaTransport

            if not explicit:
                log.info("agentledger: sending to the local Kafka at %s (`agentledger kafka up`)", bootstrap)
            self.bootstrap = bootstrap
            topic = topic or topics.name(topics.EVENTS, settings.topic_prefix)
            return KafkaTransport(bootstrap, topic, client_options=settings.kafka_client_options())
        api_key = api_key or settings.api_key
        if api_key:
            from .http import HttpTransport

            return HttpTransport(api_url or settings.api_url, api_key)
        global _warned_noop
        if not _warned_noop:
            _warned_noop = True
            log.warning(
                "agentledger: no Kafka bootstrap, no API key and no local broker found: events "
                'recorded now go nowhere. Pass bootstrap="host:port" (or set '
                "AGENTLEDGER_KAFKA_BOOTSTRAP), run `agentledger kafka up`, or pass api_key= "
                "(AGENTLEDGER_API_KEY) to send through the API"
            )
        return NoOpTransport()

    # -- checks (cheap; raise ValueError for programming errors only) ------------------

    def _check_name(self, name: str, what: str = "agent") -> str:
        if name in self._names:
            return name
        name = _check_name(name, what)
        self._names.add(name)
        return name

    @staticmethod
    def _check_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Keys are code (a bad one raises ``ValueError``); a string value longer than the
        contract's cap is data: it is shortened (ending in "…") and the event kept; so is an
        integer beyond 64 bits (OpenTelemetry's int64): it is sent as its string."""
        if len(attributes) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        out: dict[str, Any] = {}
        for key, value in attributes.items():
            if not isinstance(key, str) or not 0 < len(key) <= 128:
                raise ValueError(f"attribute key {key!r} must be a string of 1-128 characters")
            try:
                key = clean_name(key)  # type: ignore[assignment]
            except ValueError as exc:
                raise ValueError(f"attribute key {key!r} {exc}") from None
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"attribute {key!r} must be str, int, float or bool")
            if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
                _warn_data(f"attribute {key!r} is beyond a 64-bit integer: sent as a string")
                value = str(value)
            if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_VALUE_CHARS:
                _warn_data(
                    f"shortened attribute {key!r} from {len(value)} to {MAX_ATTRIBUTE_VALUE_CHARS} "
                    "characters (attributes are labels, not content)"
                )
                value = value[: MAX_ATTRIBUTE_VALUE_CHARS - len(_TRUNCATED)] + _TRUNCATED
            out[key] = value
        return out

    def _label(self, value: str) -> str:
        cleaned = _label(value)
        if cleaned == value and len(self._labels) < 4096:  # remember clean labels (bounded)
            self._labels.add(value)
        return cleaned

    def _ids(self) -> tuple[str, str, str | None, str, str | None, str | None]:
        """(trace, span, parent, agent, workflow, version) for an event recorded right now."""
        cur = _CURRENT.get()
        if cur is None:  # one RNG draw for both ids: this is the common case for bare records
            both = "%048x" % (_bits(192) | 1 << 64 | 1)  # neither half can be all zero
            return both[:32], both[32:], None, self.agent, self.workflow, self.agent_version
        if cur.remote:  # a remote parent: the event gets its own span under it
            return cur.trace_id, _ids.span_id(), cur.span_id, self.agent, self.workflow, self.agent_version
        return (
            cur.trace_id,
            cur.span_id,
            cur.parent_span_id,
            cur.agent or self.agent,
            cur.workflow,
            cur.agent_version,
        )

    # -- recording ---------------------------------------------------------------------

    def span(
        self,
        name: str,
        kind: str = "agent",
        agent: str | None = None,
        workflow: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        provider: str | None = None,
        model: str | None = None,
        *,
        user: str | None = None,
        conversation: str | None = None,
    ) -> SpanScope:
        """A span: ``with em.span("plan"):`` or ``@em.span("plan")`` (sync or async)."""
        return SpanScope(self, name, kind, agent, workflow, attributes, provider, model, user, conversation)

    def record_usage(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        *,
        reported_cost_usd: Decimal | float | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """Token usage of one LLM call (``input_tokens`` includes cached ones). Returns the event id."""
        if (
            not (type(input_tokens) is type(output_tokens) is type(cache_read_tokens)
                 is type(cache_write_tokens) is type(reasoning_tokens) is int)  # bool is not a count
            or input_tokens < 0 or output_tokens < 0 or cache_read_tokens < 0 or cache_write_tokens < 0
            or reasoning_tokens < 0 or cache_read_tokens + cache_write_tokens > input_tokens
            or reasoning_tokens > output_tokens or not provider or not model
            or (reported_cost_usd is not None and not _cost_ok(reported_cost_usd))
        ):  # fmt: skip
            raise ValueError(
                "usage counts must be integers >= 0 (not bool), input_tokens must include cache "
                "reads and writes, output_tokens must include reasoning, provider and model must "
                "be set, reported_cost_usd must be >= 0 "
                "(use usage_from_openai / usage_from_anthropic to normalise provider counts)"
            )
        if provider not in self._labels:
            provider = self._label(provider)
        if model not in self._labels:
            model = self._label(model)
        trace, span, parent, agent, workflow, version = self._ids()
        event_id = _ids.event_id()
        event = {
            "event_id": event_id, "type": "usage", "ts": _time_ns(), "tenant": self.tenant,
            "agent": agent, "agent_version": version, "workflow": workflow, "trace_id": trace,
            "span_id": span, "parent_span_id": parent, "provider": provider, "model": model,
            "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_read_tokens": cache_read_tokens, "cache_write_tokens": cache_write_tokens,
            "reasoning_tokens": reasoning_tokens,
        }  # fmt: skip
        if reported_cost_usd is not None:
            event["reported_cost_usd"] = str(reported_cost_usd)
        if attributes:
            event["attributes"] = self._check_attributes(attributes)
        self._worker.put(event)
        return event_id

    def record_quality(
        self,
        metric: str,
        score: float,
        evaluator: str | None = None,
        *,
        label: str | None = None,
        comment: str | None = None,
    ) -> str:
        """A quality score (LLM judge, heuristic, user feedback) for the current span."""
        if not metric or len(metric) > 64 or not math.isfinite(score):
            raise ValueError("metric must be 1-64 characters and score a finite number")
        trace, span, parent, agent, workflow, version = self._ids()
        event_id = _ids.event_id()
        event = {
            "event_id": event_id, "type": "quality", "ts": _time_ns(), "tenant": self.tenant,
            "agent": agent, "agent_version": version, "workflow": workflow, "trace_id": trace,
            "span_id": span, "parent_span_id": parent, "metric": metric, "score": float(score),
            "evaluator": evaluator, "label": label, "comment": comment[:1024] if comment else None,
        }  # fmt: skip
        self._worker.put(event)
        return event_id

    def record_tool_call(
        self,
        tool: str,
        args: Any = None,
        status: str = "ok",
        attributes: dict[str, str] | None = None,
        agent: str | None = None,
    ) -> str:
        """One tool invocation. ``args`` are hashed here and never leave the process.
        ``attributes``: e.g. the tool policy's ``gen_ai.tool.call.decision``; ``agent``
        overrides the current agent (a framework adapter knows which of its agents calls)."""
        if not tool or len(tool) > 128 or status not in _STATUSES:
            raise ValueError(f"tool must be 1-128 characters and status one of {sorted(_STATUSES)}")
        if tool not in self._labels:
            tool = self._label(tool)
        trace, span, parent, current_agent, workflow, version = self._ids()
        agent = agent or current_agent
        event_id = _ids.event_id()
        event = {
            "event_id": event_id, "type": "tool_call", "ts": _time_ns(), "tenant": self.tenant,
            "agent": agent, "agent_version": version, "workflow": workflow, "trace_id": trace,
            "span_id": span, "parent_span_id": parent, "tool": tool, "args_hash": hash_args(args),
            "status": status,
        }  # fmt: skip
        if attributes:
            event["attributes"] = dict(attributes)
        self._worker.put(event)
        return event_id

    def record_event(self, event: BaseEvent) -> None:
        """Enqueue an already-built contract event (the OTel bridge uses this)."""
        data = event.model_dump(mode="json", exclude_none=True)
        data["ts"] = int(event.ts.timestamp() * 1_000_000) * 1000  # ns: the worker derives record time
        self._worker.put(data)

    # -- lifecycle ---------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is acknowledged (False on timeout). Never raises."""
        return self._worker.flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush, then stop the worker and close the transport. Never raises."""
        return self._worker.shutdown(timeout)

    def _flush_at_exit(self) -> None:
        # Before threads stop (see _exit): the sender can still resolve names and connect.
        self._exit_flushed = self.flush(self.exit_timeout)

    def _shutdown_at_exit(self) -> None:
        # atexit: sends what was recorded after the flush above (e.g. by other atexit hooks)
        # over the open connection; a destination that already failed gets no second budget.
        self.shutdown(0.2 if self._exit_flushed is False else self.exit_timeout)

    def note_rejected(self, count: int, reason: str) -> None:
        """``count`` spans the OTel mapping refused (so nothing was recorded for them): counted
        in ``stats()["rejected"]``, logged at WARNING at most once a minute. Never raises."""
        with self._rejected_lock:
            self.rejected += count
            self._rejected_unlogged += count
            now = time.monotonic()
            if self._rejected_logged_at is not None and now - self._rejected_logged_at < REJECTED_LOG_EVERY_S:
                return
            unlogged, self._rejected_unlogged, self._rejected_logged_at = self._rejected_unlogged, 0, now
        # %r: a reason quoting a span name must not forge or reorder log lines
        log.warning(
            "agentledger: %d span(s) refused by the OpenTelemetry mapping and not recorded, "
            "e.g. %r (%d in all: stats()['rejected']; shown at most once a minute)",
            unlogged, reason[:500], self.rejected,
        )  # fmt: skip

    def stats(self) -> dict[str, int]:
        """``sent``, ``dropped``, ``failed``, ``queued`` event counts, and ``rejected``: spans
        the OpenTelemetry bridge could not map."""
        return {**self._worker.stats(), "rejected": self.rejected}
