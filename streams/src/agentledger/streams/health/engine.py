"""`agentledger health`: quality drift, canary verdicts and provider failover, as their own
Faust app and consumer group beside the budget worker (a slow detector never delays budget
enforcement, and the two scale apart).

``HealthEngine`` is the whole decision logic without Faust: bytes in (event envelopes, priced
envelopes, timer ticks), records out (``ControlCommand`` for the control topic keyed by
``ControlCommand.key``, ``AlertEvent`` for the alerts topic keyed by ``dedup_key``). ``agentledger.streams.health.app.build_health_app``
wraps it in two Faust agents and a timer. Detector state lives in memory: after a restart
baselines and windows are rebuilt from new data (commands already published stay in force on
the compacted control topic).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentledger.errors import ContractError
from agentledger.events import (
    HEALTH_ISSUER,
    Action,
    AlertEvent,
    AlertState,
    CommandParams,
    ControlCommand,
    ObjectivePolicy,
    QualityEvent,
    Scope,
    ScopeKind,
    Severity,
    SpanEvent,
    SpanKind,
    SpanStatus,
    UsageEvent,
)
from agentledger.streams.healthconfig import HealthConfig
from agentledger.streams.objectivetopic import parse_objective
from agentledger.streams.slo import SloMonitor
from agentledger.wire import decode_envelope, decode_priced, dump

from .canary import CanaryJudge, CanaryVerdict
from .drift import DriftDetector, DriftFinding
from .providers import CircuitState, CircuitTransition, ProviderHealthMonitor

log = logging.getLogger("agentledger.streams.health")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish: ``topic`` is ``"control"`` or ``"alerts"``."""

    topic: str
    key: bytes
    value: bytes


