"""The contract refuses what used to slip through: hidden characters in names, oversized
attributes, booleans as token counts, negative reported costs. Every edge (client, API, OTLP)
validates with these models, so one test here covers them all; the client's own choices
(clean data, raise on code) are tested at the end."""

from __future__ import annotations

import logging
import unicodedata
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agentledger import wire
from agentledger.collectors import Emitter, MemoryTransport
from agentledger.collectors import emitter as emitter_module
from agentledger.events import MAX_ATTRIBUTE_VALUE_CHARS, ToolCallEvent, UsageEvent

USAGE: dict[str, Any] = {
    "event_id": "evt-0000001", "ts": "2026-11-24T12:00:00Z", "tenant": "acme", "agent": "planner",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "provider": "openai",
    "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
}  # fmt: skip
TOOL: dict[str, Any] = {**{k: USAGE[k] for k in ("event_id", "ts", "tenant", "agent", "trace_id", "span_id")},
                        "type": "tool_call", "tool": "search", "args_hash": "0123456789abcdef"}  # fmt: skip

HIDDEN = {
    "newline": "\n", "tab": "\t", "nul": "\x00", "zero-width space": "\u200b",
    "right-to-left override": "\u202e", "byte order mark": "\ufeff", "line separator": "\u2028",
}  # fmt: skip
FIELDS = [
    (UsageEvent, USAGE, f) for f in ("tenant", "agent", "workflow", "provider", "model", "agent_version")
]
FIELDS.append((ToolCallEvent, TOOL, "tool"))


@pytest.mark.parametrize("char", HIDDEN.values(), ids=HIDDEN.keys())
@pytest.mark.parametrize(("model", "base", "field"), FIELDS, ids=[f for *_, f in FIELDS])
def test_names_with_control_or_format_characters_are_refused(
    model: type[Any], base: dict[str, Any], field: str, char: str
) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({**base, field: "plan" + char + "ner"})
    message = str(info.value)
    assert field in message and "control or format characters" in message
    assert f"U+{ord(char):04X}" in message  # names the offending character


def test_names_are_nfkc_normalised() -> None:
    event = UsageEvent.model_validate(
        {**USAGE, "agent": "ｐｌａｎｎｅｒ", "model": "gpt\u20114o", "tenant": "ﬁrm"}
    )
    assert (event.agent, event.tenant) == ("planner", "firm")
    assert event.model == unicodedata.normalize("NFKC", "gpt\u20114o")
    with pytest.raises(ValidationError, match="tenant"):  # a fullwidth solidus is a '/' after NFKC
        UsageEvent.model_validate({**USAGE, "tenant": "a／b"})


@given(st.text(min_size=1, max_size=40))
def test_any_accepted_name_is_normal_and_visible(name: str) -> None:
    try:
        event = UsageEvent.model_validate({**USAGE, "agent": name})
    except ValidationError:
        return
    assert unicodedata.normalize("NFKC", event.agent) == event.agent
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in event.agent)


def test_attribute_values_and_counts_are_capped() -> None:
    at_cap = "x" * MAX_ATTRIBUTE_VALUE_CHARS
    assert UsageEvent.model_validate({**USAGE, "attributes": {"k": at_cap}}).attributes["k"] == at_cap
    with pytest.raises(ValidationError) as info:
        UsageEvent.model_validate({**USAGE, "attributes": {"k": at_cap + "x"}})
    assert f"at most {MAX_ATTRIBUTE_VALUE_CHARS} characters (got {MAX_ATTRIBUTE_VALUE_CHARS + 1})" in str(
        info.value
    )
    with pytest.raises(ValidationError, match="attributes"):
        UsageEvent.model_validate({**USAGE, "attributes": {f"k{i}": i for i in range(33)}})
    with pytest.raises(ValidationError, match="control or format"):
        UsageEvent.model_validate({**USAGE, "attributes": {"bad\u200bkey": 1}})
    assert UsageEvent.model_validate({**USAGE, "attributes": {"k": 2**63 - 1}}).attributes["k"] == 2**63 - 1
    with pytest.raises(ValidationError, match="64-bit"):  # the sink could not read it back
        UsageEvent.model_validate({**USAGE, "attributes": {"k": 2**63}})


