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
topic; it may raise again once a full window has passed. Its verdicts come from every agent
that used it, on any events partition, so the count is kept in **stage two** too: stage one
sends each flagged verdict (``source_flag``) to the scope key
``source/<tenant>/<channel>/<source>``, whose owner keeps the flagged traces in that key's
table value (``Rollup.flags``), replay-checked and saved with the changelog like a trace's
loop state. Nothing here quarantines by itself: what to do with a poisoned tool is a human's
call.
"""

from __future__ import annotations

import bisect
import hashlib
import re
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
from agentledger.streams.worker.rollups import SourceFlags
from agentledger.streams.worker.scopes import ScopeRef
from agentledger.tools import ToolDecision, ToolPolicy, ToolRule, ToolSelector
from agentledger.wire import StageEvent

SCREEN = "s"
"""Code of a screen kill among a trace's loop features on the scope-deltas topic."""


def screen_features(ev: StageEvent) -> list[Any] | None:
    """A kill verdict, compact, for the trace's owner (stage two): laid out like
    ``loops.loop_features``, ``[code, ts, tenant, trace, agent, event id, reason, None, None]``."""
    if not (isinstance(ev, ScreenEvent) and ev.flagged and ev.action == "kill" and ev.trace_id):
        return None
    what = f"{ev.channel} {ev.source}" if ev.source else ev.channel
    reason = f"injection screened in {what} ({ev.detector}, score {ev.score:.2f})"[:512]
    return [SCREEN, ev.ts.timestamp(), ev.tenant, ev.trace_id, ev.agent, ev.event_id, reason, None, None]


def source_flag(ev: ScreenEvent) -> tuple[str, tuple[str, str, str], list[Any]] | None:
    """A flagged verdict naming its source, for the source's owner (stage two): (scope key,
    (tenant, channel, source), [ts, trace id, event id])."""
    if not (ev.flagged and ev.source and ev.trace_id):
        return None
    key = f"source/{ev.tenant}/{ev.channel}/{ev.source}"
    return key, (ev.tenant, ev.channel, ev.source), [ev.ts.timestamp(), ev.trace_id, ev.event_id]


def quarantine_policy(tenant: str, channel: str, source: str) -> ToolPolicy | None:
    """The tool policy that quarantines a tool for its tenant: deny, on the tools topic, where
    every Guard of the tenant reads it within the enforcement bound, until a human deletes it.
    None for a source that is not a tool (another agent's messages: alert only)."""
    if channel != "tool":
        return None
    pattern = "".join(f"[{c}]" if c in "*?[" else c for c in source)  # fnmatch: this tool only
    if len(pattern) > 128:
        return None
    digest = hashlib.sha256(f"{tenant}\x00{source}".encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9._-]", "-", source)[:80]
    return ToolPolicy(
        policy_id=f"quarantine.{readable}.{digest}",
        selector=ToolSelector(tenant=tenant),
        rules=[ToolRule(tool=pattern, decision=ToolDecision.DENY)],
    )


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
    quarantine_tools: bool = True
    """A quarantined tool is also denied to its tenant (``quarantine_policy``)."""


class ScreenWatch:
    def __init__(self, enforcer: Enforcer, settings: ScreenSettings | None = None) -> None:
        self.enforcer = enforcer
        self.settings = settings or ScreenSettings()

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

    def flagged(self, head: list[Any], rows: list[list[Any]], state: SourceFlags) -> Emitted:
        """Stage two, in the process owning the source: its flagged verdicts of one record
        (``[ts, trace id, event id]`` each) counted into its ``state``; one alert when they span
        ``quarantine_traces`` distinct traces within the window, at most once per window."""
        em = Emitted()
        window = self.settings.window_s
        for at, trace_id, event_id in rows:
            bisect.insort(state.seen, (float(at), str(trace_id)))  # partitions arrive in any order
            newest = state.seen[-1][0]
            while state.seen and state.seen[0][0] < newest - window:
                state.seen.pop(0)
            traces = {t for _, t in state.seen}
            if len(traces) < self.settings.quarantine_traces or (
                state.alerted is not None and at - state.alerted < window
            ):
                continue
            state.alerted = float(at)
            policy = quarantine_policy(*(str(h) for h in head)) if self.settings.quarantine_tools else None
            if policy is not None:
                em.tool_policies.append(policy)
            em.alerts.append(self._alert(head, len(traces), float(at), str(event_id), policy))
        return em

    def _alert(
        self, head: list[Any], traces: int, at: float, event_id: str, policy: ToolPolicy | None
    ) -> AlertEvent:
        tenant, channel, source = (str(h) for h in head)
        figures: dict[str, str | int | float | bool] = {
            "traces": traces, "window_s": self.settings.window_s, "last_event_id": event_id,
        }  # fmt: skip
        done = "a human decides what to do with it"
        if policy is not None:
            figures["tool_policy_id"] = policy.policy_id
            done = (
                f"tool policy {policy.policy_id} now denies it to tenant {tenant}; lift with "
                f"`agentledger tools delete {policy.policy_id}`"
            )
        return AlertEvent(
            alert_id=new_id(),
            dedup_key=f"screen-source:{tenant}:{channel}:{source}"[:255],
            ts=datetime.fromtimestamp(at, UTC),
            rule="injection_source",
            entity=f"{channel}/{source}"[:512],
            tenant=tenant,
            state=AlertState.ALERT,
            severity=Severity.ERROR,
            summary=(
                f"quarantine {channel} {source}: its outputs were flagged as injections in "
                f"{traces} traces within {self.settings.window_s:.0f} s; {done}"
            )[:1024],
            figures=figures,
        )
