"""The worker's two stages on the Faust-free processor (docs/adr/0011): stage one's deltas go to
the partition of their scope, stage two drops a delta whose origin it already applied (per
scope, inside the same value as the totals), budgets and loops are evaluated where the scope
lives, and the user and conversation scopes are counted."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from agentledger.events import Action, ControlCommand, Policy, ToolCallEvent, UsageEvent
from agentledger.streams.policyfile import LoopSettings
from agentledger.streams.worker.deltas import partition_for
from agentledger.streams.worker.processor import MemoryStore, Output, Processor
from agentledger.wire import AnyEvent, dump, encode_envelope

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
T = NOW.timestamp()
_n = iter(range(1_000_000))


def usage(agent: str = "planner", tenant: str = "acme", trace: str = "a" * 32, **attrs: str) -> UsageEvent:
    # gpt-4o: $2.50 per million input tokens -> $2.50 each
    return UsageEvent(event_id=f"ev-{next(_n):08d}", ts=NOW, tenant=tenant, agent=agent, trace_id=trace,
                      span_id="b" * 16, provider="openai", model="gpt-4o", input_tokens=1_000_000,
                      output_tokens=0, attributes=attrs)  # fmt: skip


def stage_one(p: Processor, events: list[AnyEvent], partition: int, offset: int) -> Output:
    key = f"{events[0].tenant}/{events[0].agent}"
    return p.stage_one(encode_envelope(key, events), key.encode(), partition, offset, T)


def apply_all(p: Processor, out: Output) -> Output:
    done = Output()
    for _, _, value in out.deltas:
        got = p.stage_two(value, T)
        done.control += got.control
        done.alerts += got.alerts
    return done


def test_each_delta_record_holds_only_scopes_of_its_partition_and_carries_its_origin() -> None:
    p = Processor(MemoryStore(), partitions=6)
    out = stage_one(p, [usage("planner"), usage("coder"), usage("critic", tenant="globex")], 3, 41)
    dests = [d for d, _, _ in out.deltas]
    assert len(dests) == len(set(dests)) > 1  # one fat record per destination partition
    for dest, _, value in out.deltas:
        doc = orjson.loads(value)
        assert doc["o"] == [3, 41]
        assert {partition_for(k, 6) for k in doc["r"]} == {dest}
    assert p.store.get("tenant/acme") is None  # stage one keeps no rollups


def test_a_replayed_delta_is_not_counted_twice() -> None:
    one = Processor(MemoryStore(), partitions=4)
    two = Processor(MemoryStore(), partitions=4)
    first = stage_one(one, [usage(), usage()], 1, 7)
    apply_all(two, first)
    assert two.totals("tenant/acme", "1h", T).cost == Decimal("5.0")
    # stage one replays the record after a crash (its dedupe is memory: it sends it again)
    again = stage_one(Processor(MemoryStore(), partitions=4), [*decode(first)], 1, 7)
    assert [v for _, _, v in again.deltas] == [v for _, _, v in first.deltas]
    apply_all(two, again)
    apply_all(two, first)
    assert two.totals("tenant/acme", "1h", T).cost == Decimal("5.0")
    assert two.totals("agent/acme/planner", "1h", T).calls == 2
    assert two.counters["replayed_deltas"] >= len(orjson.loads(first.deltas[0][2])["r"])
    # an older offset of that partition is a replay too; a newer one, or another partition's, is not
    apply_all(two, stage_one(one, [usage()], 1, 6))
    assert two.totals("tenant/acme", "1h", T).cost == Decimal("5.0")
    apply_all(two, stage_one(one, [usage()], 1, 8))
    apply_all(two, stage_one(one, [usage()], 0, 7))
    assert two.totals("tenant/acme", "1h", T).cost == Decimal("10.0")


def test_a_half_written_apply_is_completed_by_the_replay_and_no_key_counts_twice() -> None:
    """A crash after some keys of a delta reached the changelog: the replay adds only to the
    keys whose mark is below the origin."""
    one = Processor(MemoryStore(), partitions=1)
    two = Processor(MemoryStore(), partitions=1)
    (_, _, value) = stage_one(one, [usage()], 0, 3).deltas[0]
    two.stage_two(value, T)
    lost = "agent/acme/planner"
    two.store.delete(lost)  # this key's changelog record never made it
    two.stage_two(value, T)
    assert two.totals(lost, "1h", T).cost == Decimal("2.5")
    assert two.totals("tenant/acme", "1h", T).cost == Decimal("2.5")
    assert two.store.get("tenant/acme").applied == {0: 3}  # type: ignore[union-attr]


def decode(out: Output) -> list[AnyEvent]:
    from agentledger.wire import decode_priced

    return [pe.event for _, v in out.priced for pe in decode_priced(v)[1]]


def test_a_tenant_budget_fed_from_two_source_partitions_kills_where_the_tenant_lives() -> None:
    """Two processes: A runs stage one for events partition 0, B for partition 1; stage two of
    the tenant's scope is on one of them only, and it sees both agents' spend."""
    parts = 2
    quiet = LoopSettings(enabled=False)
    a = Processor(MemoryStore(), partitions=parts, loops=quiet)
    b = Processor(MemoryStore(), partitions=parts, loops=quiet)
    a.held, b.held = {0}, {1}
    cap = dump(
        Policy.model_validate(
            {"policy_id": "cap", "window": "1h", "limit": "6", "selector": {"per": "tenant"}}
        )
    )
    for proc in (a, b):
        proc.observe_policy("cap", cap)
    home = {0: a, 1: b}
    commands: list[ControlCommand] = []
    for proc, agent, src in ((a, "planner", 0), (b, "coder", 1), (a, "planner", 0)):
        out = stage_one(proc, [usage(agent)], src, next(_n))
        for dest, _, value in out.deltas:
            got = home[dest].stage_two(value, T)
            commands += [ControlCommand.model_validate_json(v) for _, v in got.control]
    assert [(c.action, c.scope.key) for c in commands] == [(Action.KILL, "tenant/acme")]
    owner = home[partition_for("tenant/acme", parts)]
    assert owner.totals("tenant/acme", "1h", T).cost == Decimal("7.5")
    other = b if owner is a else a
    assert other.totals("tenant/acme", "1h", T).cost == 0
    # the other process's tick never lifts a kill it does not own
    assert other.tick(T + 7200).control == []


def test_a_loop_in_a_trace_fed_from_two_source_partitions_is_seen_whole() -> None:
    parts = 2
    a = Processor(MemoryStore(), partitions=parts, loops=LoopSettings(repeat_calls=4))
    home = a  # stage two of every partition here; stage one split over two source partitions
    trace = "c" * 32
    kills = []
    for i in range(4):
        agent, src = ("planner", 0) if i % 2 == 0 else ("coder", 1)
        ev = ToolCallEvent(event_id=f"tc-{i:08d}", ts=NOW, tenant="acme", agent=agent, trace_id=trace,
                           span_id=f"{i + 1:016x}", tool="search", args_hash="f" * 16)  # fmt: skip
        out = stage_one(a, [ev], src, i)
        kills += [v for _, _, v in out.deltas for v in [home.stage_two(v, T)] for v in v.control]
    assert len(kills) == 1
    cmd = ControlCommand.model_validate_json(kills[0][1])
    assert cmd.action is Action.KILL and cmd.scope.key == f"trace/acme/{trace}"


def test_user_and_conversation_scopes_are_counted_and_budgeted() -> None:
    p = Processor(MemoryStore(), loops=LoopSettings(enabled=False))
    p.observe_policy(
        "per-user",
        dump(
            Policy.model_validate(
                {"policy_id": "per-user", "window": "1h", "limit": "4", "selector": {"per": "user"}}
            )
        ),
    )
    ev1 = usage(**{"user.id": "u-1", "gen_ai.conversation.id": "c-9"})
    ev2 = usage(**{"enduser.id": "u-1"})
    ev3 = usage(**{"user.id": "u-2"})
    out = p.process(encode_envelope("acme/planner", [ev1, ev2, ev3]), b"acme/planner", 0, 0, T)
    assert p.totals("user/acme/u-1", "1h", T).cost == Decimal("5.0")
    assert p.totals("user/acme/u-2", "1h", T).calls == 1
    assert p.totals("conversation/acme/c-9", "1h", T).cost == Decimal("2.5")
    cmds = [ControlCommand.model_validate_json(v) for _, v in out.control]
    assert [(c.action, c.scope.key) for c in cmds] == [(Action.KILL, "user/acme/u-1")]
