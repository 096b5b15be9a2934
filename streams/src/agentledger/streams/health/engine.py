"""`agentledger health`: quality drift, canary verdicts and provider failover, as their own
Faust app and consumer group beside the budget worker (a slow detector never delays budget
enforcement, and the two scale apart).

``HealthEngine`` is the whole decision logic without Faust: bytes in (event envelopes, priced
envelopes, provider observations, timer ticks), records out (``ControlCommand`` for the control
topic keyed by ``ControlCommand.key``, ``AlertEvent`` for the alerts topic keyed by ``dedup_key``, and,
with ``repartition``, provider observations for the providers topic keyed by provider).
``agentledger.streams.health.app.build_health_app`` wraps it in Faust agents and a timer.

Two stages (docs/adr/0012-health-state-and-stages.md). Stage one reads the events and priced
topics (keyed tenant/agent): drift and canary state is per agent, under the table key
``<partition>|a|<tenant>/<agent>``. Each LLM span is folded into one ``Observation`` per
provider/model and second of the record; stage two reads them back from the providers topic
(keyed by provider, so every partition's calls meet) and keeps each provider's circuits under
``<partition>|p|<provider>``. Objectives kept per provider or model ride along: stage one only
counts them (the record's ``slo`` field), stage two adds the counts and judges. SLO windows and
burn state are saved with the key that owns them: the agent's for objectives kept per agent or
agent version, the provider's for those kept per provider or model (field ``slo``). The state of a key holds the last source offset applied (events,
priced) or the last origin offset per source partition (observations): a record replayed after
a crash is skipped for keys whose saved state already has it. ``take_changes`` hands the changed
keys to the caller, who writes them to the changelog before acking the records behind them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

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
from agentledger.rollout import RolloutPolicy
from agentledger.streams.healthconfig import HealthConfig
from agentledger.streams.objectivetopic import parse_objective
from agentledger.streams.slo import SloMonitor, SloTallies
from agentledger.wire import decode_envelope, decode_priced, dump

from .canary import CanaryJudge, CanaryVerdict
from .drift import DriftDetector, DriftFinding
from .keyalerts import FINGERPRINT, KEY_CAUSES, KeyErrorMonitor, KeyTransition
from .providers import CircuitState, CircuitTransition, Observation, ProviderHealthMonitor
from .rollout import RolloutChange, RolloutController

log = logging.getLogger("agentledger.streams.health")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish: ``topic`` is ``"control"``, ``"alerts"`` or ``"providers"``."""

    topic: str
    key: bytes
    value: bytes


