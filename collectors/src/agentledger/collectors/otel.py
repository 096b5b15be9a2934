"""OpenTelemetry bridge: a ``SpanProcessor`` that turns ``gen_ai.*`` spans from any OTel
instrumentation into agentledger events, in-process.

    from opentelemetry.sdk.trace import TracerProvider
    from agentledger.collectors.otel import AgentLedgerSpanProcessor
    provider = TracerProvider()
    provider.add_span_processor(AgentLedgerSpanProcessor(emitter))

``on_start``/``on_end`` only append to a deque (like the BatchSpanProcessor). A daemon thread
groups spans by trace and maps a trace once none of its local spans is open (or after
``max_trace_age_s``), because de-duplication (an SDK's LLM span inside a framework's LLM
span) needs the whole trace. The mapping is ``agentledger.genai.spans_to_events``: the same
code the API's OTLP endpoint uses. Message content never leaves the mapping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
    from opentelemetry.trace import StatusCode
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the OpenTelemetry bridge needs the OpenTelemetry SDK: pip install 'agentledger[otel]'"
    ) from exc

from agentledger.genai import MappingDefaults, OtelSpan, OtelSpanEvent, spans_to_events

from . import _exit
from .client import get_emitter

if TYPE_CHECKING:
    from .emitter import Emitter

log = logging.getLogger("agentledger.collectors")


def to_otel_span(span: ReadableSpan) -> OtelSpan | None:
    """The neutral ``OtelSpan`` of an SDK span (None if it has no valid context)."""
    ctx = span.context
    if ctx is None or not ctx.trace_id or not ctx.span_id:
        return None
    attributes = dict(span.attributes or {})
    error = span.status.status_code is StatusCode.ERROR
    error_type = attributes.get("error.type")
    if error and error_type is None:
        for event in span.events:
            if event.name == "exception" and event.attributes:
                error_type = event.attributes.get("exception.type")
                break
    return OtelSpan(
        trace_id=format(ctx.trace_id, "032x"),
        span_id=format(ctx.span_id, "016x"),
        parent_span_id=format(span.parent.span_id, "016x") if span.parent is not None else None,
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        attributes=attributes,
        status_error=error,
        error_type=str(error_type) if error_type is not None else None,
        resource=dict(span.resource.attributes) if span.resource is not None else {},
        events=[OtelSpanEvent(e.name, e.timestamp or 0, dict(e.attributes or {})) for e in span.events],
    )


@dataclass(slots=True)
class _Trace:
    first_seen: float
    open: int = 0
    spans: list[ReadableSpan] = field(default_factory=list)


class AgentLedgerSpanProcessor(SpanProcessor):
    """Maps finished GenAI spans to events on ``emitter`` (default: the process-wide one)."""

    def __init__(
        self,
        emitter: Emitter | None = None,
        *,
        defaults: MappingDefaults | None = None,
        max_trace_age_s: float = 30.0,
        interval_s: float = 0.05,
        max_queue: int = 65_536,
    ) -> None:
        self._emitter = emitter
        self._defaults = defaults
        self.max_trace_age_s = max_trace_age_s
        self.interval_s = interval_s
        self._queue: deque[tuple[bool, Any]] = deque(maxlen=max_queue)
        self._traces: dict[int, _Trace] = {}
        self._lock = threading.Lock()  # one mapper at a time (the thread, or a flush)
        self._stop = threading.Event()
        self.mapped_spans = 0
        self._thread = threading.Thread(target=self._main, name="agentledger-otel", daemon=True)
        self._thread.start()
        # Map what ended before exit while the emitter can still send (see collectors._exit).
        _exit.before_threads_stop(_exit.weak(self, "_drain", True), _exit.DRAIN)

    @property
    def emitter(self) -> Emitter:
        return self._emitter or get_emitter()

    def _defaults_now(self) -> MappingDefaults:
        if self._defaults is not None:
            return self._defaults
        em = self.emitter
        return MappingDefaults(
            tenant=em.tenant, agent=em.agent, agent_version=em.agent_version, workflow=em.workflow
        )

    # -- SpanProcessor (called in agent threads: append only) --------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._queue.append((True, span.context.trace_id if span.context else 0))

    def on_end(self, span: ReadableSpan) -> None:
        self._queue.append((False, span))

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Map every span seen so far and wait for the emitter to deliver it (the emitter
        itself stays open: it may be shared)."""
        self._stop.set()
        self._thread.join(timeout_s)
        self._drain(final=True)
        self.emitter.flush(timeout_s)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Map every span seen so far; True once the emitter has delivered them."""
        self._drain(final=True)
        return self.emitter.flush(timeout_millis / 1000)

    # -- the mapping thread ------------------------------------------------------------

    def _main(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._drain(final=False)
            except Exception:
                log.exception("agentledger OTel bridge could not map spans")

    def _drain(self, final: bool) -> None:
        with self._lock:
            done: list[_Trace] = []
            now = time.monotonic()
            while self._queue:
                started, item = self._queue.popleft()
                trace_id = item if started else (item.context.trace_id if item.context else 0)
                trace = self._traces.get(trace_id)
                if trace is None:
                    trace = self._traces[trace_id] = _Trace(now)
                if started:
                    trace.open += 1
                    continue
                trace.open -= 1
                trace.spans.append(item)
                if trace.open <= 0:
                    done.append(self._traces.pop(trace_id))
            for trace_id, trace in list(self._traces.items()):
                if final or now - trace.first_seen > self.max_trace_age_s:
                    if trace.spans:
                        done.append(trace)
                    del self._traces[trace_id]
            for trace in done:
                self._emit(trace.spans)

    def _emit(self, spans: list[ReadableSpan]) -> None:
        converted = [s for s in (to_otel_span(span) for span in spans) if s is not None]
        if not converted:
            return
        em = self.emitter
        refused: list[tuple[OtelSpan, str]] = []
        for event in spans_to_events(converted, self._defaults_now(), rejected=refused):
            em.record_event(event)
        if refused:  # counted and logged (once a minute) by the emitter, never raised
            em.note_rejected(len(refused), refused[-1][1])
        self.mapped_spans += len(converted)
