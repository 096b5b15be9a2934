"""Which time an event counts at: its own, or its arrival when its own is not believable.

Budgets and rollups bucket spend by event time, so a client that stamps its events two hours
in the past would put them outside a one-hour window and never trip it. An event whose time
is outside ``[arrival - allowed_lateness_s, arrival + max_skew_s]`` therefore counts at its
arrival (the moment the worker reads it) and is flagged: ``late`` before the range,
``clock_skew`` after it. The priced event keeps both times; the warehouse bills by event time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TimeFlag = Literal["late", "clock_skew"]

DEFAULT_ALLOWED_LATENESS_S = 600.0
"""An event up to 10 minutes old counts at its own time: a client's batching, retries and a
short outage stay well inside it, and a back-dated event leaves a window at most this early."""
DEFAULT_MAX_SKEW_S = 300.0
"""An event up to 5 minutes ahead counts at its own time (the clock skew the wire allows for
record timestamps, ``wire.MAX_FUTURE_MS``)."""


@dataclass(frozen=True, slots=True)
class ArrivalRule:
    allowed_lateness_s: float = DEFAULT_ALLOWED_LATENESS_S
    max_skew_s: float = DEFAULT_MAX_SKEW_S

    def __post_init__(self) -> None:
        if self.allowed_lateness_s < 0 or self.max_skew_s < 0:
            raise ValueError("allowed lateness and clock skew must be >= 0 seconds")

    def flag(self, event_s: float, arrival_s: float) -> TimeFlag | None:
        """None when the event counts at its own time; else why it counts at its arrival."""
        if event_s < arrival_s - self.allowed_lateness_s:
            return "late"
        if event_s > arrival_s + self.max_skew_s:
            return "clock_skew"
        return None