def _now_dt(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


class HealthEngine:
    """Drift + canary + provider health over decoded events; pure apart from the clock.

    ``table``: where saved state is read from (``get(key) -> bytes | None`` and ``keys()``;
    the Faust table's store), None for none. ``repartition``: provider observations are
    returned as ``providers`` records (the Faust app) instead of fed to the circuits at once."""

    def __init__(
        self,
        cfg: HealthConfig,
        clock: Callable[[], float] = time.time,
        *,
        table: Any = None,
        repartition: bool = False,
    ) -> None:
        self.cfg, self.clock = cfg, clock
        self.table = table
        self.repartition = repartition
        self.providers = ProviderHealthMonitor(cfg.providers, clock)
        self.keys = KeyErrorMonitor(cfg.providers.keys, clock)
        self.canary = CanaryJudge(cfg.canary, clock)
        self.rollouts = RolloutController(clock, cfg.canary.task_idle_s)
        self.slo = SloMonitor(cfg.objectives, clock=clock)
        self.file_objectives = {o.objective_id: o for o in cfg.objectives}
        self.topic_objectives: dict[str, ObjectivePolicy] = {}  # the objectives topic, by key
        self.slow_cause: dict[tuple[str, str], str] = {}  # latest too-slow call per provider/model
        self.drift: dict[tuple[str, str, str, str], DriftDetector] = {}
        self.drift_of: dict[tuple[str, str], set[tuple[str, str]]] = {}  # agent -> (version, metric)
        self.failed_over: set[str] = set()  # providers with a failover in force
        self.last_canary_eval = 0.0
        self.counts = {
            "events": 0, "priced": 0, "observations": 0, "bad_records": 0, "replayed": 0,
            "commands": 0, "alerts": 0, "states_loaded": 0, "states_written": 0,
        }  # fmt: skip
        # loaded state keys: table key -> (tenant, agent) or provider; offsets applied per key
        self.agent_key: dict[tuple[str, str], str] = {}
        self.provider_key: dict[str, str] = {}
        self.loaded: dict[str, tuple[str, str] | str] = {}
        self.offsets: dict[str, dict[str, int]] = {}
        self.dirty: set[str] = set()
        self.owned: set[int] | None = None  # partitions held; None: all (no Faust)

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

    # --- state ----------------------------------------------------------------------------
    def _saved(self, key: str) -> dict[str, Any] | None:
        raw = self.table.get(key) if self.table is not None else None
        if raw is None:
            return None
        self.counts["states_loaded"] += 1
        # our bytes, or the dict Faust's changelog recovery already decoded them into
        return cast(dict[str, Any], raw if isinstance(raw, dict) else json.loads(raw))

    def _agent(self, tenant: str, agent: str, partition: int) -> str:
        """The table key of an agent's state, loaded from the table on first use."""
        key = self.agent_key.get((tenant, agent))
        if key is not None:
            return key
        key = f"{partition}|a|{tenant}/{agent}"
        saved = self._saved(key)
        self.agent_key[(tenant, agent)] = key
        self.loaded[key] = (tenant, agent)
        self.offsets[key] = {}
        if saved is not None:
            self.offsets[key] = {k: int(v) for k, v in saved.get("o", {}).items()}
            for version, metric, state in saved.get("drift", []):
                settings = self.cfg.quality.for_key(tenant, agent, metric)
                self.drift[(tenant, agent, version, metric)] = DriftDetector.from_state(settings, state)
                self.drift_of.setdefault((tenant, agent), set()).add((version, metric))
            self.canary.load_agent(tenant, agent, saved.get("canary", {}))
            self.slo.load_owner((tenant, agent), saved.get("slo", []))
        return key

    def _provider(self, provider: str, partition: int) -> str:
        key = self.provider_key.get(provider)
        if key is not None:
            return key
        key = f"{partition}|p|{provider}"
        saved = self._saved(key)
        self.provider_key[provider] = key
        self.loaded[key] = provider
        self.offsets[key] = {}
        if saved is not None:
            self.offsets[key] = {k: int(v) for k, v in saved.get("o", {}).items()}
            self.providers.load_provider(provider, saved.get("circuits", {}))
            self.keys.load_provider(provider, saved.get("keys", {}))
            if saved.get("failed_over"):
                self.failed_over.add(provider)
            self.slo.load_owner(provider, saved.get("slo", []))
        return key

    def _dump(self, key: str) -> bytes:
        owner = self.loaded[key]
        if isinstance(owner, tuple):
            tenant, agent = owner
            drift = [
                [v, m, self.drift[(tenant, agent, v, m)].to_state()]
                for v, m in sorted(self.drift_of.get(owner, ()))
            ]
            body: dict[str, Any] = {
                "tenant": tenant, "agent": agent, "o": self.offsets[key], "drift": drift,
                "canary": self.canary.dump_agent(tenant, agent),
            }  # fmt: skip
            if slo := self.slo.dump_owner(owner):
                body["slo"] = slo
        else:
            body = {
                "provider": owner, "o": self.offsets[key], "failed_over": owner in self.failed_over,
                "circuits": self.providers.dump_provider(owner), "keys": self.keys.dump_provider(owner),
            }  # fmt: skip
            if slo := self.slo.dump_owner(owner):
                body["slo"] = slo
        return json.dumps(body, separators=(",", ":")).encode()

    def take_changes(self) -> list[tuple[int, str, bytes]]:
        """(changelog partition, key, value) per state key changed since the last call."""
        for tenant_agent in self.canary.changed:
            key = self.agent_key.get(tenant_agent)
            if key is not None:
                self.dirty.add(key)
        self.canary.changed.clear()
        self._slo_changed()
        out = [(int(k.partition("|")[0]), k, self._dump(k)) for k in sorted(self.dirty) if k in self.loaded]
        self.dirty.clear()
        self.counts["states_written"] += len(out)
        return out

    def _slo_changed(self) -> None:
        """The keys of the owners whose SLO state moved without a record (the timer's verdicts,
        pruning, an objective changed) are to be written."""
        for owner in self.slo.changed:
            key = self.agent_key.get(owner) if isinstance(owner, tuple) else self.provider_key.get(owner)
            if key is not None:
                self.dirty.add(key)
        self.slo.changed.clear()

    def mark_changed(self, keys: list[str]) -> None:
        """Give back keys whose changelog write failed: the next ``take_changes`` has them."""
        self.dirty.update(k for k in keys if k in self.loaded)

    def assigned(self, partitions: set[int]) -> None:
        self.owned = set(partitions) if self.owned is None else self.owned | partitions

    def revoked(self, partitions: set[int]) -> None:
        """Forget the state of partitions this worker lost (their next owner loads it from the
        changelog; unacked records are replayed there)."""
        if self.owned is not None:
            self.owned -= partitions
        for key in [k for k in self.loaded if int(k.partition("|")[0]) in partitions]:
            owner = self.loaded.pop(key)
            self.offsets.pop(key, None)
            self.dirty.discard(key)
            self.slo.drop_owner(owner)
            if isinstance(owner, tuple):
                self.agent_key.pop(owner, None)
                for v, m in self.drift_of.pop(owner, set()):
                    self.drift.pop((*owner, v, m), None)
                self.canary.drop_agent(*owner)
            else:
                self.provider_key.pop(owner, None)
                self.providers.drop_provider(owner)
                self.keys.drop_provider(owner)
                self.failed_over.discard(owner)

    def load_owned(self) -> None:
        """Load every saved key of the partitions held (so time alone can move a circuit or a
        canary whose records have not come since a restart)."""
        if self.table is None:
            return
        for key in list(self.table.keys()):
            part, kind, rest = str(key).split("|", 2)
            if key in self.loaded or (self.owned is not None and int(part) not in self.owned):
                continue
            if kind == "a":
                saved = self._saved(key)
                if saved is not None and "tenant" in saved:
                    self.counts["states_loaded"] -= 1  # counted again by _agent
                    self._agent(saved["tenant"], saved["agent"], int(part))
            elif kind == "p":
                self._provider(rest, int(part))

    def _seen(self, key: str, source: str, offset: int | None) -> bool:
        """Was this record already applied to this key's state (a replay after a crash)?"""
        if offset is None:
            return False
        if self.offsets[key].get(source, -1) >= offset:
            return True
        self.offsets[key][source] = offset
        self.dirty.add(key)
        return False

    # --- inputs -------------------------------------------------------------------------
    def on_events(self, raw: bytes, partition: int = 0, offset: int | None = None) -> list[Outgoing]:
        """One events-topic record. Rejected events are skipped (the budget worker DLQs them)."""
        try:
            decoded = decode_envelope(raw)
        except ContractError:
            self.counts["bad_records"] += 1
            return []
        out: list[Outgoing] = []
        calls: dict[tuple[str, str, int], Observation] = {}
        keycalls: dict[str, dict[str, list[float]]] = {}  # provider -> fingerprint -> [calls, errors, ts]
        slo: SloTallies = {}  # provider objectives' counts for stage two (repartition only)
        fresh: dict[str, bool] = {}
        for ev in decoded.events:
            key = self._agent(ev.tenant, ev.agent, partition)
            if key not in fresh:
                fresh[key] = not self._seen(key, "events", offset)
            if not fresh[key]:
                self.counts["replayed"] += 1
                continue
            self.counts["events"] += 1
            self.dirty.add(key)
            if isinstance(ev, SpanEvent):
                out.extend(self._on_span(ev, calls, keycalls, slo))
            elif isinstance(ev, QualityEvent):
                out.extend(self._on_quality(ev))
            elif isinstance(ev, UsageEvent) and isinstance(fp := ev.attributes.get(FINGERPRINT), str):
                _count_key(keycalls, ev.provider, fp, ev.ts.timestamp(), False)
        if calls or keycalls:
            out.extend(self._provider_calls(calls, partition, offset, keycalls, slo))
        return out

    def on_priced(self, raw: bytes, partition: int = 0, offset: int | None = None) -> list[Outgoing]:
        """One priced-topic record: cost per task for canaries."""
        try:
            _, priced = decode_priced(raw)
        except ContractError:
            self.counts["bad_records"] += 1
            return []
        fresh: dict[str, bool] = {}
        for pe in priced:
            ev = pe.event
            key = self._agent(ev.tenant, ev.agent, partition)
            if key not in fresh:
                fresh[key] = not self._seen(key, "priced", offset)
            if not fresh[key]:
                self.counts["replayed"] += 1
                continue
            self.counts["priced"] += 1
            if isinstance(ev, UsageEvent) and pe.priced and ev.agent_version:
                self.canary.record_cost(
                    ev.tenant, ev.agent, ev.agent_version, ev.trace_id, float(pe.cost_usd), ev.ts.timestamp()
                )
                if self.rollouts.runs:
                    self.rollouts.record_cost(
                        ev.tenant,
                        ev.agent,
                        ev.agent_version,
                        ev.trace_id,
                        float(pe.cost_usd),
                        ev.ts.timestamp(),
                    )
        return []

    def on_observations(self, raw: bytes, partition: int = 0) -> list[Outgoing]:
        """One providers-topic record (stage two): a source record's calls to one provider."""
        try:
            body = json.loads(raw)
            provider = str(body["provider"])
            src_part, src_off = (int(x) for x in body["origin"])
            obs = [(str(m), Observation.from_json(o)) for m, o in body["calls"]]
            keys = {str(fp): [float(x) for x in v[:3]] for fp, v in body.get("keys", {}).items()}
            slo = [(str(o), str(e), float(ts), int(g), int(b)) for o, e, ts, g, b in body.get("slo", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            self.counts["bad_records"] += 1
            return []
        return self._observe(provider, obs, partition, (src_part, src_off), keys, slo)

    def _provider_calls(
        self,
        calls: dict[tuple[str, str, int], Observation],
        partition: int,
        offset: int | None,
        keycalls: dict[str, dict[str, list[float]]] | None = None,
        slo: SloTallies | None = None,
    ) -> list[Outgoing]:
        keycalls = keycalls or {}
        slo = slo or {}
        by_provider: dict[str, list[tuple[str, Observation]]] = {p: [] for p in keycalls}
        for (provider, model, _), obs in calls.items():
            by_provider.setdefault(provider, []).append((model, obs))
        out: list[Outgoing] = []
        for provider, models in by_provider.items():
            keys = keycalls.get(provider, {})
            if self.repartition:
                body: dict[str, Any] = {
                    "provider": provider,
                    "origin": [partition, -1 if offset is None else offset],
                    "calls": [[m, o.to_json()] for m, o in models],
                }
                if keys:
                    body["keys"] = keys
                if tallies := slo.get(provider):
                    body["slo"] = [[o, e, c[0], int(c[1]), int(c[2])] for (o, e, _), c in tallies.items()]
                value = json.dumps(body, separators=(",", ":")).encode()
                out.append(Outgoing("providers", provider.encode(), value))
            else:
                out.extend(self._observe(provider, models, 0, None, keys))
        return out

    def _observe(
        self,
        provider: str,
        obs: list[tuple[str, Observation]],
        partition: int,
        origin: tuple[int, int] | None,
        keys: dict[str, list[float]] | None = None,
        slo: list[tuple[str, str, float, int, int]] | None = None,
    ) -> list[Outgoing]:
        key = self._provider(provider, partition)
        if origin is not None and origin[1] >= 0 and self._seen(key, str(origin[0]), origin[1]):
            self.counts["replayed"] += 1
            return []
        self.counts["observations"] += 1
        self.dirty.add(key)
        out: list[Outgoing] = []
        for model, o in obs:
            if o.slow_cause is not None:
                self.slow_cause[(provider, model)] = o.slow_cause
            t = self.providers.observe(provider, model, o)
            if t is not None:
                out.extend(self._on_circuit(t, o.cause))
        for fp, (n, errors, ts) in (keys or {}).items():
            kt = self.keys.observe(provider, fp, ts, int(n), int(errors))
            if kt is not None:
                out.append(self._on_key(kt))
        for objective_id, entity, ts, good, bad in slo or ():
            out.extend(self._slo_alerts(self.slo.on_counts(objective_id, entity, ts, good, bad, provider)))
        return out

    def tick(self) -> list[Outgoing]:
        """Timer: time alone moves circuits (open -> half-open) and canary verdicts."""
        self.load_owned()
        out: list[Outgoing] = []
        for t in self.providers.tick():
            key = self.provider_key.get(t.provider)
            if key is not None:
                self.dirty.add(key)
            # a latency opening is the timer's verdict: name the latest too-slow call as its cause
            slow = t.new is CircuitState.OPEN and t.reason.startswith("latency objective")
            out.extend(self._on_circuit(t, self.slow_cause.get((t.provider, t.model)) if slow else None))
        out.extend(self._slo_alerts(self.slo.tick()))
        self._slo_changed()
        for kt in self.keys.tick():
            key = self.provider_key.get(kt.provider)
            if key is not None:
                self.dirty.add(key)
            out.append(self._on_key(kt))
        now = self.clock()
        if now - self.last_canary_eval >= self.cfg.canary.eval_interval_s:
            self.last_canary_eval = now
            for verdict in self.canary.evaluate():
                if self.rollouts.manages(verdict.tenant, verdict.agent):
                    continue  # a rollout decides this agent's routing (its controller judges it)
                out.extend(self._on_verdict(verdict))
            for change in self.rollouts.evaluate(self._holds):
                out.extend(self._on_rollout(change))
        return out

    # --- rollouts -----------------------------------------------------------------------
    def _holds(self, tenant: str, agent: str) -> bool:
        """Whether this process judges the agent: it holds the agent's partition (one process,
        or no Faust: every agent). An agent no event has reached here yet is not ours yet."""
        if self.owned is None:
            return True
        key = self.agent_key.get((tenant, agent))
        return key is not None and int(key.partition("|")[0]) in self.owned

    def observe_rollout(self, key: str, value: bytes | None) -> None:
        """A record of the compacted rollouts topic (key ``tenant/agent``)."""
        if value is None:
            self.rollouts.delete(key)
            return
        try:
            policy = RolloutPolicy.model_validate_json(value)
        except ValueError:
            self.counts["bad_records"] += 1
            log.warning("rollouts topic: record %r is not a valid rollout; ignored", key)
            return
        self.rollouts.upsert(policy)

    def observe_route(self, value: bytes) -> None:
        """A route command read back from the control topic: a restarted controller resumes."""
        try:
            cmd = ControlCommand.model_validate_json(value)
        except ValueError:
            return
        if cmd.action is Action.ROUTE and cmd.issued_by == HEALTH_ISSUER:
            self.rollouts.adopt(cmd)

    def _on_rollout(self, ch: RolloutChange) -> list[Outgoing]:
        p = ch.policy
        scope = Scope(kind=ScopeKind.AGENT, tenant=p.tenant, agent=p.agent)
        params = CommandParams(
            target_version=p.candidate, baseline_version=p.baseline, weight=ch.weight, rollout_id=p.rollout_id,
            step=ch.step,
        )  # fmt: skip
        cmd = self._command(scope, Action.ROUTE, ch.reason, params)
        command_id = ControlCommand.model_validate_json(cmd.value).command_id
        bad = ch.status == "rolled_back"
        alert = self._alert(
            "rollout", f"{p.tenant}/{p.agent}@{p.candidate}", p.tenant,
            AlertState.ALERT if bad else AlertState.OK, Severity.ERROR if bad else Severity.INFO,
            f"rollout {p.rollout_id} of {p.agent}: {ch.reason}", dict(ch.evidence), command_id,
        )  # fmt: skip
        return [cmd, alert]

    # --- provider health ----------------------------------------------------------------
    def _on_span(
        self,
        ev: SpanEvent,
        calls: dict[tuple[str, str, int], Observation],
        keycalls: dict[str, dict[str, list[float]]] | None = None,
        slo: SloTallies | None = None,
    ) -> list[Outgoing]:
        ts = ev.ts.timestamp()
        error = ev.status is SpanStatus.ERROR
        fp = ev.attributes.get(FINGERPRINT)
        if keycalls is not None and isinstance(fp, str) and ev.provider:
            _count_key(keycalls, ev.provider, fp, ts, error)
            if ev.attributes.get("agentledger.error.cause") in KEY_CAUSES:
                return []  # one key refused, the call went on with the next: not the provider's nor the agent's failure
        if ev.agent_version:
            self.canary.record_span(ev.tenant, ev.agent, ev.agent_version, error, ts)
            if self.rollouts.runs:
                self.rollouts.record_span(ev.tenant, ev.agent, ev.agent_version, error)
        if ev.kind is not SpanKind.LLM or not ev.provider:
            return []
        # with repartition, provider objectives are judged in stage two, where all calls meet
        out = self._slo_alerts(self.slo.on_span(ev, slo if self.repartition and slo is not None else None))
        slow = self.cfg.providers.latency_objective
        within = None if slow is None else ev.duration_ms <= slow.threshold_ms
        bucket = (ev.provider, ev.model or "*", int(ts))
        obs = calls.get(bucket)
        if obs is None:
            obs = calls[bucket] = Observation(ts)
        obs.add(ts, error, ev.duration_ms, ev.event_id, within)
        return out

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

    def _on_key(self, t: KeyTransition) -> Outgoing:
        """A key's errors spiked (or settled): one alert naming provider and fingerprint."""
        figures: dict[str, Any] = {
            "provider": t.provider,
            "fingerprint": t.fingerprint,
            "calls": t.calls,
            "errors": t.errors,
            "error_rate": round(t.error_rate, 4),
            "window_s": self.cfg.providers.keys.window_s,
        }
        entity = f"{t.provider}/{t.fingerprint}"
        if t.alerting:
            summary = (
                f"{t.provider} key {t.fingerprint}: {t.errors} of {t.calls} calls failed in the last "
                f"{self.cfg.providers.keys.window_s:g}s; check or rotate it "
                f"(`agentledger keys rotate --provider {t.provider} --fingerprint {t.fingerprint}`)"
            )
            return self._alert(
                "provider.key", entity, None, AlertState.ALERT, Severity.ERROR, summary, figures
            )
        summary = f"{t.provider} key {t.fingerprint}: errors back under the line ({t.errors} of {t.calls})"
        return self._alert("provider.key", entity, None, AlertState.RESOLVED, Severity.INFO, summary, figures)

    # --- quality drift ------------------------------------------------------------------
    def _on_quality(self, ev: QualityEvent) -> list[Outgoing]:
        version = ev.agent_version or "-"
        if ev.agent_version:
            self.canary.record_quality(
                ev.tenant, ev.agent, ev.agent_version, ev.metric, ev.score, ev.ts.timestamp()
            )
            if self.rollouts.runs:
                self.rollouts.record_quality(ev.tenant, ev.agent, ev.agent_version, ev.metric, ev.score)
        key = (ev.tenant, ev.agent, version, ev.metric)
        det = self.drift.get(key)
        if det is None:
            det = self.drift[key] = DriftDetector(self.cfg.quality.for_key(ev.tenant, ev.agent, ev.metric))
            self.drift_of.setdefault((ev.tenant, ev.agent), set()).add((version, ev.metric))
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


def _count_key(
    keycalls: dict[str, dict[str, list[float]]], provider: str, fp: str, ts: float, error: bool
) -> None:
    row = keycalls.setdefault(provider, {}).setdefault(fp, [0.0, 0.0, ts])
    row[0] += 1
    row[1] += 1 if error else 0
    row[2] = max(row[2], ts)
