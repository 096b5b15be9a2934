"""Scope references: what a rollup, a budget and a command are about.

``ScopeRef.key`` is ``agentledger.events.Scope.key`` (the control topic key, both built by
``agentledger.events.scope_key``), without constructing a pydantic model per event (hot
path). See docs/adr/0002.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from agentledger.events import Scope, ScopeKind, Selector, scope_key
from agentledger.wire import AnyEvent

# The event fields that identify a scope of each kind (a policy selector that constrains any
# other field needs its own counter: see budgets.py).
IDENTITY: dict[ScopeKind, tuple[str, ...]] = {
    ScopeKind.TENANT: ("tenant",),
    ScopeKind.AGENT: ("tenant", "agent"),
    ScopeKind.AGENT_VERSION: ("tenant", "agent", "agent_version"),
    ScopeKind.WORKFLOW: ("tenant", "workflow"),
    ScopeKind.TRACE: ("tenant",),
    ScopeKind.PROVIDER: (),
}
SELECTOR_FIELDS = ("tenant", "agent", "agent_version", "workflow")


@dataclass(frozen=True, slots=True)
class ScopeRef:
    kind: ScopeKind
    tenant: str | None = None
    agent: str | None = None
    agent_version: str | None = None
    workflow: str | None = None
    trace_id: str | None = None
    provider: str | None = None
    model: str | None = None

    @property
    def key(self) -> str:
        return scope_key(
            self.kind,
            tenant=self.tenant,
            agent=self.agent,
            agent_version=self.agent_version,
            workflow=self.workflow,
            trace_id=self.trace_id,
            provider=self.provider,
            model=self.model,
        )

    def to_scope(self) -> Scope:
        return Scope(
            kind=self.kind,
            tenant=self.tenant,
            agent=self.agent,
            agent_version=self.agent_version,
            workflow=self.workflow,
            trace_id=self.trace_id,
            provider=self.provider,
            model=self.model,
        )

    @classmethod
    def from_scope(cls, s: Scope) -> ScopeRef:
        return cls(s.kind, s.tenant, s.agent, s.agent_version, s.workflow, s.trace_id, s.provider, s.model)


def scope_for(
    ev: AnyEvent, kind: ScopeKind, provider: str | None = None, model: str | None = None
) -> ScopeRef | None:
    """The scope of ``kind`` an event belongs to (None when the event lacks the field)."""
    if kind is ScopeKind.TENANT:
        return ScopeRef(kind, tenant=ev.tenant)
    if kind is ScopeKind.AGENT:
        return ScopeRef(kind, tenant=ev.tenant, agent=ev.agent)
    if kind is ScopeKind.AGENT_VERSION:
        if ev.agent_version is None:
            return None
        return ScopeRef(kind, tenant=ev.tenant, agent=ev.agent, agent_version=ev.agent_version)
    if kind is ScopeKind.WORKFLOW:
        return None if ev.workflow is None else ScopeRef(kind, tenant=ev.tenant, workflow=ev.workflow)
    if kind is ScopeKind.TRACE:
        return ScopeRef(kind, tenant=ev.tenant, trace_id=ev.trace_id)
    return None if provider is None else ScopeRef(kind, provider=provider, model=model)


def _match(pattern: str, value: str | None) -> bool:
    if pattern == "*":
        return True
    return value is not None and fnmatch.fnmatchcase(value, pattern)


def selector_matches_event(sel: Selector, ev: AnyEvent) -> bool:
    return (
        _match(sel.tenant, ev.tenant)
        and _match(sel.agent, ev.agent)
        and _match(sel.agent_version, ev.agent_version)
        and _match(sel.workflow, ev.workflow)
    )


def is_coarse(sel: Selector) -> bool:
    """True when the selector only constrains fields that identify its ``per`` scope: the
    scope's plain rollup is then exactly the policy's spend (history included)."""
    ident = IDENTITY[sel.per]
    return all(getattr(sel, f) == "*" for f in SELECTOR_FIELDS if f not in ident)
