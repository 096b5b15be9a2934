"""Screen verdicts in the budget worker: a ``kill`` verdict becomes a trace kill command, and a
source whose outputs are flagged in many distinct traces raises a quarantine alert.

The client's ``kill`` action stops the trace in the process that screened it; the command on
the control topic stops the same trace in every other process (its other agents, its
workers). It goes through the enforcer's admission lane like a loop kill, as source
``screen``, and expires after ``kill_ttl_s``. A source (a tool or another agent, per tenant and
channel) flagged in ``quarantine_traces`` distinct traces within ``window_s`` raises one alert
(rule ``injection_source``) on the alerts topic; it may raise again once a full window has
passed. Nothing here quarantines by itself: what to do with a poisoned tool is a human's call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agentledger.events import Action, AlertEvent, AlertState, ScopeKind, ScreenEvent, Severity
from agentledger.streams.worker.budgets import Emitted
from agentledger.streams.worker.enforcer import Desire, Enforcer, new_id
from agentledger.streams.worker.scopes import ScopeRef
from agentledger.wire import AnyEvent

MAX_SOURCES = 10_000  # sources tracked at once (least recently flagged dropped first)


@dataclass(frozen=True, slots=True)
class ScreenSettings:
    kill_ttl_s: float = 3600.0
    quarantine_traces: int = 3
    window_s: float = 3600.0


class ScreenWatch:
    def __init__(self, enforcer: Enforcer, settings: ScreenSettings | None = None) -> None:
        self.enforcer = enforcer
        self.settings = settings or ScreenSettings()
        # (tenant, channel, source) -> (event time s, trace id) of its flagged verdicts
        self._seen: dict[tuple[str, str, str], deque[tuple[float, str]]] = {}
        self._alerted: dict[tuple[str, str, str], float] = {}

    def observe(self, events: list[AnyEvent], now_s: float) -> Emitted:
        em = Emitted()
        for ev in events:
            if isinstance(ev, ScreenEvent) and ev.flagged:
                if ev.action == "kill" and ev.trace_id:
                    self._kill(ev, now_s, em)
                if ev.source and ev.trace_id:
                    self._count(ev, em)
        return em

    def _kill(self, ev: ScreenEvent, now_s: float, em: Emitted) -> None:
        now = datetime.fromtimestamp(now_s, UTC)
        ref = ScopeRef(ScopeKind.TRACE, tenant=ev.tenant, trace_id=ev.trace_id)
        what = f"{ev.channel} {ev.source}" if ev.source else ev.channel
        desire = Desire(
            Action.KILL,
            f"injection screened in {what} ({ev.detector}, score {ev.score:.2f})"[:512],
            kill_reason="other",
            cause_event_id=ev.event_id,
            expires_at=now + timedelta(seconds=self.settings.kill_ttl_s),
        )
        cmd = self.enforcer.want(ref, "screen", desire, now)
        if cmd is not None:
            em.commands.append(cmd)

    def _count(self, ev: ScreenEvent, em: Emitted) -> None:
        assert ev.source is not None and ev.trace_id is not None
        key = (ev.tenant, ev.channel, ev.source)
        at = ev.ts.timestamp()
        seen = self._seen.pop(key, None) or deque()
        self._seen[key] = seen  # re-inserted: the dict's order is least recently flagged first
        seen.append((at, ev.trace_id))
        while seen and seen[0][0] < at - self.settings.window_s:
            seen.popleft()
        if len(self._seen) > MAX_SOURCES:
            del self._seen[next(iter(self._seen))]
        traces = {t for _, t in seen}
        last = self._alerted.get(key)
        if len(traces) < self.settings.quarantine_traces or (
            last is not None and at - last < self.settings.window_s
        ):
            return
        self._alerted[key] = at
        if len(self._alerted) > MAX_SOURCES:
            del self._alerted[next(iter(self._alerted))]
        tenant, channel, source = key
        em.alerts.append(
            AlertEvent(
                alert_id=new_id(),
                dedup_key=f"screen-source:{tenant}:{channel}:{source}"[:255],
                ts=ev.ts,
                rule="injection_source",
                entity=f"{channel}/{source}"[:512],
                tenant=tenant,
                state=AlertState.ALERT,
                severity=Severity.ERROR,
                summary=(
                    f"quarantine {channel} {source}: its outputs were flagged as injections in "
                    f"{len(traces)} traces within {self.settings.window_s:.0f} s"
                )[:1024],
                figures={
                    "traces": len(traces),
                    "window_s": self.settings.window_s,
                    "last_event_id": ev.event_id,
                },
            )
        )
