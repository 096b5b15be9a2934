"""Which records of the events topic reached the worker's agent, and which Faust lost.

faust-streaming 0.15.3 can drop records it has already fetched when a rebalance lands while
it hands a batch over: ``Consumer.getmany`` breaks out of the batch when the flow stops or
the generation changes, and ``_drain_messages`` marks a record read even when handing it to
the agent was cut short. aiokafka's position has moved past them, so they never come back:
a hole in the middle of a partition (a total below the truth until a restart replays it) or,
at its end, a partition that never moves again (the "stall after restart" we used to see in
about half the crash-test runs). Offsets of the events topic are contiguous (no
transactions, no compaction), so the agent can tell: the tracker says when to fetch again.
Faust-free, so it is unit-tested as plain logic; ``worker.runtime`` uses it, ``worker.app`` wires that
to the consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class DeliveryTracker:
    refetch_after_s: float = 5.0
    expected: dict[int, int] = field(default_factory=dict)
    """partition -> the offset the agent should get next, this assignment."""
    asked: dict[int, tuple[int, float]] = field(default_factory=dict)
    """partition -> (offset, when) of the last refetch asked for."""

    def reset(self, starts: dict[int, int]) -> None:
        """A new assignment: each partition resumes at ``starts`` (committed or first offset);
        a partition missing from it starts wherever its first record is."""
        self.expected = dict(starts)
        self.asked.clear()

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self.expected.pop(p, None)
            self.asked.pop(p, None)

    def arrived(self, partition: int, offset: int, now: float) -> tuple[bool, int | None]:
        """A record reached the agent. Returns (process it?, offset to fetch again from).

        Behind or at the expected offset: process it (a record seen before is a replay the
        dedupe handles). Ahead of it: the records in between were lost; skip this one (it
        comes again) and fetch from the expected offset, once per ``refetch_after_s``."""
        want = self.expected.get(partition)
        if want is None or offset <= want:
            self.expected[partition] = offset + 1
            self.asked.pop(partition, None)
            return True, None
        last = self.asked.get(partition)
        if last is not None and last[0] == want and now - last[1] <= self.refetch_after_s:
            return False, None  # already asked: the rest of the stale batch goes by
        self.asked[partition] = (want, now)
        return False, want

    def behind(self, positions: dict[int, int], starts: dict[int, int] | None = None) -> dict[int, int]:
        """With the agent idle: partitions whose fetch position is past what reached the
        agent, and where to fetch them from. ``starts`` covers partitions that delivered
        nothing yet this assignment."""
        out: dict[int, int] = {}
        for p, pos in positions.items():
            start = self.expected.get(p, (starts or {}).get(p))
            if start is not None and pos > start:
                out[p] = start
        return out
