"""Screen verdicts in the budget worker: a ``kill`` verdict becomes a trace kill command, and a
source whose outputs are flagged in many distinct traces raises a quarantine alert.

The client's ``kill`` action stops the trace in the process that screened it; the command on
the control topic stops the same trace in every other process (its other agents, its
workers). The kill is decided in **stage two**, by the process that owns the trace (ADR 0011,
addendum): stage one sends the verdict's ``screen_features`` with the trace's deltas, and the
owner's enforcer merges it into the trace's admission lane as source ``screen``, beside that
trace's budgets and the loop detector. One authority for the key, so a per-trace budget
re-evaluated there (a throttle, or its lift) never replaces the screened kill. After a restart
or a partition move the owner re-adopts the screen and loop kills it finds on the control
topic (``adopt_trace_kill``). The kill expires after ``kill_ttl_s``.

A source (a tool or another agent, per tenant and channel) flagged in ``quarantine_traces``
distinct traces within ``window_s`` raises one alert (rule ``injection_source``) on the alerts
topic (stage one, memory); it may raise again once a full window has passed. Nothing here
quarantines by itself: what to do with a poisoned tool is a human's call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agentledger.events import (
    Action,
    AlertEvent,
    AlertState,
    ControlCommand,
    ScopeKind,
    ScreenEvent,
    Severity,
)
from agentledger.streams.worker.budgets import Emitted
from agentledger.streams.worker.enforcer import ISSUER, Desire, Enforcer, new_id
from agentledger.streams.worker.scopes import ScopeRef
from agentledger.wire import AnyEvent

MAX_SOURCES = 10_000  # sources tracked at once (least recently flagged dropped first)
SCREEN = "s"
"""Code of a screen kill among a trace's loop features on the scope-deltas topic."""


def screen_features(ev: AnyEvent) -> list[Any] | None:
    """A kill verdict, compact, for the trace's owner (stage two): laid out like
    ``loops.loop_features``, ``[code, ts, tenant, trace, agent, event id, reason, None, None]``."""
    if not (isinstance(ev, ScreenEvent) and ev.flagged and ev.action == "kill" and ev.trace_id):
        return None
    what = f"{ev.channel} {ev.source}" if ev.source else ev.channel
    reason = f"injection screened in {what} ({ev.detector}, score {ev.score:.2f})"[:512]
    return [SCREEN, ev.ts.timestamp(), ev.tenant, ev.trace_id, ev.agent, ev.event_id, reason, None, None]


def adopt_trace_kill(enforcer: Enforcer, cmd: ControlCommand, now: datetime) -> bool:
    """After a restart or a partition move: take back a screen or loop kill of ours on a trace
    (the wish behind it is not in any policy, so nothing else would), so that a budget of the
    same trace evaluated here merges with it instead of replacing it. True if adopted."""
    if cmd.issued_by != ISSUER or cmd.policy_id is not None or cmd.action is not Action.KILL:
        return False
    if cmd.scope.kind is not ScopeKind.TRACE or not cmd.active(now):
        return False
    kill_reason = cmd.params.kill_reason
    source = "loop" if kill_reason == "loop" else "screen"
    desire = Desire(Action.KILL, cmd.reason, kill_reason=kill_reason, cause_event_id=cmd.cause_event_id,
                    expires_at=cmd.expires_at)  # fmt: skip
    enforcer.adopt(ScopeRef.from_scope(cmd.scope), source, desire)
    return True


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
        """Stage one: count flagged sources (quarantine alerts). Kills are stage two's (``kill``)."""
        em = Emitted()
        for ev in events:
            if isinstance(ev, ScreenEvent) and ev.flagged and ev.source and ev.trace_id:
                self._count(ev, em)
        return em

    def kill(self, f: list[Any], now_s: float) -> Emitted:
        """Stage two, in the process owning the trace: one ``screen_features`` record."""
        _, _, tenant, trace_id, _, event_id, reason, _, _ = f
        now = datetime.fromtimestamp(now_s, UTC)
        ref = ScopeRef(ScopeKind.TRACE, tenant=tenant, trace_id=trace_id)
        desire = Desire(
            Action.KILL,
            reason,
            kill_reason="other",
            cause_event_id=event_id,
            expires_at=now + timedelta(seconds=self.settings.kill_ttl_s),
        )
        cmd = self.enforcer.want(ref, "screen", desire, now)
        return Emitted(commands=[cmd] if cmd is not None else [])

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
