"""``SloMonitor``: the health worker's hook, called once per span and on its timer.

Every LLM span (one with a provider) is counted, in event time, for each enabled objective whose
selector matches it, under the entity the objective is kept ``per``. Each entity keeps its own
event time (the latest of its spans: partitions consumed at different paces never make one
entity's spans look stale to another's) and its rules are evaluated there, at most every
``eval_every_s`` of event time, and on every tick, when its event time is moved on by the wall
clock elapsed since its last span, so a silent entity still resolves. Fire and resolve become ``AlertEvent`` for the existing alerts topic:
``rule=slo.burn_rate``, ``dedup_key=slo.burn_rate|<objective>:<entity>:<rule name>``.

Each entity belongs to an *owner*, the state key that saves it in the health worker: the agent
(``(tenant, agent)``) for objectives kept per agent or agent version, the provider for those kept
per provider or model. ``dump_owner`` / ``load_owner`` / ``drop_owner`` hand an owner's windows,
event time and burn state (firing, since when, the alert id that fired) out and back, so a
restarted worker or a partition's next owner goes on where the last one stopped; ``changed``
names the owners whose state moved without a record (the timer's verdicts and pruning).
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentledger.events import (
    AlertEvent,
    AlertState,
    BurnRateRule,
    ObjectiveKind,
    ObjectivePolicy,
    Severity,
    SpanEvent,
    SpanKind,
    SpanStatus,
)

from .burn import BurnState, BurnVerdict, RuleFigures, evaluate_rule, rule_figures
from .counts import SloCounts, WindowFigures

RULE = "slo.burn_rate"
MAX_SKEW_S = 60.0
PRUNE_EVERY_S = 60.0  # a span stamped further in the future than this does not move event time

# Stage one's counts of provider objectives, per provider (the providers-topic key):
# (objective_id, entity, second) -> [latest ts in that second, good, bad]
SloTallies = dict[str, dict[tuple[str, str, int], list[float]]]

# The state key an entity is saved under: (tenant, agent) or a provider.
Owner = tuple[str, str] | str


def matches(obj: ObjectivePolicy, ev: SpanEvent) -> bool:
    s = obj.selector
    pairs = (
        (ev.tenant, s.tenant),
        (ev.agent, s.agent),
        (ev.agent_version or "", s.agent_version),
        (ev.workflow or "", s.workflow),
        (ev.provider or "", s.provider),
        (ev.model or "", s.model),
    )
    return all(fnmatch.fnmatchcase(v, p) for v, p in pairs)


def entity_of(obj: ObjectivePolicy, ev: SpanEvent) -> str:
    """The entity an objective is kept for, from one span."""
    per = obj.selector.per
    if per == "agent":
        return f"{ev.tenant}/{ev.agent}"
    if per == "agent_version":
        return f"{ev.tenant}/{ev.agent}@{ev.agent_version or '-'}"
    if per == "provider":
        return ev.provider or "-"
    return f"{ev.provider or '-'}/{ev.model or '*'}"


def owner_of(obj: ObjectivePolicy, ev: SpanEvent) -> Owner:
    """The state key that saves an objective's entity of ``ev``: its agent or its provider."""
    if obj.selector.per.startswith("agent"):
        return (ev.tenant, ev.agent)
    return ev.provider or "-"


def digest(obj: ObjectivePolicy) -> str:
    """A short fingerprint of an objective's definition: saved counts are used only by the
    same definition that counted them."""
    return hashlib.sha256(obj.model_dump_json().encode()).hexdigest()[:16]


def classify(obj: ObjectivePolicy, ev: SpanEvent) -> bool | None:
    """Good (True), bad (False) or not counted (None: a failed call has no latency to judge)."""
    failed = ev.status is SpanStatus.ERROR
    if obj.kind is ObjectiveKind.AVAILABILITY:
        return not failed
    if failed:
        return None
    assert obj.threshold_ms is not None  # the contract's validator
    return ev.duration_ms <= obj.threshold_ms


