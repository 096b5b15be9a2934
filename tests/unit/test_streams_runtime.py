"""The budget worker's runtime without Faust or Kafka: batched changelog flush, ack after the
flush, refetch of records Faust drops, rebalances (ADRs 5 and 6). The processor and the table
store are the real ones; the broker side is a fake that records what would be sent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from agentledger.events import ControlCommand, UsageEvent, Window
from agentledger.streams.worker.processor import Processor
from agentledger.streams.worker.rollups import Rollup
from agentledger.streams.worker.runtime import WorkerRuntime
from agentledger.streams.worker.tablestore import TableStore
from agentledger.wire import encode_envelope
from tests.unit.test_streams_budget_logic import policy, usage

FLUSH_S = 0.2
REFETCH_S = 5.0


class FakeTable:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def keys(self) -> Any:
        return self.data.keys()


class Broker:
    """Both ports: what the worker sends, in order, with acks in the same log."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.changelog: list[tuple[int, str, bytes | None]] = []
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.fail_changelog = False
        self.starts: dict[int, int] = {}
        self.fetch_positions: dict[int, int] = {}
        self.seeks: list[dict[int, int]] = []
        self.is_settled = True
        self.offsets_error: BaseException | None = None

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.sent.append((topic, key, value))

    async def send_changelog(self, partition: int, key: str, value: bytes | None) -> None:
        if self.fail_changelog:
            raise OSError("broker away")
        self.changelog.append((partition, key, value))
        self.log.append(("changelog", key))

    async def ack(self, token: Any) -> None:
        self.log.append(("ack", token))

    def settled(self) -> bool:
        return self.is_settled

    async def positions(self) -> dict[int, int]:
        return dict(self.fetch_positions)

    async def start_offsets(self) -> dict[int, int]:
        if self.offsets_error is not None:
            raise self.offsets_error
        return dict(self.starts)

    async def seek(self, offsets: dict[int, int]) -> None:
        self.seeks.append(offsets)

    def acked(self) -> list[Any]:
        return [token for what, token in self.log if what == "ack"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[WorkerRuntime, Broker, Clock, FakeTable]:
    broker, clock, table = Broker(), Clock(), FakeTable()
    store = TableStore(table)
    rt = WorkerRuntime(
        Processor(store),
        store,
        broker,
        broker,
        state_flush_s=FLUSH_S,
        refetch_after_s=REFETCH_S,
        clock=clock,
        wall_clock=lambda: EVENT_TS,
    )
    rt.ack = broker.ack
    return rt, broker, clock, table


EVENT_TS = usage().ts.timestamp()


def envelope(*events: UsageEvent) -> bytes:
    return encode_envelope("acme/planner", list(events))


def agent_day_cost(raw: bytes | None) -> Decimal:
    assert raw is not None
    return Rollup.loads(raw).total(Window.CALENDAR_DAY, EVENT_TS).cost


async def feed(rt: WorkerRuntime, partition: int, offsets: range) -> None:
    for off in offsets:
        taken = await rt.on_record(
            ("tok", partition, off), b"acme/planner", envelope(usage()), partition, off
        )
        assert taken


async def test_a_flush_writes_each_changed_key_once_then_acks_every_record_behind_it() -> None:
    rt, broker, clock, table = make()
    await feed(rt, 0, range(5))  # five records within one flush interval
    assert broker.changelog == [] and broker.acked() == []
    clock.now += FLUSH_S
    await feed(rt, 0, range(5, 6))  # the sixth is past the interval: it flushes
    keys = [k for _, k, _ in broker.changelog]
    assert len(keys) == len(set(keys)) and "agent/acme/planner" in keys
    assert all(p == rt.store.partition_of(k) for p, k, _ in broker.changelog)  # the scope's partition
    value = dict((k, v) for _, k, v in broker.changelog)["agent/acme/planner"]
    assert agent_day_cost(value) == Decimal("0.035") * 6  # six events of $0.035
    assert table.data["agent/acme/planner"] == value
    assert broker.acked() == [("tok", 0, off) for off in range(6)]
    first_ack = broker.log.index(("ack", ("tok", 0, 0)))
    assert all(what == "changelog" for what, _ in broker.log[:first_ack])
    assert all(what == "ack" for what, _ in broker.log[first_ack:])
    assert [t for t, _, _ in broker.sent].count("priced") == 6


async def test_a_failed_changelog_write_acks_nothing_and_the_next_flush_carries_it() -> None:
    rt, broker, _clock, _ = make()
    await feed(rt, 0, range(3))
    broker.fail_changelog = True
    with pytest.raises(OSError):
        await rt.flush()
    assert broker.acked() == [] and len(rt.pending) == 3
    broker.fail_changelog = False
    await rt.flush()
    assert "agent/acme/planner" in {k for _, k, _ in broker.changelog}
    assert broker.acked() == [("tok", 0, off) for off in range(3)]


async def test_the_idle_flusher_covers_the_last_records_and_survives_a_broker_error() -> None:
    rt, broker, clock, _ = make()
    await feed(rt, 0, range(2))
    assert not await rt.flush_if_quiet()  # within the interval: nothing yet
    clock.now += FLUSH_S
    broker.fail_changelog = True
    assert not await rt.flush_if_quiet()  # logged, not raised; still pending
    assert broker.acked() == [] and len(rt.pending) == 2
    broker.fail_changelog = False
    assert not await rt.flush_if_quiet()  # a failed attempt counts as a flush: wait again
    clock.now += FLUSH_S
    assert await rt.flush_if_quiet()
    assert broker.acked() == [("tok", 0, 0), ("tok", 0, 1)]


async def test_records_reach_acks_only_through_an_attached_agent() -> None:
    rt, broker, _clock, _ = make()
    rt.ack = None
    await feed(rt, 0, range(2))
    await rt.flush()
    assert broker.acked() == [] and len(rt.pending) == 2  # kept until an agent can ack them
    async with rt.attached(broker.ack):
        await rt.flush()
    assert broker.acked() == [("tok", 0, 0), ("tok", 0, 1)]


async def test_a_record_ahead_of_the_expected_offset_is_skipped_and_the_hole_fetched_again() -> None:
    rt, broker, _clock, _ = make()
    broker.starts = {0: 10}
    await rt.on_assigned({0})
    taken = await rt.on_record("t12", b"acme/planner", envelope(usage()), 0, 12)
    assert not taken and broker.seeks == [{0: 10}] and rt.processor.counters["refetches"] == 1
    assert broker.sent == [] and rt.pending == []
    # the rest of the stale batch goes by without asking again
    assert not await rt.on_record("t13", b"acme/planner", envelope(usage()), 0, 13)
    assert broker.seeks == [{0: 10}]
    assert await rt.on_record("t10", b"acme/planner", envelope(usage()), 0, 10)
    assert [p.token for p in rt.pending] == ["t10"]


async def test_a_lost_tail_is_fetched_again_once_the_agent_is_idle() -> None:
    rt, broker, clock, _ = make()
    broker.starts = {0: 0, 1: 0}
    await rt.on_assigned({0, 1})
    await feed(rt, 0, range(3))
    broker.fetch_positions = {0: 5, 1: 0}  # offsets 3 and 4 were fetched, never delivered
    await rt.refetch_dropped()
    assert broker.seeks == []  # the agent was busy a moment ago
    clock.now += REFETCH_S + 0.1
    broker.is_settled = False
    await rt.refetch_dropped()
    assert broker.seeks == []  # no refetch during a rebalance or recovery
    broker.is_settled = True
    await rt.refetch_dropped()
    assert broker.seeks == [{0: 3}]


async def test_the_tail_check_never_raises() -> None:
    rt, broker, clock, _ = make()
    broker.starts = {0: 0}
    broker.fetch_positions = {0: 4}
    broker.offsets_error = OSError("broker away")
    clock.now += REFETCH_S + 0.1
    await rt.refetch_dropped()  # partition 0 unknown: start offsets needed, and they fail
    assert broker.seeks == []


async def test_a_revoked_partition_drops_its_state_and_its_records_stay_unacked() -> None:
    rt, broker, _clock, _ = make()
    await feed(rt, 0, range(2))
    await feed(rt, 1, range(2))
    rt.on_revoked({1})
    await rt.flush()
    assert broker.acked() == [("tok", 0, 0), ("tok", 0, 1)]
    # stage-two state of changelog partition 1 (the scopes that hash there) is dropped too
    assert 1 not in {p for p, _, _ in broker.changelog}
    assert not [k for k in rt.store.live if rt.store.partition_of(k) == 1]


async def test_assignment_without_committed_offsets_lets_the_first_record_set_the_start() -> None:
    rt, broker, _clock, _ = make()
    broker.offsets_error = TimeoutError()
    await rt.on_assigned({0})
    assert await rt.on_record("t7", b"acme/planner", envelope(usage()), 0, 7)
    assert broker.seeks == []


async def test_budgets_tick_only_once_the_compacted_topics_are_read() -> None:
    """A kill is lifted when the calendar day rolls over, by the tick: not before the
    policies, commands and budgets are read (``ready``), then with the resume first."""
    rt, broker, _clock, _ = make()
    rt.processor.observe_policy("cap", policy("cap", "0.10"))
    now = [EVENT_TS]
    rt.wall_clock = lambda: now[0]
    assert await rt.on_record("t0", b"acme/planner", envelope(*[usage() for _ in range(4)]), 0, 0)
    assert [command_action(v) for t, _, v in broker.sent if t == "control"] == ["kill"]
    broker.sent.clear()
    now[0] = EVENT_TS + 120  # 00:01 the next day
    await rt.tick()
    assert broker.sent == []
    rt.ready.set()
    await rt.tick()
    assert [command_action(v) for t, _, v in broker.sent if t == "control"] == ["resume"]
    assert broker.sent[0][0] == "control"


def command_action(raw: bytes | None) -> str:
    assert raw is not None
    return ControlCommand.model_validate_json(raw).action.value


async def test_a_processing_error_sends_the_record_to_the_dlq_and_acks_it_after_the_flush() -> None:
    rt, broker, _clock, _ = make()

    def broken(*_: Any) -> Any:
        raise RuntimeError("boom")

    rt.step = broken
    assert await rt.on_record("t0", b"acme/planner", b"{}", 0, 0)
    dlq = [v for t, _, v in broker.sent if t == "dlq"]
    assert len(dlq) == 1 and dlq[0] is not None and b"worker error: RuntimeError('boom')" in dlq[0]
    await rt.flush()
    assert broker.acked() == ["t0"]