def _now_dt(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


class HealthEngine:
    """Drift + canary + provider health over decoded events; pure apart from the clock."""

    def __init__(self, cfg: HealthConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.clock = cfg, clock
        self.providers = ProviderHealthMonitor(cfg.providers, clock)
        self.canary = CanaryJudge(cfg.canary, clock)
        self.slo = SloMonitor(cfg.objectives, clock=clock)
        self.file_objectives = {o.objective_id: o for o in cfg.objectives}
        self.topic_objectives: dict[str, ObjectivePolicy] = {}  # the objectives topic, by key
        self.slow_cause: dict[tuple[str, str], str] = {}  # latest too-slow call per provider/model
        self.drift: dict[tuple[str, str, str, str], DriftDetector] = {}
        self.failed_over: set[str] = set()  # providers with a failover in force
        self.last_canary_eval = 0.0
        self.counts = {"events": 0, "priced": 0, "bad_records": 0, "commands": 0, "alerts": 0}

    # --- outputs ------------------------------------------------------------------------
    def _command(
        self,
        scope: Scope,
        action: Action,
        reason: str,
        params: CommandParams | None = None,
        cause_event_id: str | None = None,
    ) -> Outgoing:
        cmd = ControlCommand(
            command_id=uuid.uuid4().hex,
            ts=_now_dt(self.clock),
            scope=scope,
            action=action,
            reason=reason[:1024],
            params=params or CommandParams(),
            issued_by=HEALTH_ISSUER,
            cause_event_id=cause_event_id,
        )
        self.counts["commands"] += 1
        log.info("command %s %s: %s", action.value, scope.key, reason)
        return Outgoing("control", cmd.key.encode(), dump(cmd))  # health's own key in the lane

    def _alert(
        self,
        rule: str,
        entity: str,
        tenant: str | None,
        state: AlertState,
        severity: Severity,
        summary: str,
        figures: dict[str, Any],
        command_id: str | None = None,
    ) -> Outgoing:
        dedup = f"{rule}|{entity}"[:255]
        alert = AlertEvent(
            alert_id=uuid.uuid4().hex,
            dedup_key=dedup,
            ts=_now_dt(self.clock),
            rule=rule,
            entity=entity[:512],
            tenant=tenant,
            state=state,
            severity=severity,
            summary=summary[:1024],
            figures={k: v for k, v in figures.items() if isinstance(v, str | int | float | bool)},
            command_id=command_id,
        )
        self.counts["alerts"] += 1
        return Outgoing("alerts", dedup.encode(), dump(alert))

    # --- inputs -------------------------------------------------------------------------
    def on_events(self, raw: bytes) -> list[Outgoing]:
        """One events-topic record. Rejected events are skipped (the budget worker DLQs them)."""
        try:
            decoded = decode_envelope(raw)
        except ContractError:
            self.counts["bad_records"] += 1
            return []
        out: list[Outgoing] = []
        for ev in decoded.events:
            self.counts["events"] += 1
            if isinstance(ev, SpanEvent):
                out.extend(self._on_span(ev))
            elif isinstance(ev, QualityEvent):
                out.extend(self._on_quality(ev))
        return out

    def on_priced(self, raw: bytes) -> list[Outgoing]:
        """One priced-topic record: cost per task for canaries."""
        try:
            _, priced = decode_priced(raw)
        except ContractError:
            self.counts["bad_records"] += 1
            return []
        for pe in priced:
            ev = pe.event
            self.counts["priced"] += 1
            if isinstance(ev, UsageEvent) and pe.priced and ev.agent_version:
                self.canary.record_cost(
                    ev.tenant, ev.agent, ev.agent_version, ev.trace_id, float(pe.cost_usd), ev.ts.timestamp()
                )
        return []

    def tick(self) -> list[Outgoing]:
        """Timer: time alone moves circuits (open -> half-open) and canary verdicts."""
        out: list[Outgoing] = []
        for t in self.providers.tick():
            # a latency opening is the timer's verdict: name the latest too-slow call as its cause
            slow = t.new is CircuitState.OPEN and t.reason.startswith("latency objective")
            out.extend(self._on_circuit(t, self.slow_cause.get((t.provider, t.model)) if slow else None))
        out.extend(self._slo_alerts(self.slo.tick()))
        now = self.clock()
        if now - self.last_canary_eval >= self.cfg.canary.eval_interval_s:
            self.last_canary_eval = now
            for verdict in self.canary.evaluate():
                out.extend(self._on_verdict(verdict))
        return out

    # --- provider health ----------------------------------------------------------------
    def _on_span(self, ev: SpanEvent) -> list[Outgoing]:
        ts = ev.ts.timestamp()
        error = ev.status is SpanStatus.ERROR
        if ev.agent_version:
            self.canary.record_span(ev.tenant, ev.agent, ev.agent_version, error, ts)
        if ev.kind is not SpanKind.LLM or not ev.provider:
            return []
        out = self._slo_alerts(self.slo.on_span(ev))
        slow = self.cfg.providers.latency_objective
        if slow is not None and not error and ev.duration_ms > slow.threshold_ms:
            self.slow_cause[(ev.provider, ev.model or "*")] = ev.event_id
        t = self.providers.record(ev.provider, ev.model or "*", ts, error, ev.duration_ms)
        return out + self._on_circuit(t, ev.event_id) if t is not None else out

    def observe_objective(self, key: str, value: bytes | None) -> list[Outgoing]:
        """One record of the objectives topic: start, change or stop judging that objective.

        The topic's version of an id overrides the policy file's; its tombstone brings the
        file's back (or stops judging). A record that does not validate, or whose key is not
        its ``objective_id``, is logged and changes nothing."""
        if value is None:
            if self.topic_objectives.pop(key, None) is None:
                return []
            log.info("objective %s deleted from the topic", key)
        else:
            obj = parse_objective(value)
            if obj is None or obj.objective_id != key:
                self.counts["bad_records"] += 1
                log.warning("objectives topic: record %r is not a valid objective of that id; ignored", key)
                return []
            self.topic_objectives[key] = obj
        effective = self.topic_objectives.get(key) or self.file_objectives.get(key)
        out = self._slo_alerts(self.slo.set_objective(key, effective))
        judged = effective is not None and effective.enabled
        log.info("objective %s %s", key, "judged" if judged else "not judged")
        return out

    def _slo_alerts(self, alerts: list[AlertEvent]) -> list[Outgoing]:
        self.counts["alerts"] += len(alerts)
        return [Outgoing("alerts", a.dedup_key.encode(), dump(a)) for a in alerts]

    def _routes_away(self, provider: str) -> bool:
        """Should clients of ``provider`` use the fallback now? Open circuits always; half-open
        ones only in ``wait`` mode (in ``resume`` mode live traffic is the probe)."""
        away = {CircuitState.OPEN}
        if self.cfg.providers.half_open == "wait":
            away.add(CircuitState.HALF_OPEN)
        return any(c.state in away for (p, _), c in self.providers.circuits.items() if p == provider)

    def _on_circuit(self, t: CircuitTransition, cause: str | None = None) -> list[Outgoing]:
        """``cause``: the span that moved the circuit (None when time alone did)."""
        figures: dict[str, Any] = {
            "provider": t.provider,
            "model": t.model,
            "calls": t.calls,
            "errors": t.errors,
            "error_rate": round(t.error_rate, 4),
            "circuit": t.new.value,
        }
        if t.p95_ms is not None:
            figures["p95_ms"] = round(t.p95_ms, 1)
        entity = f"{t.provider}/{t.model}"
        fallback = self.cfg.providers.fallbacks.get(t.provider)
        figures["fallback"] = fallback or "none configured"
        log.info("circuit %s: %s -> %s (%s)", entity, t.old.value, t.new.value, t.reason)
        out: list[Outgoing] = []
        command_id = None
        # One failover per provider while any of its models routes away; resume when none does.
        away = self._routes_away(t.provider)
        if fallback and away != (t.provider in self.failed_over):
            scope = Scope(kind=ScopeKind.PROVIDER, provider=t.provider)
            if away:
                self.failed_over.add(t.provider)
                cmd = self._command(
                    scope,
                    Action.FAILOVER,
                    f"{entity} unhealthy: {t.reason}",
                    CommandParams(fallback_provider=fallback),
                    cause_event_id=cause,
                )
                command_id = ControlCommand.model_validate_json(cmd.value).command_id
            else:
                self.failed_over.discard(t.provider)
                why = (
                    f"{entity} half-open: live traffic resumes as the probe (fails over again if it fails)"
                    if t.new is CircuitState.HALF_OPEN
                    else f"{entity} {t.new.value}: {t.reason}"
                )
                cmd = self._command(scope, Action.RESUME, why, cause_event_id=cause)
            out.append(cmd)
        if t.new is CircuitState.OPEN:
            summary = (
                f"{entity} circuit open: {t.reason}; failover to {fallback or '(no fallback configured)'}"
            )
            out.append(
                self._alert(
                    "provider.circuit",
                    entity,
                    None,
                    AlertState.ALERT,
                    Severity.ERROR,
                    summary,
                    figures,
                    command_id,
                )
            )
        elif t.new is CircuitState.CLOSED:
            summary = f"{entity} recovered: {t.reason}"
            out.append(
                self._alert(
                    "provider.circuit", entity, None, AlertState.RESOLVED, Severity.INFO, summary, figures
                )
            )
        return out

    # --- quality drift ------------------------------------------------------------------
    def _on_quality(self, ev: QualityEvent) -> list[Outgoing]:
        version = ev.agent_version or "-"
        if ev.agent_version:
            self.canary.record_quality(
                ev.tenant, ev.agent, ev.agent_version, ev.metric, ev.score, ev.ts.timestamp()
            )
        key = (ev.tenant, ev.agent, version, ev.metric)
        det = self.drift.get(key)
        if det is None:
            det = self.drift[key] = DriftDetector(self.cfg.quality.for_key(ev.tenant, ev.agent, ev.metric))
        finding = det.update(ev.score)
        return self._on_drift(ev, version, det, finding) if finding is not None else []

    def _on_drift(
        self, ev: QualityEvent, version: str, det: DriftDetector, f: DriftFinding
    ) -> list[Outgoing]:
        s = det.s
        entity = f"{ev.tenant}/{ev.agent}@{version}:{ev.metric}"
        figures: dict[str, Any] = {
            "metric": ev.metric,
            "agent_version": version,
            "baseline_mean": round(f.baseline_mean, 4),
            "recent_mean": round(f.recent_mean, 4),
            "change_pct": round(f.change_pct, 2),
            "p_value": f.p_value,
            "recent_n": f.recent_n,
            "scores_seen": f.scores_seen,
        }
        scope = Scope(kind=ScopeKind.AGENT, tenant=ev.tenant, agent=ev.agent)
        out: list[Outgoing] = []
        if f.recovered:
            if s.action == "throttle":
                out.append(
                    self._command(
                        scope, Action.RESUME, f"{ev.metric} back to baseline", cause_event_id=ev.event_id
                    )
                )
            out.append(
                self._alert(
                    "quality.drift",
                    entity,
                    ev.tenant,
                    AlertState.RESOLVED,
                    Severity.INFO,
                    f"{ev.metric} of {ev.agent}@{version} back to baseline ({f.recent_mean:.3f} vs {f.baseline_mean:.3f})",
                    figures,
                )
            )
            return out
        command_id = None
        reason = f"{ev.metric} drifted {f.direction}: {f.recent_mean:.3f} vs baseline {f.baseline_mean:.3f} ({f.change_pct:+.1f} %, p={f.p_value:.2g})"
        if s.action == "throttle":
            out.append(
                self._command(
                    scope,
                    Action.THROTTLE,
                    reason,
                    CommandParams(rate_per_s=s.throttle_rate_per_s),
                    cause_event_id=ev.event_id,
                )
            )
        elif s.action == "rollback" and s.rollback_to:
            out.append(
                self._command(
                    scope,
                    Action.ROLLBACK,
                    reason,
                    CommandParams(target_version=s.rollback_to),
                    cause_event_id=ev.event_id,
                )
            )
        if out:
            command_id = ControlCommand.model_validate_json(out[0].value).command_id
        out.append(
            self._alert(
                "quality.drift",
                entity,
                ev.tenant,
                AlertState.ALERT,
                Severity.WARNING,
                f"{ev.agent}@{version}: {reason}",
                figures,
                command_id,
            )
        )
        return out

    # --- canary -------------------------------------------------------------------------
    def _on_verdict(self, v: CanaryVerdict) -> list[Outgoing]:
        entity = f"{v.tenant}/{v.agent}@{v.canary}"
        figures: dict[str, Any] = {**v.figures, "verdict": v.verdict}
        summary = f"canary {v.agent}@{v.canary} vs {v.baseline}: {v.verdict} ({'; '.join(v.reasons)})"
        log.info("%s", summary)
        if v.verdict == "rollback":
            scope = Scope(kind=ScopeKind.AGENT, tenant=v.tenant, agent=v.agent)
            cmd = self._command(scope, Action.ROLLBACK, summary, CommandParams(target_version=v.baseline))
            command_id = ControlCommand.model_validate_json(cmd.value).command_id
            alert = self._alert(
                "canary.verdict",
                entity,
                v.tenant,
                AlertState.ALERT,
                Severity.ERROR,
                summary,
                figures,
                command_id,
            )
            return [cmd, alert]
        if v.verdict == "promote":
            return [
                self._alert(
                    "canary.verdict", entity, v.tenant, AlertState.WARN, Severity.INFO, summary, figures
                )
            ]
        return [
            self._alert("canary.verdict", entity, v.tenant, AlertState.OK, Severity.INFO, summary, figures)
        ]