@dataclass(slots=True)
class _Tracked:
    counts: SloCounts
    tenant: str | None
    event_now: float  # the latest event time of this entity's spans
    wall_at: float  # the wall clock when event_now last moved
    owner: Owner
    last_eval: float = float("-inf")

    def now(self, wall: float) -> float:
        return self.event_now + max(0.0, wall - self.wall_at)


class SloMonitor:
    """Objectives' counts and burn-rate state for every entity; pure apart from the clock."""

    def __init__(
        self,
        objectives: Sequence[ObjectivePolicy],
        bucket_s: int = 60,
        eval_every_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.objectives = {o.objective_id: o for o in objectives if o.enabled}
        self.bucket_s, self.eval_every_s, self.clock = bucket_s, eval_every_s, clock
        self.tracked: dict[tuple[str, str], _Tracked] = {}
        self.states: dict[tuple[str, str, str], BurnState] = {}
        self.by_owner: dict[Owner, set[tuple[str, str]]] = {}
        self.changed: set[Owner] = set()  # owners whose state moved on the timer or a change
        self.pending: list[AlertEvent] = []  # resolves found on loading, sent by the next tick
        self.last_prune = float("-inf")
        self._match_cache: dict[tuple[str | None, ...], list[ObjectivePolicy]] = {}
        self.longest = 0
        self._objectives_changed()

    def _objectives_changed(self) -> None:
        self._match_cache.clear()
        self.longest = max((r.long_window_s for o in self.objectives.values() for r in o.alerts), default=0)

    def set_objective(self, objective_id: str, obj: ObjectivePolicy | None) -> list[AlertEvent]:
        """Start, change or stop judging an objective while running (None or disabled: stop).

        The same definition again changes nothing. A changed or stopped one forgets its counts
        (they were counted by the old rule) and resolves the alerts it had firing, so none is
        left open for an objective that no longer says so."""
        if obj is not None and not obj.enabled:
            obj = None
        old = self.objectives.get(objective_id)
        if old == obj:
            return []
        out: list[AlertEvent] = []
        if old is not None:
            wall = self.clock()
            for key in [k for k in self.tracked if k[0] == objective_id]:
                t = self._untrack(key)
                now = t.now(wall)
                for rule in old.alerts:
                    state = self.states.pop((*key, rule.name), None)
                    if state is not None and state.firing:
                        why = "objective deleted" if obj is None else "objective changed: counting anew"
                        out.append(self._alert(old, key, t, rule, now, False, why, None, state))
            del self.objectives[objective_id]
        if obj is not None:
            self.objectives[objective_id] = obj
        self._objectives_changed()
        return out

    def on_span(self, ev: SpanEvent, deferred: SloTallies | None = None) -> list[AlertEvent]:
        """Count one span for every objective it matches and judge the entities it moved.

        ``deferred`` (stage one of the two-stage health worker): objectives kept ``per:
        provider`` or ``model`` are counted into it instead of judged here, to be added
        where every partition's calls to that provider meet (``on_counts``)."""
        if not self.objectives or ev.kind is not SpanKind.LLM or not ev.provider:
            return []
        ts = ev.ts.timestamp()
        wall = self.clock()
        out: list[AlertEvent] = []
        for obj in self._matching(ev):
            good = classify(obj, ev)
            if good is None:
                continue
            entity = entity_of(obj, ev)
            if deferred is not None and obj.selector.per in ("provider", "model"):
                cell = deferred.setdefault(ev.provider, {}).setdefault(
                    (obj.objective_id, entity, int(ts // 1)), [ts, 0, 0]
                )
                cell[0] = max(cell[0], ts)
                cell[1 if good else 2] += 1
                continue
            tenant = ev.tenant if obj.selector.per.startswith("agent") else None
            out.extend(self._count(obj, entity, tenant, ts, good, 1, wall, owner_of(obj, ev)))
        return out

    def on_counts(
        self, objective_id: str, entity: str, ts: float, good: int, bad: int, owner: str | None = None
    ) -> list[AlertEvent]:
        """Add calls counted elsewhere (stage one's ``deferred`` tallies) for one objective and
        entity at event time ``ts``, then judge the entity as ``on_span`` does. Counts of an
        objective not judged here (deleted or disabled meanwhile) are dropped. ``owner``: the
        provider (default: the entity up to its first ``/``)."""
        obj = self.objectives.get(objective_id)
        if obj is None or good < 0 or bad < 0 or good + bad == 0:
            return []
        wall = self.clock()
        owner = owner if owner is not None else entity.split("/", 1)[0]
        out = self._count(obj, entity, None, ts, True, good, wall, owner, evaluate=bad == 0)
        if bad:
            out.extend(self._count(obj, entity, None, ts, False, bad, wall, owner))
        return out

    def _track(self, key: tuple[str, str], t: _Tracked) -> _Tracked:
        self.tracked[key] = t
        self.by_owner.setdefault(t.owner, set()).add(key)
        return t

    def _untrack(self, key: tuple[str, str]) -> _Tracked:
        t = self.tracked.pop(key)
        keys = self.by_owner.get(t.owner)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.by_owner[t.owner]
        self.changed.add(t.owner)
        return t

    def _count(
        self,
        obj: ObjectivePolicy,
        entity: str,
        tenant: str | None,
        ts: float,
        good: bool,
        n: int,
        wall: float,
        owner: Owner,
        evaluate: bool = True,
    ) -> list[AlertEvent]:
        """Add ``n`` good or bad calls at ``ts`` to an entity, move its event time and judge it
        when due (at most every ``eval_every_s``)."""
        if n <= 0:
            return []
        key = (obj.objective_id, entity)
        t = self.tracked.get(key)
        if t is None:
            if tenant is None and "*" not in obj.selector.tenant:
                tenant = obj.selector.tenant
            t = self._track(
                key, _Tracked(SloCounts(self.bucket_s), tenant, min(ts, wall + MAX_SKEW_S), wall, owner)
            )
        t.counts.add(ts, good, n)
        if t.event_now < ts <= wall + MAX_SKEW_S:
            t.event_now, t.wall_at = ts, wall
        now = t.event_now
        if evaluate and ts >= now - self.longest and now - t.last_eval >= self.eval_every_s:
            return self._evaluate(obj, key, t, now)
        return []

    def _matching(self, ev: SpanEvent) -> list[ObjectivePolicy]:
        """The objectives counting ``ev`` (remembered per distinct set of names)."""
        names = (ev.tenant, ev.agent, ev.agent_version, ev.workflow, ev.provider, ev.model)
        found = self._match_cache.get(names)
        if found is None:
            if len(self._match_cache) >= 10_000:
                self._match_cache.clear()
            found = self._match_cache[names] = [o for o in self.objectives.values() if matches(o, ev)]
        return found

    def tick(self) -> list[AlertEvent]:
        """Timer: evaluate every entity at event time now; once a minute forget the buckets no
        window reaches and the entities left with none (and no alert in force)."""
        wall = self.clock()
        prune = wall - self.last_prune >= PRUNE_EVERY_S
        out: list[AlertEvent] = self.pending
        self.pending = []
        for key, t in self.tracked.items():
            now = t.now(wall)
            obj = self.objectives[key[0]]
            out.extend(self._evaluate(obj, key, t, now))
            if prune:
                held = len(t.counts.fine) + len(t.counts.hourly)
                t.counts.prune(now, self.longest + self.bucket_s, obj.window_days * 86400 + 3600)
                if len(t.counts.fine) + len(t.counts.hourly) != held:
                    self.changed.add(t.owner)
        if prune:
            self.last_prune = wall
            for key in [k for k, t in self.tracked.items() if not t.counts.hourly]:
                obj = self.objectives[key[0]]
                if not any(self.states.get((*key, r.name), BurnState()).firing for r in obj.alerts):
                    self._untrack(key)
                    for r in obj.alerts:
                        self.states.pop((*key, r.name), None)
        return out

    def attainment(self, objective_id: str, entity: str) -> WindowFigures | None:
        """Good/total over the objective's whole window, at event time now."""
        t = self.tracked.get((objective_id, entity))
        if t is None:
            return None
        obj = self.objectives[objective_id]
        return t.counts.window(t.now(self.clock()), obj.window_days * 86400, obj.target)

    def _evaluate(
        self, obj: ObjectivePolicy, key: tuple[str, str], t: _Tracked, now: float
    ) -> list[AlertEvent]:
        t.last_eval = now
        out: list[AlertEvent] = []
        for rule in obj.alerts:
            state = self.states.setdefault((*key, rule.name), BurnState())
            figures = rule_figures(t.counts, rule, now, obj.target)
            was = (state.firing, state.clear_since)
            verdict = evaluate_rule(state, rule, figures, now)
            if (state.firing, state.clear_since) != was:
                self.changed.add(t.owner)
            if verdict is None:
                continue
            fire = verdict is BurnVerdict.FIRE
            burn = (
                f"budget burning {figures.long.burn_rate:.1f}x over {rule.long_window_s}s and "
                f"{figures.short.burn_rate:.1f}x over {rule.short_window_s}s (rule {rule.name} at {rule.burn_rate}x)"
            )
            why = burn if fire else f"burn rate back under {rule.burn_rate}x"
            out.append(self._alert(obj, key, t, rule, now, fire, why, figures, state))
        return out

    def _alert(
        self,
        obj: ObjectivePolicy,
        key: tuple[str, str],
        t: _Tracked,
        rule: BurnRateRule,
        now: float,
        fire: bool,
        why: str,
        figures: RuleFigures | None,
        state: BurnState,
    ) -> AlertEvent:
        """The alert of a fire (its id kept in ``state``) or of a resolve (named after the fire
        it ends: a resolve published again after a crash is the same alert)."""
        whole = t.counts.window(now, obj.window_days * 86400, obj.target)
        entity = f"{key[0]}:{key[1]}:{rule.name}"
        dedup_key = f"{RULE}|{entity}"[:255]
        if fire:
            state.alert_id = hashlib.sha256(f"{dedup_key}|{now:.6f}".encode()).hexdigest()[:32]
            alert_id = state.alert_id
        else:
            alert_id = f"{state.alert_id}-resolved" if state.alert_id else uuid.uuid4().hex
        what = f"{obj.kind.value} objective {obj.objective_id} ({obj.target:.4g}"
        what += f" within {obj.threshold_ms:.0f} ms)" if obj.threshold_ms else ")"
        summary = f"{key[1]}: {what} {why}"
        if whole.attainment is not None:
            summary += (
                f"; {whole.attainment:.2%} good over {obj.window_days} d, {whole.budget_left:.0%} budget left"
            )
        if figures is None:
            figures = rule_figures(t.counts, rule, now, obj.target)
        extra: dict[str, str] = {}
        if not fire and state.alert_id:
            extra["fired_alert_id"] = state.alert_id
        return AlertEvent(
            alert_id=alert_id,
            dedup_key=dedup_key,
            ts=datetime.fromtimestamp(now, UTC),
            rule=RULE,
            entity=entity[:512],
            tenant=t.tenant,
            state=AlertState.ALERT if fire else AlertState.RESOLVED,
            severity=rule.severity if fire else Severity.INFO,
            summary=summary[:1024],
            figures={
                "objective_id": obj.objective_id,
                "kind": obj.kind.value,
                "target": obj.target,
                "alert_rule": rule.name,
                "burn_rate_threshold": rule.burn_rate,
                "burn_rate_long": round(figures.long.burn_rate, 3),
                "burn_rate_short": round(figures.short.burn_rate, 3),
                "calls_long": figures.long.total,
                "bad_long": figures.long.bad,
                "attainment": round(whole.attainment, 6) if whole.attainment is not None else -1.0,
                "budget_left": round(whole.budget_left, 6),
                **extra,
            },
            policy_id=obj.objective_id,
        )

    # --- saved state (one owner's entities, JSON-able) -------------------------------------
    def dump_owner(self, owner: Owner) -> list[dict[str, Any]]:
        """Every entity ``owner`` saves: objective, entity, the definition's digest, tenant,
        event time, last evaluation, window counts (``SloCounts.to_state``) and each rule's
        burn state (``BurnState.to_state``)."""
        out: list[dict[str, Any]] = []
        for key in sorted(self.by_owner.get(owner, ())):
            t, obj = self.tracked[key], self.objectives[key[0]]
            rules = {r.name: st.to_state() for r in obj.alerts if (st := self.states.get((*key, r.name)))}
            out.append(
                {
                    "o": key[0],
                    "e": key[1],
                    "d": digest(obj),
                    "t": t.tenant,
                    "n": t.event_now,
                    "le": t.last_eval if t.last_eval != float("-inf") else None,
                    "c": t.counts.to_state(),
                    "r": rules,
                }
            )
        return out

    def load_owner(self, owner: Owner, saved: list[dict[str, Any]]) -> None:
        """Take back what ``dump_owner`` gave. The entity's event time goes on from the saved
        one (the time the worker was down is not silence: its calls are still to be read).
        Counts of an objective deleted, disabled or changed since they were saved are dropped,
        and the rules they had firing are resolved on the next ``tick``."""
        wall = self.clock()
        for d in saved:
            key = (str(d["o"]), str(d["e"]))
            states = {str(name): BurnState.from_state(st) for name, st in d.get("r", {}).items()}
            obj = self.objectives.get(key[0])
            if obj is None or digest(obj) != d.get("d"):
                why = "objective deleted" if obj is None else "objective changed: counting anew"
                for name, st in states.items():
                    if st.firing:
                        self.pending.append(
                            self._stale_resolve(key, name, d.get("t"), st, float(d["n"]), why)
                        )
                self.changed.add(owner)
                continue
            counts = SloCounts.from_state(d["c"])
            event_now = float(d["n"])
            t = self.tracked.get(key)
            if t is None:
                t = self._track(key, _Tracked(counts, d.get("t"), event_now, wall, owner))
                t.last_eval = float("-inf") if d.get("le") is None else float(d["le"])
            else:  # counted here before it was loaded: both halves count
                t.counts.merge(counts)
                if event_now > t.event_now:
                    t.event_now, t.wall_at = event_now, wall
            for name, st in states.items():
                self.states.setdefault((*key, name), st)

    def drop_owner(self, owner: Owner) -> None:
        """Forget an owner's entities, without alerts (its next holder loads them)."""
        for key in list(self.by_owner.get(owner, ())):
            self._untrack(key)
            for rule in self.objectives[key[0]].alerts:
                self.states.pop((*key, rule.name), None)
        self.changed.discard(owner)

    def _stale_resolve(
        self, key: tuple[str, str], rule: str, tenant: str | None, state: BurnState, now: float, why: str
    ) -> AlertEvent:
        entity = f"{key[0]}:{key[1]}:{rule}"
        figures: dict[str, Any] = {"objective_id": key[0], "alert_rule": rule}
        if state.alert_id:
            figures["fired_alert_id"] = state.alert_id
        return AlertEvent(
            alert_id=f"{state.alert_id}-resolved" if state.alert_id else uuid.uuid4().hex,
            dedup_key=f"{RULE}|{entity}"[:255],
            ts=datetime.fromtimestamp(now, UTC),
            rule=RULE,
            entity=entity[:512],
            tenant=tenant,
            state=AlertState.RESOLVED,
            severity=Severity.INFO,
            summary=f"{key[1]}: objective {key[0]} {why} while the worker was stopped"[:1024],
            figures=figures,
            policy_id=key[0],
        )
