"""Scope references: what a rollup, a budget and a command are about.

``ScopeRef.key`` is ``agentledger.events.Scope.key`` (the control topic key, both built by
``agentledger.events.scope_key``), without constructing a pydantic model per event (hot
path). See docs/adr/0002.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from agentledger.events import Scope, ScopeKind, Selector, scope_key
from agentledger.wire import StageEvent

# The event fields that identify a scope of each kind (a policy selector that constrains any
# other field needs its own counter: see budgets.py).
IDENTITY: dict[ScopeKind, tuple[str, ...]] = {
    ScopeKind.TENANT: ("tenant",),
    ScopeKind.AGENT: ("tenant", "agent"),
    ScopeKind.AGENT_VERSION: ("tenant", "agent", "agent_version"),
    ScopeKind.WORKFLOW: ("tenant", "workflow"),
    ScopeKind.TRACE: ("tenant",),
    ScopeKind.PROVIDER: (),
    ScopeKind.USER: ("tenant", "user"),
    ScopeKind.CONVERSATION: ("tenant", "conversation"),
}
USER_ATTRIBUTES = ("user.id", "enduser.id")
"""Event attributes naming the end user (the hook records OpenAI's ``user`` field as ``user.id``)."""
CONVERSATION_ATTRIBUTES = ("gen_ai.conversation.id",)
SELECTOR_FIELDS = ("tenant", "agent", "agent_version", "workflow", "user", "conversation")


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
    user: str | None = None
    conversation: str | None = None

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
            user=self.user,
            conversation=self.conversation,
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
            user=self.user,
            conversation=self.conversation,
        )

    @classmethod
    def from_scope(cls, s: Scope) -> ScopeRef:
        return cls(s.kind, s.tenant, s.agent, s.agent_version, s.workflow, s.trace_id, s.provider, s.model, s.user,
                   s.conversation)  # fmt: skip


def _attribute(ev: StageEvent, names: tuple[str, ...]) -> str | None:
    attrs = ev.attributes
    if not attrs:
        return None
    for name in names:
        v = attrs.get(name)
        if isinstance(v, str) and v and "/" not in v:
            return v
    return None


def user_of(ev: StageEvent) -> str | None:
    """The end user of an event (``user.id`` or ``enduser.id``), or None. A value holding
    ``/`` is not a scope name (it would split the key) and is ignored."""
    return _attribute(ev, USER_ATTRIBUTES)


def conversation_of(ev: StageEvent) -> str | None:
    """The conversation of an event (``gen_ai.conversation.id``), or None."""
    return _attribute(ev, CONVERSATION_ATTRIBUTES)


def scope_for(
    ev: StageEvent, kind: ScopeKind, provider: str | None = None, model: str | None = None
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
    if kind is ScopeKind.USER:
        user = user_of(ev)
        return None if user is None else ScopeRef(kind, tenant=ev.tenant, user=user)
    if kind is ScopeKind.CONVERSATION:
        conv = conversation_of(ev)
        return None if conv is None else ScopeRef(kind, tenant=ev.tenant, conversation=conv)
    return None if provider is None else ScopeRef(kind, provider=provider, model=model)


def _match(pattern: str, value: str | None) -> bool:
    if pattern == "*":
        return True
    return value is not None and fnmatch.fnmatchcase(value, pattern)


def selector_matches_event(sel: Selector, ev: StageEvent) -> bool:
    return (
        _match(sel.tenant, ev.tenant)
        and _match(sel.agent, ev.agent)
        and _match(sel.agent_version, ev.agent_version)
        and _match(sel.workflow, ev.workflow)
        and (sel.user == "*" or _match(sel.user, user_of(ev)))
        and (sel.conversation == "*" or _match(sel.conversation, conversation_of(ev)))
    )


def is_coarse(sel: Selector) -> bool:
    """True when the selector only constrains fields that identify its ``per`` scope: the
    scope's plain rollup is then exactly the policy's spend (history included)."""
    ident = IDENTITY[sel.per]
    return all(getattr(sel, f) == "*" for f in SELECTOR_FIELDS if f not in ident)
