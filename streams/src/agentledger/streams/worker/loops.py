"""Runaway-loop detection per trace (event time; in memory, rebuilt from live traffic)."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agentledger.events import QualityEvent, SpanEvent, SpanKind, SpanStatus, ToolCallEvent, UsageEvent
from agentledger.streams.policyfile import LoopSettings
from agentledger.wire import AnyEvent

MAX_TRACES = 100_000
"""Traces watched at once; the least recently active is forgotten first."""


TOOL, LLM, PROGRESS = "t", "u", "p"


def loop_features(ev: AnyEvent, cost: Decimal = Decimal(0)) -> list[Any] | None:
    """What the detector needs of one event, compact enough to ride on the scope-deltas topic
    to the trace's partition: ``[code, ts, tenant, trace, agent, event id, a, b, c]`` with
    a tool call's (tool, args hash) or a usage's (tokens, cost) in a/b/c. None for events the
    detector draws nothing from (spans other than finished agent turns)."""
    if isinstance(ev, SpanEvent) and ev.kind is not SpanKind.AGENT:
        return None
    head = [ev.ts.timestamp(), ev.tenant, ev.trace_id, ev.agent, ev.event_id]
    if isinstance(ev, ToolCallEvent):
        return [TOOL, *head, ev.tool, ev.args_hash, None]
    if isinstance(ev, UsageEvent):
        return [LLM, *head, None, ev.input_tokens + ev.output_tokens, str(cost)]
    if isinstance(ev, QualityEvent) or (isinstance(ev, SpanEvent) and ev.status is SpanStatus.OK):
        return [PROGRESS, *head, None, None, None]
    return None


@dataclass(slots=True)
class _TraceState:
    tool_times: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    llm: deque[tuple[float, int]] = field(default_factory=deque)
    llm_tokens: int = 0  # running sum over ``llm`` (kept, not recomputed: hot path)
    spend_since_progress: Decimal = Decimal(0)
    calls_since_progress: int = 0
    killed: bool = False


@dataclass(frozen=True, slots=True)
class LoopVerdict:
    tenant: str
    trace_id: str
    agent: str
    reason: str
    cause_event_id: str


class LoopDetector:
    """Feeds on a trace's events in order; returns a verdict the first time a trace loops."""

    def __init__(self, settings: LoopSettings | None = None) -> None:
        self.settings = settings or LoopSettings()
        self._traces: OrderedDict[tuple[str, str], _TraceState] = OrderedDict()

    def _state(self, tenant: str, trace_id: str) -> _TraceState:
        key = (tenant, trace_id)
        st = self._traces.get(key)
        if st is None:
            st = self._traces[key] = _TraceState()
            if len(self._traces) > MAX_TRACES:
                self._traces.popitem(last=False)
        else:
            self._traces.move_to_end(key)
        return st

    def observe(self, ev: AnyEvent, cost: Decimal = Decimal(0)) -> LoopVerdict | None:
        if not self.settings.enabled:
            return None
        f = loop_features(ev, cost)
        return None if f is None else self.observe_features(f)

    def observe_features(self, f: list[Any]) -> LoopVerdict | None:
        """One event's ``loop_features`` (stage two gets them from the scope-deltas topic)."""
        s = self.settings
        if not s.enabled:
            return None
        code, t, tenant, trace_id, agent, event_id, a, b, c = f
        st = self._state(tenant, trace_id)
        if st.killed:
            return None
        reason: str | None = None
        if code == TOOL:
            times = st.tool_times.get((a, b))
            if times is None:
                times = st.tool_times[(a, b)] = deque()
                self._progress(st)  # a call with new arguments is new output
            times.append(t)
            while times and times[0] <= t - s.repeat_window_s:
                times.popleft()
            if len(times) >= s.repeat_calls:
                reason = (
                    f"tool {a!r} called {len(times)} times with the same arguments "
                    f"within {s.repeat_window_s:g}s (limit {s.repeat_calls})"
                )
        elif code == LLM:
            n = int(b)
            st.llm.append((t, n))
            st.llm_tokens += n
            while st.llm and st.llm[0][0] <= t - 60.0:
                st.llm_tokens -= st.llm.popleft()[1]
            st.spend_since_progress += Decimal(c)
            st.calls_since_progress += 1
            tokens = st.llm_tokens
            if len(st.llm) > s.max_llm_calls_per_min:
                reason = f"{len(st.llm)} LLM calls in one minute (limit {s.max_llm_calls_per_min})"
            elif tokens > s.max_tokens_per_min:
                reason = f"{tokens} tokens in one minute (limit {s.max_tokens_per_min})"
            elif (
                st.spend_since_progress >= s.no_progress_usd
                and st.calls_since_progress >= s.no_progress_calls
            ):
                reason = (
                    f"${st.spend_since_progress} over {st.calls_since_progress} LLM calls with no new output "
                    f"(limit ${s.no_progress_usd})"
                )
        elif code == PROGRESS:
            self._progress(st)  # a scored answer or an agent turn that finished fine is output
        if reason is None:
            return None
        st.killed = True
        return LoopVerdict(tenant, trace_id, agent, reason, event_id)

    @staticmethod
    def _progress(st: _TraceState) -> None:
        st.spend_since_progress = Decimal(0)
        st.calls_since_progress = 0

    def __len__(self) -> int:
        return len(self._traces)
