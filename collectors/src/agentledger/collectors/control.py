"""The Guard's view of the control topic, as plain data: the command in force per control key,
and a precomputed index so that ``check`` is a few dict lookups (nothing applies: one lookup).

A key names a scope, a lane and an authority (``admission.budget:agent/acme/writer``), so the
budget worker, the health worker and a human each hold their own record about a scope. The
index combines them: admission takes the strictest record over the scope's admission keys
(a kill on any key beats every throttle, the slowest throttle wins; a ``resume`` on one key
lifts only that key); routing, downgrade and provider rules are placed on their own,
independently of admission, and where two authorities route the same scope a human's record
wins, then the newest. A record from before lanes (bare scope key, ``downgrade:<scope>``) is
read as the lane of its action (``agentledger.lanes``). An expired command is ignored and
dropped at the next rebuild.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TypeVar

from agentledger.events import Action, Authority, ControlCommand, ScopeKind
from agentledger.lanes import ControlRecords

from .exceptions import AgentKilled, BudgetKilled, LoopKilled, ManualKill

_K = TypeVar("_K")
_KILLS: dict[str | None, type[AgentKilled]] = {
    "budget": BudgetKilled,
    "loop": LoopKilled,
    "manual": ManualKill,
}


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved. Thread-safe."""

    __slots__ = ("_lock", "burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int = 1, now: float | None = None) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic() if now is None else now
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def reserve(self, now: float) -> float:
        """Take a token (possibly in the future); return how long to wait for it."""
        with self._lock:
            self._refill(now)
            self.tokens -= 1.0
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def try_take(self, now: float) -> float:
        """Take a token if one is there (returns 0), else return the wait without taking."""
        with self._lock:
            self._refill(now)
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class Rule:
    command: ControlCommand
    expires: float  # UNIX seconds; inf when it never expires
    bucket: TokenBucket | None = None

    def kill_error(self) -> AgentKilled:
        cmd = self.command
        cls = _KILLS.get(cmd.params.kill_reason, AgentKilled)
        return cls(
            f"agentledger {cmd.scope.key} killed: {cmd.reason or cmd.params.kill_reason or 'no reason given'}",
            command_id=cmd.command_id,
            scope_key=cmd.scope.key,
            reason=cmd.reason,
        )


@dataclass(slots=True)
class TenantRules:
    """Kill and throttle rules of one tenant, keyed the way ``check`` looks them up."""

    tenant: Rule | None = None
    agents: dict[str, Rule] = field(default_factory=dict)
    versions: dict[tuple[str, str], Rule] = field(default_factory=dict)
    workflows: dict[str, Rule] = field(default_factory=dict)
    traces: dict[str, Rule] = field(default_factory=dict)
    users: dict[str, Rule] = field(default_factory=dict)
    conversations: dict[str, Rule] = field(default_factory=dict)


@dataclass(slots=True)
class ControlIndex:
    """Immutable once built; the Guard swaps in a new one (readers never lock)."""

    kills: dict[str, TenantRules] = field(default_factory=dict)
    throttles: dict[str, TenantRules] = field(default_factory=dict)
    # (tenant, provider, model or "*"): tenant None is the global rule of every tenant.
    failovers: dict[tuple[str | None, str, str], Rule] = field(default_factory=dict)
    rollbacks: dict[tuple[str, str], Rule] = field(default_factory=dict)
    # (tenant, agent): a rollout's route (share of tasks to its candidate version)
    routes: dict[tuple[str, str], Rule] = field(default_factory=dict)
    downgrades: dict[str, TenantRules] = field(default_factory=dict)
    next_expiry: float = math.inf


def _stronger(new: Rule, old: Rule) -> bool:
    """Which of two rules on the same scope and lane applies. Throttles: the slowest. Kills
    (any one stops the call; this picks the one it names), routing, downgrade, provider: a
    human's, then the newest."""
    a, b = new.command, old.command
    if a.action is Action.THROTTLE:
        return (a.params.rate_per_s or math.inf) < (b.params.rate_per_s or math.inf)
    rank_a = (a.decided_by is Authority.MANUAL, a.ts)
    rank_b = (b.decided_by is Authority.MANUAL, b.ts)
    return rank_a > rank_b


def _keep(table: dict[_K, Rule], slot: _K, rule: Rule) -> None:
    held = table.get(slot)
    if held is None or _stronger(rule, held):
        table[slot] = rule


def _place(rules: TenantRules, kind: ScopeKind, cmd: ControlCommand, rule: Rule) -> None:
    scope = cmd.scope
    if kind is ScopeKind.TENANT:
        if rules.tenant is None or _stronger(rule, rules.tenant):
            rules.tenant = rule
    elif kind is ScopeKind.AGENT:
        _keep(rules.agents, str(scope.agent), rule)
    elif kind is ScopeKind.AGENT_VERSION:
        _keep(rules.versions, (str(scope.agent), str(scope.agent_version)), rule)
    elif kind is ScopeKind.WORKFLOW:
        _keep(rules.workflows, str(scope.workflow), rule)
    elif kind is ScopeKind.TRACE:
        _keep(rules.traces, str(scope.trace_id), rule)
    elif kind is ScopeKind.USER:
        _keep(rules.users, str(scope.user), rule)
    elif kind is ScopeKind.CONVERSATION:
        _keep(rules.conversations, str(scope.conversation), rule)


class ControlState:
    """The command in force per control key; ``index()`` builds what ``Guard.check`` reads."""

    def __init__(self) -> None:
        self.records = ControlRecords()
        self._buckets: dict[str, tuple[str, TokenBucket]] = {}  # control key -> (command id, bucket)

    @property
    def commands(self) -> dict[str, ControlCommand]:
        """The command in force per control key (a record from before lanes under the key its
        content names)."""
        return self.records.current

    def apply(self, key: str | None, command: ControlCommand | None) -> None:
        """A record from the control topic: a command, or a tombstone (None) deleting ``key``."""
        self.records.apply(key, command)

    def _bucket(self, key: str, cmd: ControlCommand, now_mono: float) -> TokenBucket:
        # Keep a bucket across rebuilds while the same command rules, so tokens are not reset.
        held = self._buckets.get(key)
        if held is not None and held[0] == cmd.command_id:
            return held[1]
        bucket = TokenBucket(float(cmd.params.rate_per_s or 1.0), cmd.params.burst or 1, now_mono)
        self._buckets[key] = (cmd.command_id, bucket)
        return bucket

    def index(self, now: float | None = None) -> ControlIndex:
        now = time.time() if now is None else now
        now_mono = time.monotonic()
        out = ControlIndex()
        live_buckets: set[str] = set()
        for key, cmd in self.commands.items():
            expires = cmd.expires_at.timestamp() if cmd.expires_at is not None else math.inf
            if expires <= now or cmd.action is Action.RESUME:
                continue
            out.next_expiry = min(out.next_expiry, expires)
            rule = Rule(cmd, expires)
            scope = cmd.scope
            if cmd.action is Action.FAILOVER and scope.kind is ScopeKind.PROVIDER:
                _keep(out.failovers, (scope.tenant, str(scope.provider), scope.model or "*"), rule)
            elif cmd.action is Action.ROLLBACK and scope.agent is not None and scope.tenant is not None:
                _keep(out.rollbacks, (scope.tenant, scope.agent), rule)
            elif cmd.action is Action.ROUTE and scope.agent is not None and scope.tenant is not None:
                _keep(out.routes, (scope.tenant, scope.agent), rule)
            elif cmd.action is Action.DOWNGRADE and scope.tenant is not None:
                _place(out.downgrades.setdefault(scope.tenant, TenantRules()), scope.kind, cmd, rule)
            elif cmd.action in (Action.KILL, Action.THROTTLE) and scope.tenant is not None:
                table = out.kills if cmd.action is Action.KILL else out.throttles
                if cmd.action is Action.THROTTLE:
                    rule.bucket = self._bucket(key, cmd, now_mono)
                    live_buckets.add(key)
                _place(table.setdefault(scope.tenant, TenantRules()), scope.kind, cmd, rule)
        for key in set(self._buckets) - live_buckets:
            del self._buckets[key]
        return out


def failover(
    failovers: dict[tuple[str | None, str, str], Rule],
    provider: str,
    model: str | None,
    tenant: str | None,
    now: float,
) -> Rule | None:
    """The failover in force for a call: the tenant's own rule first (model, then the whole
    provider), then the global one; expired rules are passed over. A tenant's failover applies
    whatever the global circuit says; a tenant's ``resume`` ends only its own failover."""
    model = model or "*"
    owners = (tenant, None) if tenant is not None else (None,)
    for owner in owners:
        for wanted in (model, "*"):
            rule = failovers.get((owner, provider, wanted))
            if rule is not None and now < rule.expires:
                return rule
    return None


def downgrade(rules: TenantRules, model: str, agent: str, workflow: str | None, trace_id: str | None,
              agent_version: str | None, now: float, user: str | None = None,
              conversation: str | None = None) -> str | None:  # fmt: skip
    """The cheaper model for a call to ``model``: the most specific live downgrade whose
    ``from_models`` (fnmatch patterns; none: any model) takes this model."""
    for rule in matching(rules, agent, workflow, trace_id, agent_version, user, conversation):
        params = rule.command.params
        if now >= rule.expires or params.model is None:
            continue
        if params.from_models is not None and not any(fnmatchcase(model, p) for p in params.from_models):
            continue
        return params.model
    return None


def matching(
    rules: TenantRules,
    agent: str,
    workflow: str | None,
    trace_id: str | None,
    agent_version: str | None,
    user: str | None = None,
    conversation: str | None = None,
) -> list[Rule]:
    """Rules of one tenant that match a check, most specific first (trace, conversation,
    version, agent, user, workflow, tenant)."""
    found = []
    if trace_id is not None and rules.traces:
        rule = rules.traces.get(trace_id)
        if rule is not None:
            found.append(rule)
    if conversation is not None and rules.conversations:
        rule = rules.conversations.get(conversation)
        if rule is not None:
            found.append(rule)
    if agent_version is not None and rules.versions:
        rule = rules.versions.get((agent, agent_version))
        if rule is not None:
            found.append(rule)
    rule = rules.agents.get(agent)
    if rule is not None:
        found.append(rule)
    if user is not None and rules.users:
        rule = rules.users.get(user)
        if rule is not None:
            found.append(rule)
    if workflow is not None and rules.workflows:
        rule = rules.workflows.get(workflow)
        if rule is not None:
            found.append(rule)
    if rules.tenant is not None:
        found.append(rules.tenant)
    return found
