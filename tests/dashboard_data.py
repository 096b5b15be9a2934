"""Warehouse data for dashboard tests: a trace the loop detector killed, and traces where
agents call agents (the demo warehouse's synthetic traces are single-agent)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from agentledger.events import (
    Action,
    CommandParams,
    ControlCommand,
    PricedEvent,
    Scope,
    ScopeKind,
    SpanEvent,
    SpanKind,
    SpanStatus,
    ToolCallEvent,
    UsageEvent,
)
from agentledger.warehouse.synthetic import T0

LOOP_TRACE = "7" * 31 + "a"
ROOT, LLM = "1" * 15 + "a", "2" * 15 + "b"
LOOP_START = T0 + timedelta(hours=40)
CAUSE = "loop-call-5"
LOOP_USER, LOOP_CONVERSATION = "user-ana", "conv-0042"  # on the root span only, as SDKs tag them


def land_loop_trace(root: str) -> None:
    """A ``coder`` trace that called the same tool six times and was killed 120 ms after the
    sixth call: one costly LLM call (cached and reasoning tokens) and the kill command. Its
    root span names its user and conversation."""
    from agentledger.warehouse.landing import land_priced
    from agentledger.warehouse.rows import ModelBuffer
    from agentledger.warehouse.storage import Store, split_by_day
    from agentledger.wire import dump

    common = {"tenant": "acme", "agent": "coder", "agent_version": "v2", "trace_id": LOOP_TRACE}
    t = LOOP_START
    events = [
        PricedEvent(event=e, cost_usd=c, priced=True, price_source="test")
        for e, c in [
            (
                SpanEvent(
                    event_id="loop-llm",
                    ts=t + timedelta(seconds=2),
                    span_id=LLM,
                    parent_span_id=ROOT,
                    name="chat gpt-4o",
                    kind=SpanKind.LLM,
                    start=t,
                    end=t + timedelta(seconds=2),
                    provider="openai",
                    model="gpt-4o",
                    **common,
                ),
                Decimal(0),
            ),
            (
                UsageEvent(
                    event_id="loop-usage",
                    ts=t + timedelta(seconds=2),
                    span_id=LLM,
                    parent_span_id=ROOT,
                    provider="openai",
                    model="gpt-4o",
                    input_tokens=90_000,
                    output_tokens=4_000,
                    cache_read_tokens=30_000,
                    reasoning_tokens=1_500,
                    **common,
                ),
                Decimal("7.25"),
            ),
            *[
                (
                    ToolCallEvent(
                        event_id=f"loop-call-{i}",
                        ts=t + timedelta(seconds=3 + i),
                        span_id=f"{i + 3:016x}",
                        parent_span_id=ROOT,
                        tool="web_search",
                        args_hash="ab" * 8,
                        **common,
                    ),
                    Decimal(0),
                )
                for i in range(6)
            ],
            (
                SpanEvent(
                    event_id="loop-root",
                    ts=t + timedelta(seconds=9),
                    span_id=ROOT,
                    name="coder",
                    kind=SpanKind.AGENT,
                    start=t,
                    end=t + timedelta(seconds=9),
                    status=SpanStatus.ERROR,
                    error_type="AgentKilled",
                    attributes={"user.id": LOOP_USER, "gen_ai.conversation.id": LOOP_CONVERSATION},
                    **common,
                ),
                Decimal(0),
            ),
        ]
    ]
    store = Store(root)
    land_priced(store, events, "loop-events")
    kill = ControlCommand(
        command_id="loop-kill-0",
        ts=t + timedelta(seconds=8, milliseconds=120),
        scope=Scope(kind=ScopeKind.TRACE, tenant="acme", agent="coder", trace_id=LOOP_TRACE),
        action=Action.KILL,
        reason="web_search called 6 times with the same arguments",
        params=CommandParams(kill_reason="loop"),
        cause_event_id=CAUSE,
    )
    buffer = ModelBuffer("commands")
    buffer.add_record(dump(kill), 0, 100)
    for day, part in split_by_day(buffer.to_table()):
        store.write("commands", day, "loop-commands", part)


def land_agent_chain(root: str) -> None:
    """Two traces where agents call agents: planner -> coder -> critic ($2 + $0.5 under the
    coder call), and planner -> coder ($3 under it); the planner spends $1 itself."""
    from agentledger.warehouse.landing import land_priced
    from agentledger.warehouse.storage import Store

    t = T0 + timedelta(hours=45)
    events: list[PricedEvent] = []

    def span(trace: str, sid: str, parent: str | None, agent: str, kind: SpanKind, cost: str = "0") -> None:
        common = {
            "tenant": "acme",
            "agent": agent,
            "trace_id": trace,
            "span_id": sid,
            "parent_span_id": parent,
        }
        n = len(events)
        events.append(
            PricedEvent(
                event=SpanEvent(event_id=f"chain-event-{n}", ts=t + timedelta(seconds=1), name=agent, kind=kind,
                                start=t, end=t + timedelta(seconds=1), **common),
                cost_usd=Decimal(0), priced=True, price_source="test",
            )
        )  # fmt: skip
        if cost != "0":
            usage = UsageEvent(event_id=f"chain-usage-{n}", ts=t + timedelta(seconds=1), provider="openai",
                               model="gpt-4o", input_tokens=10, output_tokens=10, **common)  # fmt: skip
            events.append(PricedEvent(event=usage, cost_usd=Decimal(cost), priced=True, price_source="test"))

    one, two = "c" * 31 + "1", "c" * 31 + "2"
    span(one, "a" * 15 + "1", None, "planner", SpanKind.AGENT, "1")
    span(one, "a" * 15 + "2", "a" * 15 + "1", "coder", SpanKind.AGENT)
    span(one, "a" * 15 + "3", "a" * 15 + "2", "coder", SpanKind.LLM, "2")
    span(one, "a" * 15 + "4", "a" * 15 + "2", "critic", SpanKind.AGENT, "0.5")
    span(two, "b" * 15 + "1", None, "planner", SpanKind.AGENT)
    span(two, "b" * 15 + "2", "b" * 15 + "1", "coder", SpanKind.AGENT, "3")
    land_priced(Store(root), events, "chain-events")


def land_recent_spend(root: str, now: datetime, agent: str = "coder", cost: str = "1") -> str:
    """One ``acme`` trace of ``agent`` spending ``cost`` USD half an hour before ``now``
    (the last hour's rate a budget forecast reads); returns its trace id."""
    from agentledger.warehouse.landing import land_priced
    from agentledger.warehouse.storage import Store

    trace = "5" * 31 + "b"
    at = now - timedelta(minutes=30)
    usage = UsageEvent(
        event_id="recent-usage",
        ts=at,
        tenant="acme",
        agent=agent,
        agent_version="v2",
        trace_id=trace,
        span_id="6" * 15 + "c",
        provider="openai",
        model="gpt-4o",
        input_tokens=1_000,
        output_tokens=100,
    )
    land_priced(
        Store(root),
        [PricedEvent(event=usage, cost_usd=Decimal(cost), priced=True, price_source="test")],
        "recent",
    )
    return trace
