"""Budget evaluation: each (policy, scope) pair has a level (ok, soft threshold i, hard), and
every level change produces an alert and, through the ``Enforcer``, at most one command.

A level is recomputed from the current window's spend each time, so a resume follows
naturally when the window rolls over (calendar) or slides (rolling), or when the policy is
raised, disabled or deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from agentledger.events import (
    Action,
    AlertEvent,
    AlertState,
    BudgetState,
    BudgetStatus,
    ControlCommand,
    LimitUnit,
    Policy,
    Severity,
)
from agentledger.streams.worker.enforcer import Desire, Enforcer, new_id
from agentledger.streams.worker.rollups import Totals, window_bounds
from agentledger.streams.worker.scopes import ScopeRef
from agentledger.tools import ToolPolicy

STATUS_MIN_INTERVAL_S = 1.0
"""A ``BudgetStatus`` is published at most once a second per key (level changes at once)."""
IDLE_PAIR_S = 3600.0
"""A pair at level ok and untouched this long is forgotten (its rollup stays)."""

SpendOf = Callable[[Policy, ScopeRef, float], Totals]


@dataclass(slots=True)
class Pair:
    policy_id: str
    ref: ScopeRef
    level: int = 0
    spend: Decimal = Decimal(0)
    touched_s: float = 0.0
    published_s: float = -1e18
    published: tuple[Decimal, int, Decimal] | None = None


@dataclass(slots=True)
class Emitted:
    commands: list[ControlCommand] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    statuses: list[BudgetStatus] = field(default_factory=list)
    tool_policies: list[ToolPolicy] = field(default_factory=list)  # quarantines (worker.screens)

    def extend(self, other: Emitted) -> None:
        self.commands += other.commands
        self.alerts += other.alerts
        self.statuses += other.statuses
        self.tool_policies += other.tool_policies


def spend_in_unit(p: Policy, t: Totals) -> Decimal:
    return t.cost if p.unit is LimitUnit.USD else Decimal(t.tokens)


def level_of(p: Policy, spend: Decimal) -> int:
    """0 = under every threshold, i = the i-th soft threshold crossed, len+1 = hard limit."""
    if not p.enabled:
        return 0
    if spend >= p.budget_limit:
        return len(p.thresholds) + 1
    level = 0
    for i, th in enumerate(p.thresholds, start=1):
        if spend >= p.budget_limit * Decimal(str(th.at)):
            level = i
    return level


def boundary(p: Policy, level: int) -> Decimal:
    if level > len(p.thresholds):
        return p.budget_limit
    return p.budget_limit * Decimal(str(p.thresholds[level - 1].at))


def desire_of(p: Policy, level: int, ref: ScopeRef, spend: Decimal, cause: str | None) -> Desire | None:
    hard = level > len(p.thresholds)
    what = f"{p.unit.value} {spend} of {p.budget_limit} ({p.window.value}) on {ref.key}"
    if hard and p.hard_action == "kill":
        return Desire(Action.KILL, f"budget {p.policy_id}: {what}", p.policy_id, kill_reason="budget",
                      cause_event_id=cause)  # fmt: skip
    if hard and p.hard_action == "throttle":
        return Desire(Action.THROTTLE, f"budget {p.policy_id}: {what}", p.policy_id, p.hard_rate_per_s,
                      cause_event_id=cause)  # fmt: skip
    rates = [th.rate_per_s for th in p.thresholds[: min(level, len(p.thresholds))] if th.action == "throttle"]
    if rates and rates[-1] is not None:
        return Desire(Action.THROTTLE, f"budget {p.policy_id} soft limit: {what}", p.policy_id, rates[-1],
                      cause_event_id=cause)  # fmt: skip
    return None


def downgrade_of(p: Policy, level: int, ref: ScopeRef, spend: Decimal, cause: str | None) -> Desire | None:
    """The downgrade in force at ``level``: the highest downgrade threshold crossed (it holds
    at the higher levels too, the hard limit included, until the level drops under it)."""
    crossed = [th for th in p.thresholds[: min(level, len(p.thresholds))] if th.action == "downgrade"]
    if not crossed:
        return None
    th = crossed[-1]
    what = f"{p.unit.value} {spend} of {p.budget_limit} ({p.window.value}) on {ref.key}"
    return Desire(
        Action.DOWNGRADE, f"budget {p.policy_id} soft limit {th.at:g}: {what}; calls go to {th.model}",
        p.policy_id, cause_event_id=cause, model=th.model,
        from_models=tuple(th.from_models) if th.from_models is not None else None,
    )  # fmt: skip


def state_of(p: Policy, level: int) -> BudgetState:
    if level == 0:
        return BudgetState.OK
    if level > len(p.thresholds):
        return {"kill": BudgetState.KILLED, "throttle": BudgetState.THROTTLED}.get(
            p.hard_action, BudgetState.WARN
        )
    if any(th.action == "throttle" for th in p.thresholds[:level]):
        return BudgetState.THROTTLED
    return BudgetState.WARN


class BudgetEngine:
    def __init__(self, spend_of: SpendOf, enforcer: Enforcer) -> None:
        self.spend_of = spend_of
        self.enforcer = enforcer
        self.policies: dict[str, Policy] = {}
        self.pairs: dict[tuple[str, str], Pair] = {}
        self._changed: set[str] = set()

    # -- policies ------------------------------------------------------------------------

    def upsert(self, p: Policy) -> None:
        self.policies[p.policy_id] = p
        self._changed.add(p.policy_id)

    def delete(self, policy_id: str) -> None:
        self.policies.pop(policy_id, None)
        self._changed.add(policy_id)

    def pair(self, policy_id: str, ref: ScopeRef) -> Pair:
        k = (policy_id, ref.key)
        pr = self.pairs.get(k)
        if pr is None:
            pr = self.pairs[k] = Pair(policy_id, ref)
        return pr

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, pr: Pair, now_s: float, contributions: Sequence[tuple[str, Decimal]] = ()) -> Emitted:
        """Re-evaluate one pair; ``contributions`` are this batch's (event_id, amount) in order."""
        out = Emitted()
        p = self.policies.get(pr.policy_id)
        now = datetime.fromtimestamp(now_s, UTC)
        if contributions:
            pr.touched_s = now_s
        if p is None:
            spend, level = pr.spend, 0
        else:
            spend = spend_in_unit(p, self.spend_of(p, pr.ref, now_s))
            level = level_of(p, spend)
        old, pr.level, pr.spend = pr.level, level, spend
        cause = _cause(p, level, spend, contributions) if p is not None and level > old else None
        if level != old:
            desire = desire_of(p, level, pr.ref, spend, cause) if p is not None else None
            source = f"policy:{pr.policy_id}"
            cmd = self.enforcer.want(pr.ref, source, desire, now)
            if cmd is not None:
                out.commands.append(cmd)
            down = downgrade_of(p, level, pr.ref, spend, cause) if p is not None else None
            routed = self.enforcer.want(pr.ref, source, down, now, lane="downgrade")
            if routed is not None:
                out.commands.append(routed)
            out.alerts.append(self._alert(p, pr, old, now, cmd or routed))
        if p is not None:
            st = self._status(p, pr, now_s, force=level != old)
            if st is not None:
                out.statuses.append(st)
        return out

    def tick(self, now_s: float, owns: Callable[[str], bool] | None = None) -> Emitted:
        """Once a second: windows that rolled over, policies that changed, pending statuses.
        ``owns`` says which scope keys this process holds (stage two): the others' budgets are
        another process's to evaluate (here their spend would read as zero)."""
        out = Emitted()
        changed, self._changed = self._changed, set()
        for key, pr in list(self.pairs.items()):
            if owns is not None and not owns(pr.ref.key):
                continue
            p = self.policies.get(pr.policy_id)
            if pr.level > 0 or pr.policy_id in changed or (p is not None and pr.published != _sig(pr, p)):
                out.extend(self.evaluate(pr, now_s))
            if pr.level == 0 and (p is None or now_s - pr.touched_s > IDLE_PAIR_S):
                del self.pairs[key]
        return out

    def _status(self, p: Policy, pr: Pair, now_s: float, force: bool) -> BudgetStatus | None:
        sig = _sig(pr, p)
        if sig == pr.published or (not force and now_s - pr.published_s < STATUS_MIN_INTERVAL_S):
            return None
        pr.published, pr.published_s = sig, now_s
        start, end = window_bounds(p.window, now_s)
        return BudgetStatus(
            policy_id=p.policy_id,
            scope_key=pr.ref.key,
            window=p.window,
            window_start=start,
            window_end=end,
            spend=pr.spend,
            limit=p.budget_limit,
            unit=p.unit,
            state=state_of(p, pr.level),
            updated_at=datetime.fromtimestamp(now_s, UTC),
        )

    def _alert(
        self, p: Policy | None, pr: Pair, old: int, now: datetime, cmd: ControlCommand | None
    ) -> AlertEvent:
        key = pr.ref.key
        hard = p is not None and pr.level > len(p.thresholds)
        if pr.level == 0:
            state, severity = AlertState.RESOLVED, Severity.INFO
            summary = f"budget {pr.policy_id} back under its thresholds on {key}"
        else:
            assert p is not None
            state = AlertState.ALERT if hard else AlertState.WARN
            severity = (
                (Severity.CRITICAL if p.hard_action == "kill" else Severity.ERROR)
                if hard
                else Severity.WARNING
            )
            pct = (pr.spend / p.budget_limit * 100).quantize(Decimal("0.1"))
            summary = (
                f"budget {p.policy_id}: {key} at {pct}% of {p.budget_limit} {p.unit.value} ({p.window.value})"
            )
        figures: dict[str, str | int | float | bool] = {
            "spend": str(pr.spend),
            "level": pr.level,
            "previous": old,
        }
        if p is not None:
            figures.update(limit=str(p.budget_limit), unit=p.unit.value, window=p.window.value)
        return AlertEvent(
            alert_id=new_id(),
            dedup_key=f"budget:{pr.policy_id}:{key}"[:255],
            ts=now,
            rule="budget",
            entity=key[:512],
            tenant=pr.ref.tenant,
            state=state,
            severity=severity,
            summary=summary[:1024],
            figures=figures,
            policy_id=pr.policy_id,
            command_id=cmd.command_id if cmd is not None else None,
        )


def _sig(pr: Pair, p: Policy) -> tuple[Decimal, int, Decimal]:
    return (pr.spend, pr.level, p.budget_limit)


def _cause(p: Policy, level: int, spend: Decimal, contributions: Sequence[tuple[str, Decimal]]) -> str | None:
    """The event whose amount took the spend across the new level's boundary."""
    if not contributions:
        return None
    line = boundary(p, level)
    running = spend - sum((a for _, a in contributions), Decimal(0))
    for event_id, amount in contributions:
        running += amount
        if running >= line:
            return event_id
    return contributions[-1][0]
