"""The contract: valid and invalid examples of every model, JSON round trips, schema sync."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from agentledger.events import (
    MODELS,
    Action,
    AlertEvent,
    AlertState,
    BudgetStatus,
    ControlCommand,
    DeadLetter,
    Envelope,
    ObjectivePolicy,
    Policy,
    PricedEnvelope,
    PricedEvent,
    QualityEvent,
    Scope,
    ScopeKind,
    ScreenEvent,
    SpanEvent,
    ToolCallEvent,
    UsageEvent,
)
from agentledger.samples import sample_events
from agentledger.schemas import render, render_reference

TS = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
COMMON = {
    "event_id": "ev-00000001",
    "ts": "2026-11-24T12:00:00Z",
    "tenant": "acme",
    "agent": "planner",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
}
USAGE = {
    **COMMON,
    "type": "usage",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 1000,
    "output_tokens": 200,
}
SPAN = {
    **COMMON,
    "type": "span",
    "name": "chat",
    "kind": "llm",
    "start": "2026-11-24T11:59:59Z",
    "end": "2026-11-24T12:00:00Z",
}
QUALITY = {**COMMON, "type": "quality", "metric": "faithfulness", "score": 0.8}
TOOL = {**COMMON, "type": "tool_call", "tool": "web_search", "args_hash": "a1b2c3d4e5f60718"}
SCREEN = {
    **COMMON, "type": "screen", "channel": "tool", "source": "fetch_page", "detector": "rules-v1",
    "score": 0.96, "flagged": True, "action": "block", "reasons": "hidden_markup,override",
}  # fmt: skip
SCOPE = {"kind": "agent", "tenant": "acme", "agent": "planner"}
COMMAND = {
    "command_id": "cmd-00000001",
    "ts": "2026-11-24T12:00:00Z",
    "scope": SCOPE,
    "action": "kill",
    "reason": "budget",
}
POLICY = {"policy_id": "acme-daily", "window": "calendar_day", "limit": "25.00",
          "thresholds": [{"at": 0.5}, {"at": 0.8, "action": "throttle", "rate_per_s": 2}]}  # fmt: skip
ALERT = {"alert_id": "al-00000001", "dedup_key": "budget:acme/planner", "ts": "2026-11-24T12:00:00Z",
         "rule": "budget", "entity": "acme/planner", "state": "alert", "summary": "over budget"}  # fmt: skip
DLQ = {"reason": "bad", "raw_b64": "e30=", "source_topic": "agentledger.events.v1"}

VALID: list[tuple[type[BaseModel], dict]] = [
    (UsageEvent, USAGE),
    (SpanEvent, SPAN),
    (QualityEvent, QUALITY),
    (ToolCallEvent, TOOL),
    (ScreenEvent, SCREEN),
    (Envelope, {"key": "acme/planner", "events": [USAGE, SPAN, QUALITY, TOOL]}),
    (
        PricedEvent,
        {"event": USAGE, "cost_usd": "0.0045", "priced": True, "price_source": "genai-prices:0.2.3"},
    ),
    (
        PricedEnvelope,
        {
            "key": "acme/planner",
            "events": [{"event": SPAN, "cost_usd": "0", "priced": False, "price_source": "n/a"}],
        },
    ),
    (ControlCommand, COMMAND),
    (Policy, POLICY),
    (
        ObjectivePolicy,
        {"objective_id": "planner-latency", "kind": "latency", "target": 0.95, "threshold_ms": 4000},
    ),
    (AlertEvent, ALERT),
    (DeadLetter, DLQ),
    (
        BudgetStatus,
        {
            "policy_id": "p",
            "scope_key": "agent/acme/planner",
            "window": "1h",
            "window_start": "2026-11-24T12:00:00Z",
            "spend": "1.5",
            "limit": "10",
            "unit": "usd",
            "state": "ok",
            "updated_at": "2026-11-24T12:10:00Z",
        },
    ),
]


@pytest.mark.parametrize(("model", "data"), VALID, ids=[m.__name__ for m, _ in VALID])
def test_valid_examples_round_trip_through_json(model: type[BaseModel], data: dict) -> None:
    obj = model.model_validate(data)
    again = model.model_validate_json(obj.model_dump_json())
    assert again == obj


def test_every_public_model_has_a_valid_example() -> None:
    assert {m.__name__ for m, _ in VALID} == set(MODELS)


INVALID = [
    (UsageEvent, {**USAGE, "input_tokens": -1}, "input_tokens"),
    (UsageEvent, {**USAGE, "ts": "2026-11-24T12:00:00"}, "ts"),  # naive time
    (UsageEvent, {**USAGE, "trace_id": "xyz"}, "trace_id"),
    (UsageEvent, {**USAGE, "trace_id": "0" * 32}, "trace_id"),
    (UsageEvent, {**USAGE, "span_id": "00f067aa0ba902b"}, "span_id"),
    (UsageEvent, {**USAGE, "cache_read_tokens": 900, "cache_write_tokens": 200}, "exceed input_tokens"),
    (UsageEvent, {**USAGE, "reasoning_tokens": 500}, "reasoning_tokens exceed"),
    (UsageEvent, {**USAGE, "tenant": "a/b"}, "tenant"),
    (UsageEvent, {**USAGE, "surprise": 1}, "surprise"),
    (UsageEvent, {**USAGE, "attributes": {f"k{i}": i for i in range(40)}}, "attributes"),
    (SpanEvent, {**SPAN, "start": "2026-11-24T12:00:01Z"}, "end must not be before start"),
    (SpanEvent, {**SPAN, "kind": "robot"}, "kind"),
    (QualityEvent, {**QUALITY, "score": float("nan")}, "score"),
    (ToolCallEvent, {**TOOL, "args_hash": "not-hex"}, "args_hash"),
    (ScreenEvent, {**SCREEN, "score": 1.5}, "score"),
    (ScreenEvent, {**SCREEN, "channel": "system"}, "channel"),
    (Envelope, {"key": "acme/planner", "events": []}, "events"),
    (ControlCommand, {**COMMAND, "action": "throttle"}, "rate_per_s"),
    (ControlCommand, {**COMMAND, "action": "failover"}, "fallback_provider"),
    (ControlCommand, {**COMMAND, "scope": {"kind": "agent", "tenant": "acme"}}, "needs agent"),
    (Policy, {**POLICY, "limit": "0"}, "limit"),
    (Policy, {**POLICY, "thresholds": [{"at": 0.8}, {"at": 0.5}]}, "strictly increasing"),
    (Policy, {**POLICY, "thresholds": [{"at": 0.8, "action": "throttle"}]}, "rate_per_s"),
    (AlertEvent, {**ALERT, "state": "panic"}, "state"),
]


@pytest.mark.parametrize(("model", "data", "needle"), INVALID, ids=[n for *_, n in INVALID])
def test_invalid_examples_name_the_field_and_the_reason(
    model: type[BaseModel], data: dict, needle: str
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    assert needle in str(info.value)


def test_times_are_converted_to_utc() -> None:
    ev = UsageEvent.model_validate(
        {**USAGE, "ts": datetime(2026, 11, 24, 14, 0, tzinfo=timezone(timedelta(hours=2)))}
    )
    assert ev.ts == TS and ev.ts.tzinfo == UTC


def test_money_is_exact_decimal() -> None:
    priced = PricedEvent.model_validate(
        {"event": USAGE, "cost_usd": "0.1", "priced": True, "price_source": "x"}
    )
    assert priced.cost_usd + Decimal("0.2") == Decimal("0.3")
    assert json.loads(priced.model_dump_json())["cost_usd"] == "0.1"


def test_scope_keys_are_stable_and_distinct() -> None:
    keys = {
        Scope(kind=ScopeKind.TENANT, tenant="acme").key,
        Scope(kind=ScopeKind.AGENT, tenant="acme", agent="planner").key,
        Scope(kind=ScopeKind.AGENT_VERSION, tenant="acme", agent="planner", agent_version="v2").key,
        Scope(kind=ScopeKind.TRACE, tenant="acme", trace_id=COMMON["trace_id"]).key,
        Scope(kind=ScopeKind.PROVIDER, provider="openai").key,
    }
    assert "agent/acme/planner" in keys and "provider/openai/*" in keys and len(keys) == 5


def test_a_tenant_bound_provider_scope_has_its_own_key() -> None:
    global_key = Scope(kind=ScopeKind.PROVIDER, provider="openai").key
    acme = Scope(kind=ScopeKind.PROVIDER, provider="openai", tenant="acme")
    assert global_key == "provider/openai/*"  # unchanged: the compacted topic keeps its keys
    assert acme.key == "provider@acme/openai/*"
    assert Scope(kind=ScopeKind.PROVIDER, provider="openai", model="gpt-4o", tenant="acme").key == (
        "provider@acme/openai/gpt-4o"
    )
    # Model names may hold "/": a global scope cannot take the key of a tenant's scope (or the
    # tenant's command would replace the global one on the compacted topic).
    lookalike = Scope(kind=ScopeKind.PROVIDER, provider="openai", model="*/acme")
    assert lookalike.key == "provider/openai/*/acme" and lookalike.key != acme.key


def test_command_expiry() -> None:
    cmd = ControlCommand.model_validate({**COMMAND, "expires_at": "2026-11-24T13:00:00Z"})
    assert cmd.active(TS) and not cmd.active(TS + timedelta(hours=2))
    assert cmd.action is Action.KILL


def test_alert_states_cover_the_lifecycle() -> None:
    assert [s.value for s in AlertState] == ["ok", "warn", "alert", "resolved"]


def test_sample_events_are_valid_and_distinct() -> None:
    events = sample_events(40)
    assert len({e.event_id for e in events}) == 40
    assert {e.type for e in events} == {"span", "usage", "quality", "tool_call"}


def test_schema_files_are_in_sync() -> None:
    folder = Path(__file__).resolve().parents[2] / "docs" / "schema"
    expected = render()
    on_disk = {p.name: p.read_text() for p in folder.glob("*.json")}
    assert on_disk == expected, "docs/schema is stale: run `agentledger schema`"


def test_event_reference_is_in_sync() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    assert text == render_reference(), "docs/events.md is stale: run `agentledger schema`"
    assert "| `input_tokens` | integer | yes | Prompt tokens, including cached ones. |" in text
