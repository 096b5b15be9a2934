"""Per-trace wall-clock deadlines (policies' ``deadline_s``; docs/adr/0019-deadlines-and-call-timeouts.md).

Stage one sends, per events record and trace, what the watch needs (``deadline_rows``: the
trace's agent, version, workflow, earliest and latest counted time, the earliest event's id,
whether its root span ended) to the trace's scope-deltas partition. Stage two feeds them to
``DeadlineWatch`` and the worker's timer asks it which open traces are past their deadline;
those are killed on the trace scope. The timer is what makes a hung trace (nothing more
arrives) die on time.

Memory: only traces that a deadline policy matches are kept, at most ``MAX_TRACES`` (least
recently active forgotten first); a trace idle for longer than its deadline plus
``IDLE_MARGIN_S``, or whose root span ended, is forgotten. The state is memory only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from agentledger.events import Policy
from agentledger.wire import StageEvent, is_span

MAX_TRACES = 100_000
"""Open traces watched at once; the least recently active is forgotten first."""
IDLE_MARGIN_S = 60.0
"""A trace with no event for its deadline plus this long is forgotten (it was killed already,
or it ended without a root span we saw)."""

Fields = tuple[str, str | None, str | None]
"""(agent, agent version, workflow) of a trace's events."""


def deadline_policies(policies: Iterable[Policy]) -> list[Policy]:
    return [p for p in policies if p.enabled and p.deadline_s is not None]


def matches(p: Policy, tenant: str, f: Fields) -> bool:
    s = p.selector
    agent, version, workflow = f
    return (
        fnmatchcase(tenant, s.tenant)
        and fnmatchcase(agent, s.agent)
        and (s.agent_version == "*" or (version is not None and fnmatchcase(version, s.agent_version)))
        and (s.workflow == "*" or (workflow is not None and fnmatchcase(workflow, s.workflow)))
    )


def deadline_rows(events: Sequence[StageEvent], at: Sequence[int]) -> dict[tuple[str, str], list[list[Any]]]:
    """Per (tenant, trace): one row per (agent, version, workflow) seen in this record,
    ``[agent, version, workflow, first_s, last_s, first event id, root ended]``. Times are when
    each event counts (``eventtime``: its own time, or its arrival when late or skewed); a
    span counts from its start."""
    out: dict[tuple[str, str], dict[Fields, list[Any]]] = {}
    for ev, sec in zip(events, at, strict=True):
        ts = ev.ts.timestamp()
        on_time = int(ts) == sec
        t = ts if on_time else float(sec)  # its own time, to the µs, unless counted at arrival
        if is_span(ev):  # a span counts from its start, and a root span ends its trace
            t0 = min(t, ev.start.timestamp()) if on_time else t
            ended = ev.parent_span_id is None
        else:
            t0, ended = t, False
        rows = out.setdefault((ev.tenant, ev.trace_id), {})
        f = (ev.agent, ev.agent_version, ev.workflow)
        row = rows.get(f)
        if row is None:
            rows[f] = [*f, t0, t, ev.event_id, ended]
            continue
        if t0 < row[3]:
            row[3], row[5] = t0, ev.event_id
        row[4] = max(row[4], t)
        row[6] = row[6] or ended
    return {k: list(v.values()) for k, v in out.items()}


@dataclass(slots=True)
class _Trace:
    tenant: str
    trace_id: str
    first_s: float
    last_s: float
    cause_event_id: str
    fields: set[Fields] = field(default_factory=set)
    deadline: tuple[float, str] | None = None  # (seconds, policy id), for ``gen``
    gen: int = -1
    killed: bool = False


