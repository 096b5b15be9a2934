"""One home each for the record key, scope keys and envelope bytes: every writer of them agrees."""

from __future__ import annotations

import json

import pytest

from agentledger.events import Scope, ScopeKind, record_key, scope_key
from agentledger.samples import sample_events
from agentledger.streams.worker.scopes import ScopeRef
from agentledger.wire import (
    decode_envelope,
    encode_envelope,
    encode_envelope_dicts,
    envelope_key,
    split_encoded,
)

SCOPES = [
    Scope(kind=ScopeKind.TENANT, tenant="acme"),
    Scope(kind=ScopeKind.AGENT, tenant="acme", agent="planner"),
    Scope(kind=ScopeKind.AGENT_VERSION, tenant="acme", agent="planner", agent_version="v2"),
    Scope(kind=ScopeKind.WORKFLOW, tenant="acme", workflow="triage"),
    Scope(kind=ScopeKind.TRACE, tenant="acme", trace_id="a" * 32),
    Scope(kind=ScopeKind.PROVIDER, provider="openai", model="gpt-4o"),
    Scope(kind=ScopeKind.PROVIDER, provider="openai"),
    Scope(kind=ScopeKind.PROVIDER, provider="openai", model="gpt-4o", tenant="acme"),
]


@pytest.mark.parametrize("scope", SCOPES, ids=lambda s: s.key)
def test_the_worker_keys_a_scope_exactly_as_the_control_topic_does(scope: Scope) -> None:
    """A budget command the worker publishes must replace the one an operator (or the health
    worker) wrote for the same scope: same key, byte for byte."""
    ref = ScopeRef.from_scope(scope)
    assert ref.key == scope.key == ref.to_scope().key
    assert scope.key == scope_key(
        scope.kind,
        tenant=scope.tenant,
        agent=scope.agent,
        agent_version=scope.agent_version,
        workflow=scope.workflow,
        trace_id=scope.trace_id,
        provider=scope.provider,
        model=scope.model,
    )


def test_scope_keys_read_as_documented() -> None:
    assert [s.key for s in SCOPES] == [
        "tenant/acme",
        "agent/acme/planner",
        "agent_version/acme/planner/v2",
        "workflow/acme/triage",
        "trace/acme/" + "a" * 32,
        "provider/openai/gpt-4o",
        "provider/openai/*",
        "provider@acme/openai/gpt-4o",
    ]


def test_an_event_its_envelope_and_the_client_share_one_record_key() -> None:
    ev = sample_events(1)[0]
    assert ev.key == envelope_key(ev.tenant, ev.agent) == record_key(ev.tenant, ev.agent)
    assert record_key("acme", "planner") == "acme/planner"


def test_every_envelope_writer_spells_the_same_bytes() -> None:
    events = sample_events(6)
    key = events[0].key
    whole = encode_envelope(key, events)
    dicts = encode_envelope_dicts(key, [json.loads(e.model_dump_json()) for e in events])
    pieces = split_encoded(key, events, max_bytes=len(whole))
    assert dicts == whole
    assert [p.value for p in pieces] == [whole]
    small = split_encoded(key, events, max_bytes=len(whole) // 2)
    assert len(small) > 1
    assert [e for p in small for e in decode_envelope(p.value).events] == events
