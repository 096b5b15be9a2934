"""Runaway-loop detection per trace (event time).

In the worker the state of a trace lives *inside its trace rollup* (``Rollup.loop``, stage
two), so it is written to the changelog in the same record as the trace's totals and its
applied-origin mark: after a crash or a rebalance the state is restored with the mark, the
deltas after it come again and are applied once, and a loop is killed at the same call N it
would have been without the crash (docs/adr/0011, addendum). It is bounded with the trace
rollup: dropped when the trace has been idle for a day (``Processor.evict_idle_traces``).
``LoopDetector.observe`` without a state keeps its own in-memory map (unit tests, one-off use).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from agentledger.events import SpanKind, SpanStatus
from agentledger.streams.policyfile import LoopSettings
from agentledger.wire import AnyEvent, StageEvent, is_quality, is_span, is_tool_call, is_usage

MAX_TRACES = 100_000
"""Traces watched at once by a detector that keeps its own state (least recently active first
forgotten); in the worker the rollups table holds the state and evicts idle traces."""
MAX_ARGS = 1_000
"""Distinct (tool, arguments) remembered per trace; past it, those with no recent call go first."""


TOOL, LLM, PROGRESS = "t", "u", "p"


def loop_features(ev: StageEvent, cost: Decimal = Decimal(0)) -> list[Any] | None:
    """What the detector needs of one event, compact enough to ride on the scope-deltas topic
    to the trace's partition: ``[code, ts, tenant, trace, agent, event id, a, b, c]`` with
    a tool call's (tool, args hash) or a usage's (tokens, cost) in a/b/c. None for events the
    detector draws nothing from (spans other than finished agent turns)."""
    a: str | None = None
    b: str | int | None = None
    c: str | None = None
    if is_span(ev):
        if ev.kind is not SpanKind.AGENT or ev.status is not SpanStatus.OK:
            return None
        code = PROGRESS
    elif is_tool_call(ev):
        code, a, b = TOOL, ev.tool, ev.args_hash
    elif is_usage(ev):
        code, b, c = LLM, ev.input_tokens + ev.output_tokens, str(cost)
    elif is_quality(ev):
        code = PROGRESS
    else:
        return None
    return [code, ev.ts.timestamp(), ev.tenant, ev.trace_id, ev.agent, ev.event_id, a, b, c]


@dataclass(slots=True)
class TraceLoopState:
    """What the detector remembers of one trace; ``dump``/``load`` give the JSON-able form the
    trace rollup carries to the changelog."""

    tool_times: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    llm: deque[tuple[float, int]] = field(default_factory=deque)
    llm_tokens: int = 0  # running sum over ``llm`` (kept, not recomputed: hot path)
    spend_since_progress: Decimal = Decimal(0)
    calls_since_progress: int = 0
    killed: bool = False

    def dump(self) -> list[Any]:
        return [
            [[tool, args, list(times)] for (tool, args), times in self.tool_times.items()],
            [[t, n] for t, n in self.llm],
            str(self.spend_since_progress),
            self.calls_since_progress,
            self.killed,
        ]

    @classmethod
    def load(cls, doc: list[Any]) -> TraceLoopState:
        tools, llm, spend, calls, killed = doc
        st = cls(
            tool_times={(tool, args): deque(times) for tool, args, times in tools},
            llm=deque((float(t), int(n)) for t, n in llm),
            spend_since_progress=Decimal(spend),
            calls_since_progress=int(calls),
            killed=bool(killed),
        )
        st.llm_tokens = sum(n for _, n in st.llm)
        return st

    def trim(self) -> None:
        """Keep ``MAX_ARGS`` distinct calls: those without a call in their window go first."""
        if len(self.tool_times) <= MAX_ARGS:
            return
        for k in [k for k, times in self.tool_times.items() if not times]:
            del self.tool_times[k]
            if len(self.tool_times) <= MAX_ARGS:
                return
        while len(self.tool_times) > MAX_ARGS:  # all active: the oldest first seen goes
            del self.tool_times[next(iter(self.tool_times))]


class HasLoopState(Protocol):
    loop: TraceLoopState | None


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
        self._traces: OrderedDict[tuple[str, str], TraceLoopState] = OrderedDict()

    @staticmethod
    def state_in(holder: HasLoopState) -> TraceLoopState:
        """The loop state a trace rollup carries (created on first use)."""
        st = holder.loop
        if st is None:
            st = holder.loop = TraceLoopState()
        return st

    def _state(self, tenant: str, trace_id: str) -> TraceLoopState:
        key = (tenant, trace_id)
        st = self._traces.get(key)
        if st is None:
            st = self._traces[key] = TraceLoopState()
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

    def observe_features(self, f: list[Any], state: TraceLoopState | None = None) -> LoopVerdict | None:
        """One event's ``loop_features`` (stage two gets them from the scope-deltas topic).
        ``state``: the trace's state (the worker keeps it in the trace rollup); None: ours."""
        s = self.settings
        if not s.enabled:
            return None
        code, t, tenant, trace_id, agent, event_id, a, b, c = f
        if code not in (TOOL, LLM, PROGRESS):
            return None
        st = self._state(tenant, trace_id) if state is None else state
        if st.killed:
            return None
        reason: str | None = None
        if code == TOOL:
            times = st.tool_times.get((a, b))
            if times is None:
                times = st.tool_times[(a, b)] = deque()
                self._progress(st)  # a call with new arguments is new output
                times.append(t)
                st.trim()
            else:
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
    def _progress(st: TraceLoopState) -> None:
        st.spend_since_progress = Decimal(0)
        st.calls_since_progress = 0

    def __len__(self) -> int:
        return len(self._traces)