@pytest.mark.parametrize("count", [True, False, "12", 12.5, None])
def test_token_counts_must_be_integers(count: Any) -> None:
    with pytest.raises(ValidationError, match="input_tokens"):
        UsageEvent.model_validate({**USAGE, "input_tokens": count})


def test_token_counts_from_json_must_be_integers() -> None:
    raw = (
        UsageEvent.model_validate(USAGE)
        .model_dump_json()
        .replace('"output_tokens":100', '"output_tokens":true')
    )
    with pytest.raises(ValidationError, match="output_tokens"):
        UsageEvent.model_validate_json(raw)


def test_reported_cost_must_not_be_negative() -> None:
    assert UsageEvent.model_validate({**USAGE, "reported_cost_usd": "0"}).reported_cost_usd == Decimal(0)
    with pytest.raises(ValidationError, match="reported_cost_usd"):
        UsageEvent.model_validate({**USAGE, "reported_cost_usd": "-0.01"})


def test_one_bad_event_in_an_envelope_is_rejected_alone() -> None:
    good = UsageEvent.model_validate(USAGE).model_dump(mode="json")
    bad = {**good, "event_id": "evt-0000002", "model": "gpt\u202e4o"}
    decoded = wire.decode_envelope(wire.encode_envelope_dicts("acme/planner", [good, bad]))
    assert [e.event_id for e in decoded.events] == ["evt-0000001"]
    assert len(decoded.rejected) == 1 and "control or format" in str(decoded.rejected[0])


# -- the client: names in code raise at the call; data from providers is cleaned and kept ----


def test_client_refuses_hidden_characters_in_its_own_names() -> None:
    with pytest.raises(ValueError, match="control or format"):
        Emitter(tenant="acme", agent="plan\u200bner", transport=MemoryTransport())
    em = Emitter(tenant="ａｃｍｅ", agent="planner", transport=MemoryTransport())
    try:
        assert em.tenant == "acme"
        with pytest.raises(ValueError, match="control or format"):
            em.span("x", agent="a\nb")
        with pytest.raises(ValueError):
            em.record_usage("openai", "gpt-4o", True, 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            em.record_usage("openai", "gpt-4o", 10, 1, reported_cost_usd=Decimal("-1"))
        with pytest.raises(ValueError):
            em.record_usage("openai", "gpt-4o", 10, 1, reported_cost_usd=Decimal("NaN"))
    finally:
        em.shutdown(1)


def test_client_cleans_provider_data_and_shortens_long_attributes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(emitter_module, "_warned_data", False)
    transport = MemoryTransport()
    em = Emitter(tenant="acme", agent="planner", transport=transport)
    caplog.set_level(logging.WARNING, "agentledger.collectors")
    em.record_usage("openai", "gpt-4o\u200b\n", 10, 1, attributes={"note": "y" * 10_000, "big": 2**70})
    em.record_tool_call("web\u202esearch")
    assert em.flush(5)
    em.shutdown(1)
    usage, tool = transport.events
    assert usage["model"] == "gpt-4o" and tool["tool"] == "websearch"
    note = usage["attributes"]["note"]
    assert len(note) == MAX_ATTRIBUTE_VALUE_CHARS and note.endswith("…")
    assert usage["attributes"]["big"] == str(2**70)  # beyond int64: kept as its string
    for event in (usage, tool):  # what the client sends, the contract accepts
        (UsageEvent if event["type"] == "usage" else ToolCallEvent).model_validate(event)
    assert sum(r.levelname == "WARNING" for r in caplog.records) == 1  # once, not per event
