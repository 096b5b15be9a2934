"""Stage one reads the fast path's msgspec Structs, never building a model per event (issue #15);
what it publishes must be what it published from the contract's models: the same priced bytes,
dead letters, deltas (rollups, spans, loop features, budget contributions, deadline rows),
and after stage two the same commands, alerts, budgets and totals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from agentledger.events import Policy
from agentledger.fastwire import decode_fast_structs, model_of
from agentledger.streams.worker import processor as processor_mod
from agentledger.streams.worker.processor import MemoryStore, Output, Processor
from agentledger.wire import DecodedStructs, decode_envelope_structs, dump

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
T = NOW.timestamp() + 0.25
TS = "2026-11-24T12:00:00Z"


def event(i: int, kind: str, agent: str, trace: int) -> dict[str, Any]:
    """An event spelled as the collectors send it (every default present, times in UTC)."""
    ev: dict[str, Any] = {"v": 1, "event_id": f"ev-{i:08d}", "ts": TS, "tenant": "acme", "agent": agent,
                          "agent_version": "v1", "workflow": "wf", "trace_id": f"{trace + 1:032x}",
                          "span_id": f"{i + 1:016x}", "parent_span_id": f"{trace + 1:016x}", "attributes": {},
                          "type": kind}  # fmt: skip
    if kind == "usage":
        ev |= {"provider": "openai", "model": "gpt-4o", "input_tokens": 200_000, "output_tokens": 1000,
               "cache_read_tokens": 500, "cache_write_tokens": 0, "reasoning_tokens": 0}  # fmt: skip
    elif kind == "span":
        ev |= {"name": "turn", "kind": "llm", "start": TS, "end": TS, "status": "ok"}
    elif kind == "tool_call":
        ev |= {"tool": "search", "args_hash": "ab" * 8, "status": "ok"}
    else:
        ev |= {"metric": "faithfulness", "score": 0.5}
    return ev


def envelopes() -> list[tuple[bytes, bytes]]:
    """Every shape stage one treats apart: omitted defaults and times in another offset (bytes not
    forwarded), users and conversations, agent turns that end a trace, an unknown model, a
    repeated tool call (a loop), duplicates, and an envelope the contract decides (a rejected
    event)."""
    out = []
    kinds = ["usage", "span", "tool_call", "quality", "usage"]
    i = 0
    for n in range(12):
        agent = f"agent-{n % 3}"
        evs = []
        for j in range(40):
            ev = event(i, kinds[j % len(kinds)], agent, trace=n % 4)
            i += 1
            m = (n * 40 + j) % 11
            if m == 0 and ev["type"] == "usage":
                del ev["cache_write_tokens"], ev["reasoning_tokens"]
            elif m == 1 and ev["type"] in ("span", "tool_call"):
                del ev["status"]
            elif m == 2:
                ev["ts"] = "2026-11-24T12:00:00.5+02:00"  # two hours old: counted late
            elif m == 3:
                ev["attributes"] = {"user.id": f"u{j % 3}", "gen_ai.conversation.id": "c1", "n": 3}
            elif m == 4 and ev["type"] == "span":
                ev |= {"kind": "agent", "start": "2026-11-24T11:59:58Z"}
                del ev["parent_span_id"]
            elif m == 5 and ev["type"] == "usage":
                ev["model"] = "no-such-model"
            elif m == 6 and ev["type"] == "span":
                ev |= {"status": "error", "error_type": "Timeout"}
            evs.append(ev)
        if n % 4 == 1:
            evs.append(dict(evs[0]))  # a duplicate
        if n == 7:
            evs.append({**evs[1], "event_id": "ev-bad-00001", "input_tokens": -1})
        key = f"acme/{agent}"
        out.append((key.encode(), orjson.dumps({"v": 1, "key": key, "events": evs})))
    return out + out[:2]  # records seen again (a replay of stage one's input)


POLICIES = [
    Policy(policy_id="agent", selector={"tenant": "acme", "per": "agent"}, window="calendar_day",  # type: ignore[arg-type]
           limit=Decimal("2")),  # type: ignore[arg-type]
    Policy(policy_id="fine", selector={"tenant": "acme", "agent": "agent-1", "per": "tenant"},  # type: ignore[arg-type]
           window="calendar_day", limit=Decimal("1")),  # type: ignore[arg-type]
    Policy(policy_id="user", selector={"tenant": "acme", "per": "user"}, window="calendar_day",  # type: ignore[arg-type]
           limit=Decimal("0.5")),  # type: ignore[arg-type]
    Policy(policy_id="tokens", selector={"tenant": "acme", "per": "trace"}, window="calendar_day",  # type: ignore[arg-type]
           limit=Decimal(3_000_000), unit="tokens"),  # type: ignore[arg-type]
    Policy(policy_id="deadline", selector={"tenant": "acme", "per": "trace"}, deadline_s=1.0),  # type: ignore[arg-type]
]  # fmt: skip


def canon(out: Output) -> Any:
    def strip(v: bytes | None) -> Any:
        if v is None:
            return None
        doc = json.loads(v)
        for k in ("command_id", "alert_id", "issued_at", "ts", "updated_at"):
            doc.pop(k, None)
        return doc

    return (
        out.priced,
        [(k, strip(v)) for k, v in out.dlq],
        [(k, strip(v)) for k, v in out.control],
        [(k, strip(v)) for k, v in out.alerts],
        [(k, strip(v)) for k, v in out.budgets],
        out.tools,
        out.deltas,
    )


def run() -> tuple[list[Any], Processor]:
    p = Processor(MemoryStore())
    for pol in POLICIES:
        p.observe_policy(pol.policy_id, dump(pol))
    seen: list[Any] = []
    for offset, (key, value) in enumerate(envelopes()):
        out = p.stage_one(value, key, 0, offset, T)
        seen.append(canon(out))
        for _, _, delta in out.deltas:
            seen.append(canon(p.stage_two(delta, T)))
    seen.append(canon(p.tick(T + 5)))
    return seen, p


def as_models(raw: bytes) -> DecodedStructs:
    d = decode_envelope_structs(raw)
    d.events = [e if not hasattr(e, "__struct_fields__") else model_of(e) for e in d.events]  # type: ignore[arg-type]
    return d


def test_stage_one_publishes_the_same_from_structs_as_from_models(monkeypatch: pytest.MonkeyPatch) -> None:
    records = envelopes()
    # the fast path takes all but the envelope with a rejected event: stage one reads Structs
    assert sum(decode_fast_structs(v) is not None for _, v in records) == len(records) - 1

    with_structs, p = run()
    monkeypatch.setattr(processor_mod, "decode_envelope_structs", as_models)
    with_models, q = run()

    assert with_structs == with_models
    assert p.counters == q.counters
    totals = {k: p.totals(k, "calendar_day", T) for k in p.store.all_keys()}
    assert totals == {k: q.totals(k, "calendar_day", T) for k in q.store.all_keys()}
    # and the run exercised what it compares: kills of budgets, a loop, a deadline; late and
    # unpriced events; a dead letter; bytes forwarded as sent and bytes serialised again
    rules = {alert[1]["rule"] for out in with_structs for alert in out[3]}
    assert rules == {"budget", "runaway_loop", "trace_deadline", "unpriced_model"}
    assert {cmd[1]["policy_id"] for out in with_structs for cmd in out[2]} >= {
        "agent",
        "fine",
        "user",
        "tokens",
    }
    assert p.counters["loops"] >= 1 and p.counters["deadlines"] >= 1
    assert p.counters["late"] > 0 and p.counters["unpriced"] > 0 and p.counters["dlq"] == 1
    assert p.counters["duplicates"] > 0
    assert totals["tenant/acme"].cost > 0
