"""Stage two's state across restarts and processes (docs/adr/0011, addendum): the loop detector's
state rides in the trace rollup (so a restart restored from the changelog kills at the same call
N), a screened kill is decided by the trace's owner in stage two and neither a per-trace budget
there nor a restart lifts or replaces it, and stage one's dedupe can be warmed from the events
records it already processed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agentledger.events import Action, ControlCommand, Policy, ScreenEvent, ToolCallEvent, UsageEvent
from agentledger.lanes import ControlRecords
from agentledger.streams.policyfile import LoopSettings
from agentledger.streams.worker.dedupe import Dedupe
from agentledger.streams.worker.deltas import partition_for
from agentledger.streams.worker.loops import TraceLoopState
from agentledger.streams.worker.processor import MemoryStore, Output, Processor
from agentledger.streams.worker.rollups import Rollup
from agentledger.wire import AnyEvent, dump, encode_envelope

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
T = NOW.timestamp()
TRACE = "c" * 32


def tool(i: int, args: str = "f" * 16, trace: str = TRACE) -> ToolCallEvent:
    return ToolCallEvent(event_id=f"tool-{i:04d}", ts=NOW + timedelta(seconds=i), tenant="acme", agent="planner",
                         trace_id=trace, span_id=f"{i + 1:016x}", tool="search", args_hash=args)  # fmt: skip


def usage(i: int, trace: str = TRACE) -> UsageEvent:
    # gpt-4o: $2.50 per million input tokens -> $2.50 each
    return UsageEvent(event_id=f"usage-{i:04d}", ts=NOW, tenant="acme", agent="writer", trace_id=trace,
                      span_id=f"{i + 1:016x}", provider="openai", model="gpt-4o", input_tokens=1_000_000,
                      output_tokens=0)  # fmt: skip


def screen_kill(trace: str = TRACE) -> ScreenEvent:
    return ScreenEvent(event_id="screen-0001", ts=NOW, tenant="acme", agent="writer", trace_id=trace,
                       span_id="b" * 16, channel="tool", source="fetch", detector="rules+linear-v1",
                       score=0.93, flagged=True, action="kill")  # fmt: skip


def both_stages(p: Processor, events: list[AnyEvent], offset: int, partition: int = 0) -> Output:
    """Stage one then stage two, through the serialised delta records (origin checked)."""
    key = f"{events[0].tenant}/{events[0].agent}"
    one = p.stage_one(encode_envelope(key, events), key.encode(), partition, offset, T)
    out = Output(control=list(one.control))
    for _, _, value in one.deltas:
        out.control += p.stage_two(value, T).control
    return out


def restored(store: MemoryStore) -> MemoryStore:
    """What a restarted worker has: each rollup as its last changelog record."""
    back = MemoryStore()
    back.data = {k: Rollup.loads(r.dumps()) for k, r in store.data.items()}
    return back


def kills(out: list[Output]) -> list[ControlCommand]:
    return [ControlCommand.model_validate_json(v) for o in out for _, v in o.control]


# -- loop state -------------------------------------------------------------------------------


def test_a_restart_mid_loop_kills_at_the_same_nth_call() -> None:
    loops = LoopSettings(repeat_calls=4, repeat_window_s=60)
    before = Processor(MemoryStore(), partitions=1, loops=loops)
    outs = [both_stages(before, [tool(i)], offset=i) for i in range(2)]
    after = Processor(restored(before.store), partitions=1, loops=loops)  # type: ignore[arg-type]
    outs.append(both_stages(after, [tool(1)], offset=1))  # replayed past the committed offset: dropped
    outs += [both_stages(after, [tool(i)], offset=i) for i in range(2, 6)]
    cmds = kills(outs)
    assert [(c.action, c.params.kill_reason, c.cause_event_id) for c in cmds] == [
        (Action.KILL, "loop", "tool-0003")  # the 4th identical call, as without the restart
    ]


def test_the_loop_state_round_trips_through_the_trace_rollup() -> None:
    st = TraceLoopState()
    st.tool_times[("search", "ab")] = __import__("collections").deque([1.5, 2.5])
    st.llm.extend([(1.0, 10), (2.0, 20)])
    st.llm_tokens = 30
    st.calls_since_progress = 2
    r = Rollup(loop=st)
    back = Rollup.loads(r.dumps()).loop
    assert back is not None
    assert back.dump() == st.dump() and back.llm_tokens == 30
    assert Rollup.loads(Rollup().dumps()).loop is None  # scopes other than traces carry none


def test_a_trace_with_many_distinct_calls_keeps_a_bounded_state() -> None:
    p = Processor(MemoryStore(), partitions=1, loops=LoopSettings(repeat_calls=4))
    both_stages(p, [tool(i, args=f"{i + 1:016x}") for i in range(1_200)], offset=0)
    r = p.store.get(f"trace/acme/{TRACE}")
    assert r is not None and r.loop is not None
    assert len(r.loop.tool_times) == 1_000
    assert ("search", f"{1_200:016x}") in r.loop.tool_times  # the newest kept


# -- screened kills ---------------------------------------------------------------------------


def trace_budget() -> bytes:
    return dump(
        Policy.model_validate(
            {
                "policy_id": "per-trace",
                "window": "1h",
                "limit": "20",
                "selector": {"per": "trace"},
                "thresholds": [{"at": 0.25, "action": "throttle", "rate_per_s": 1}],
            }
        )
    )


def test_a_screened_kill_holds_while_the_traces_budget_throttles_on_another_process_and_after_a_restart() -> (
    None
):
    parts = 2
    quiet = LoopSettings(enabled=False)
    a, b = (Processor(MemoryStore(), partitions=parts, loops=quiet) for _ in range(2))
    owner_part = partition_for(f"trace/acme/{TRACE}", parts)
    home = {owner_part: b, 1 - owner_part: a}  # b owns the trace; a runs stage one of the events
    a.held, b.held = {1 - owner_part}, {owner_part}
    for proc in (a, b):
        proc.observe_policy("per-trace", trace_budget())
    guard = ControlRecords()  # what every Guard holds: the control topic by key
    key = f"admission.budget:trace/acme/{TRACE}"

    def run(events: list[AnyEvent], offset: int, procs: list[Processor]) -> None:
        ek = f"{events[0].tenant}/{events[0].agent}"
        one = a.stage_one(encode_envelope(ek, events), ek.encode(), 1 - owner_part, offset, T)
        published = list(one.control)
        for dest, _, value in one.deltas:
            published += home[dest].stage_two(value, T).control
        for k, v in published:  # read back by everyone, as from the topic
            guard.apply(k.decode(), ControlCommand.model_validate_json(v))
            for proc in procs:
                proc.observe_command(k.decode(), v)

    run([screen_kill()], 0, [a, b])
    assert guard.current[key].action is Action.KILL
    run([usage(1), usage(2)], 1, [a, b])  # $5 of $20: the trace's budget wants a throttle
    in_force = guard.current[key]
    assert (in_force.action, in_force.params.kill_reason, in_force.cause_event_id) == (
        Action.KILL, "other", "screen-0001"
    )  # fmt: skip

    # b restarts: its table restored, the control topic read back, its commands adopted
    c = Processor(restored(b.store), partitions=parts, loops=quiet)  # type: ignore[arg-type]
    c.held = {owner_part}
    c.observe_policy("per-trace", trace_budget())
    for k, cmd in guard.raw.items():
        c.observe_command(k, dump(cmd))
    c.adopt_commands(T)
    home[owner_part] = c
    run([usage(3)], 2, [a, c])  # $7.50: the new owner's budget evaluates the throttle afresh
    in_force = guard.current[key]
    assert (in_force.action, in_force.cause_event_id) == (Action.KILL, "screen-0001")


def test_a_screened_kill_is_published_by_the_traces_owner_only() -> None:
    parts = 2
    a, b = (Processor(MemoryStore(), partitions=parts) for _ in range(2))
    ek = "acme/writer"
    one = a.stage_one(encode_envelope(ek, [screen_kill()]), ek.encode(), 0, 0, T)
    assert one.control == []  # stage one decides no kill
    got = [b.stage_two(v, T) for _, _, v in one.deltas]
    assert [json.loads(v)["action"] for o in got for _, v in o.control] == ["kill"]
    again = [b.stage_two(v, T) for _, _, v in one.deltas]  # a replay of the same origin
    assert [o.control for o in again] == [[] for _ in again]


# -- dedupe warmed from the events topic --------------------------------------------------------


def test_a_dedupe_warmed_with_processed_records_drops_their_duplicates_but_not_rejected_ids() -> None:
    good = usage(1)
    bad = json.loads(usage(2).model_dump_json())
    bad["input_tokens"] = -5  # rejected by the contract: it went to the DLQ, never seen
    raw = (
        b'{"v":1,"key":"acme/writer","events":['
        + good.model_dump_json().encode()
        + b","
        + json.dumps(bad).encode()
        + b"]}"
    )
    d = Dedupe()
    assert d.warm([raw, b"not an envelope"]) == 1
    assert d.first_time("acme", good.event_id) is False  # the duplicate across the crash
    assert d.first_time("acme", "usage-0002") is True  # its valid copy still counts
    assert d.first_time("globex", good.event_id) is True  # another tenant's id
