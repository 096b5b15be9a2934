"""The worker's table store: many records touching a rollup give one changelog record per
flush, on the partition the key belongs to; deletes become tombstones there too."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agentledger.events import Window
from agentledger.streams.worker.deltas import partition_for
from agentledger.streams.worker.processor import Processor
from agentledger.streams.worker.rollups import Rollup
from agentledger.streams.worker.tablestore import TableStore
from agentledger.wire import encode_envelope
from tests.unit.test_streams_budget_logic import usage

T = 1_700_000_000
PARTS = 4


def on(partition: int, kind: str = "tenant") -> str:
    """A scope key whose home partition is ``partition``."""
    return next(k for i in range(1000) if partition_for(k := f"{kind}/t{i}", PARTS) == partition)


class FakeTable:
    """The two faces of a Faust table the store uses: ``get``/``keys`` and ``data``."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def keys(self) -> Any:
        return self.data.keys()


def rollup(cost: str) -> Rollup:
    r = Rollup()
    r.add(T, Decimal(cost), 10, 1, 0)
    return r


def month_cost(raw: bytes | None) -> Decimal:
    assert raw is not None
    return Rollup.loads(raw).total(Window.CALENDAR_MONTH, T).cost


def test_each_key_once_per_flush_on_its_own_partition() -> None:
    table = FakeTable()
    store = TableStore(table, PARTS)
    a, b = on(2, "agent"), on(3)
    for _ in range(5):  # five records touch the same agent, whose scope lives on partition 2
        r = store.get(a) or Rollup()
        r.add(T, Decimal("0.10"), 10, 1, 0)
        store.put(a, r)
    store.put(b, rollup("1"))
    store.put(f"policy/cap|{b}", rollup("1"))  # a policy counter lives with its scope
    changes = store.take_changes()
    assert sorted((p, k) for p, k, _ in changes) == [(2, a), (3, f"policy/cap|{b}"), (3, b)]
    value = {k: v for _, k, v in changes}[a]
    assert month_cost(value) == Decimal("0.50") and table.data[a] == value
    assert store.take_changes() == []  # nothing changed since


def test_delete_is_a_tombstone_and_a_put_revives() -> None:
    T1, T2 = (
        on(1, "trace/acme"),
        next(k for i in range(1000) if partition_for(k := f"trace/acme/x{i}", PARTS) == 1),
    )
    table = FakeTable()
    table.data[T1] = rollup("1").dumps()
    table.data[T2] = rollup("2").dumps()
    store = TableStore(table, PARTS)
    store.delete(T1)
    store.delete(T2)
    store.put(T2, rollup("3"))
    assert sorted(store.all_keys()) == [T2]
    changes = {k: (p, v) for p, k, v in store.take_changes()}
    assert changes[T1] == (1, None)
    assert month_cost(changes[T2][1]) == 3
    assert list(table.data) == [T2]


def test_lost_partitions_are_forgotten_and_read_again_from_the_table() -> None:
    table = FakeTable()
    store = TableStore(table, PARTS)
    zero, one = on(0), on(1)
    store.put(zero, rollup("1"))
    store.put(one, rollup("2"))
    store.take_changes()
    store.put(one, rollup("5"))  # not yet flushed when partition 1 is revoked
    store.drop_partitions({1})
    assert [k for _, k, _ in store.take_changes()] == []
    # another worker owned partition 1 meanwhile; the recovered table is what we read now
    table.data[one] = rollup("7").dumps()
    got, kept = store.get(one), store.get(zero)
    assert got is not None and got.total(Window.CALENDAR_MONTH, T).cost == 7
    assert kept is not None and kept.total(Window.CALENDAR_MONTH, T).cost == 1


def test_processor_totals_read_through_unflushed_changes() -> None:
    """Budgets read live state: a change is visible before its changelog flush."""
    table = FakeTable()
    store = TableStore(table)
    proc = Processor(store)
    ev = usage()  # $0.035
    proc.process(encode_envelope("acme/planner", [ev]), b"acme/planner", 0, 0, ev.ts.timestamp())
    assert proc.totals("agent/acme/planner", "calendar_day", ev.ts.timestamp()).cost == Decimal("0.035")
    assert table.data == {} and "agent/acme/planner" in store.dirty
    store.take_changes()
    written = Rollup.loads(table.data["agent/acme/planner"])
    assert written.total(Window.CALENDAR_DAY, ev.ts.timestamp()).cost == Decimal("0.035")
    assert "agent/acme/planner" not in store.dirty


def test_changes_whose_write_failed_come_back_next_time() -> None:
    T1 = "trace/acme/t1"
    table = FakeTable()
    table.data[T1] = rollup("1").dumps()
    store = TableStore(table, PARTS)
    store.put("tenant/acme", rollup("2"))
    store.delete(T1)
    changes = store.take_changes()
    store.mark_changed(changes)  # the changelog send raised
    again = {k: v for _, k, v in store.take_changes()}
    assert set(again) == {"tenant/acme", T1} and again[T1] is None
    assert month_cost(again["tenant/acme"]) == 2