@dataclass(frozen=True, slots=True)
class DeadlineVerdict:
    tenant: str
    trace_id: str
    agent: str
    policy_id: str
    deadline_s: float
    first_s: float
    now_s: float
    cause_event_id: str

    @property
    def reason(self) -> str:
        def hms(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")

        return (
            f"trace exceeded its {self.deadline_s:g} s deadline (policy {self.policy_id}): "
            f"first event {hms(self.first_s)}, now {hms(self.now_s)}"
        )


class DeadlineWatch:
    """Open traces a deadline policy matches, and which are past their deadline."""

    def __init__(self, max_traces: int = MAX_TRACES, margin_s: float = IDLE_MARGIN_S) -> None:
        self.max_traces = max_traces
        self.margin_s = margin_s
        self.policies: list[Policy] = []
        self._gen = 0
        self._traces: OrderedDict[tuple[str, str], _Trace] = OrderedDict()
        self.forgotten = 0  # traces dropped for the memory bound (not for idleness)
        self.released: list[tuple[str, str]] = []
        """Killed traces forgotten since the last ``take_released`` (the caller drops its wish)."""

    def __len__(self) -> int:
        return len(self._traces)

    def set_policies(self, policies: Iterable[Policy]) -> None:
        """The deadline policies in force (call on every policy change)."""
        self.policies = deadline_policies(policies)
        self._gen += 1

    def _deadline(self, tr: _Trace) -> tuple[float, str] | None:
        if tr.gen != self._gen:
            best: tuple[float, str] | None = None
            for p in self.policies:
                assert p.deadline_s is not None
                if any(matches(p, tr.tenant, f) for f in tr.fields) and (
                    best is None or p.deadline_s < best[0]
                ):
                    best = (p.deadline_s, p.policy_id)
            tr.deadline, tr.gen = best, self._gen
        return tr.deadline

    def observe(self, tenant: str, trace_id: str, rows: Sequence[Sequence[Any]]) -> None:
        """One record's rows of a trace (``deadline_rows``)."""
        if not self.policies:
            return
        key = (tenant, trace_id)
        tr = self._traces.get(key)
        if tr is None:
            fields = {(str(r[0]), r[1], r[2]) for r in rows}
            if not any(matches(p, tenant, f) for p in self.policies for f in fields):
                return  # no deadline applies: not kept
            first = min(rows, key=lambda r: float(r[3]))
            tr = self._traces[key] = _Trace(tenant, trace_id, float(first[3]), float(first[4]), str(first[5]))
            if len(self._traces) > self.max_traces:
                old_key, old = self._traces.popitem(last=False)
                self.forgotten += 1
                if old.killed:
                    self.released.append(old_key)
        else:
            self._traces.move_to_end(key)
        for agent, version, workflow, first_s, last_s, event_id, ended in rows:
            f = (str(agent), version, workflow)
            if f not in tr.fields:
                tr.fields.add(f)
                tr.gen = -1
            if float(first_s) < tr.first_s:
                tr.first_s, tr.cause_event_id = float(first_s), str(event_id)
            tr.last_s = max(tr.last_s, float(last_s))
            if ended and not tr.killed:  # the root span finished: the trace is over
                del self._traces[key]
                return

    def due(self, now_s: float, owns: Callable[[str], bool] | None = None) -> list[DeadlineVerdict]:
        """Traces past their deadline, once each; forgets idle ones. ``owns`` says which
        trace scope keys this process holds."""
        out: list[DeadlineVerdict] = []
        for key, tr in list(self._traces.items()):
            d = self._deadline(tr)
            if d is None or now_s - tr.last_s > d[0] + self.margin_s:
                del self._traces[key]
                if tr.killed:
                    self.released.append(key)
                continue
            if tr.killed or now_s - tr.first_s <= d[0]:
                continue
            if owns is not None and not owns(f"trace/{tr.tenant}/{tr.trace_id}"):
                continue
            tr.killed = True
            agent = min(f[0] for f in tr.fields)
            out.append(
                DeadlineVerdict(
                    tr.tenant, tr.trace_id, agent, d[1], d[0], tr.first_s, now_s, tr.cause_event_id
                )
            )
        return out

    def take_released(self) -> list[tuple[str, str]]:
        out, self.released = self.released, []
        return out
