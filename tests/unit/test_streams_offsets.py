"""The delivery tracker: records Faust lost in a rebalance are noticed and fetched again,
replays are let through (the dedupe handles them), and one hole asks once."""

from __future__ import annotations

from agentledger.streams.worker.offsets import DeliveryTracker


def test_a_hole_in_the_middle_is_fetched_again_once() -> None:
    t = DeliveryTracker(refetch_after_s=5)
    t.reset({0: 10})
    assert [t.arrived(0, o, 0.0) for o in (10, 11, 12)] == [(True, None)] * 3
    # 13..24 were dropped: 25 is skipped and the partition fetched again from 13
    assert t.arrived(0, 25, 1.0) == (False, 13)
    # the rest of the stale batch goes by without asking again
    assert t.arrived(0, 26, 1.1) == (False, None)
    # ...unless the refetch never came: ask again after refetch_after_s
    assert t.arrived(0, 27, 7.0) == (False, 13)
    # the refetched records arrive and everything moves on
    assert t.arrived(0, 13, 7.2) == (True, None)
    assert t.arrived(0, 14, 7.2) == (True, None)
    assert t.expected[0] == 15 and 0 not in t.asked


def test_replays_and_first_records_are_processed() -> None:
    t = DeliveryTracker()
    t.reset({1: 50})
    assert t.arrived(1, 40, 0.0) == (True, None)  # before the committed offset: a replay
    assert t.arrived(2, 7, 0.0) == (True, None)  # no start known: the first record sets it
    assert t.arrived(2, 8, 0.0) == (True, None)
    assert t.arrived(2, 9, 0.0) == (True, None)
    assert t.arrived(1, 41, 0.0) == (True, None)
    assert t.arrived(1, 43, 0.0) == (False, 42)


def test_a_lost_tail_is_found_when_the_agent_is_idle() -> None:
    t = DeliveryTracker()
    t.reset({0: 0, 1: 0})
    for o in range(25):
        t.arrived(0, o, 0.0)
    # aiokafka fetched partition 0 up to 89 but only 0..24 reached the agent; partition 1 is
    # at its committed offset; partition 2 delivered nothing yet and its start says 5
    assert t.behind({0: 89, 1: 0, 2: 30}, starts={2: 5}) == {0: 25, 2: 5}
    assert t.behind({0: 25, 1: 0}) == {}


def test_a_new_assignment_forgets_the_old_one() -> None:
    t = DeliveryTracker()
    t.reset({0: 10})
    t.arrived(0, 10, 0.0)
    t.forget({0})
    assert t.arrived(0, 99, 0.0) == (True, None)
    t.reset({})
    assert t.expected == {}
