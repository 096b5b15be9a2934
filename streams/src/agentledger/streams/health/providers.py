"""Provider health: a circuit breaker per (provider, model) fed by observations of LLM calls.

An ``Observation`` is what one events record said about one provider/model: calls, errors,
latency sum, max and a coarse histogram, at the record's newest event time. The health worker
aggregates each record's spans into observations and repartitions them by provider
(ADR 0012), so a circuit sees every partition's calls; ``record`` is the one-call form.

Closed: observations in the last ``window_s`` seconds are counted; with at least
``min_volume`` calls, an error rate at or above ``error_rate`` (or a p95 latency above
``latency_p95_ms``, estimated from the histogram and capped by the largest latency) opens the
circuit. Open: after ``half_open_after_s`` (doubling after each failed probe, up to 16x) the
circuit is half-open; ``probe_volume`` healthy calls close it, failing ones open it again.
What that means for commands (failover / resume) is decided by the health engine from
``providers.half_open``. Event time is used for the window so a replayed backlog (older than
the window) never trips a circuit; the clock is injected for tests. ``to_state``/``from_state``
carry a circuit through the changelog table.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agentledger.streams.healthconfig import ProvidersConfig
from agentledger.streams.slo import slow_reason_counts


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


LATENCY_EDGES_MS: tuple[float, ...] = (
    10, 25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000,
    30000, 60000, 120000,
)  # fmt: skip
"""Upper edges of the latency histogram bins (the last bin is everything above)."""


def latency_bin(ms: float) -> int:
    return bisect_left(LATENCY_EDGES_MS, ms)


@dataclass(slots=True)
class Observation:
    """Calls to one provider/model seen in one source record (or one call: ``single``)."""

    ts: float  # newest event time of the calls, epoch seconds
    calls: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)  # latency bin -> calls
    cause: str | None = None  # an event id: the first failing call, else the first call
    # successful calls, and those within the latency objective's threshold (when one is set:
    # every process reads the same policy file), with the latest successful call over it
    oks: int = 0
    oks_within: int = 0
    slow_cause: str | None = None

    @classmethod
    def single(cls, ts: float, error: bool, latency_ms: float, cause: str | None = None) -> Observation:
        obs = cls(ts)
        obs.add(ts, error, latency_ms, cause)
        return obs

    def add(
        self, ts: float, error: bool, latency_ms: float, cause: str | None = None, within: bool | None = None
    ) -> None:
        self.ts = max(self.ts, ts)
        self.calls += 1
        self.errors += int(error)
        if not error:
            self.oks += 1
            self.oks_within += within is not False
            if within is False and cause is not None:
                self.slow_cause = cause
        self.latency_sum_ms += latency_ms
        self.latency_max_ms = max(self.latency_max_ms, latency_ms)
        b = latency_bin(latency_ms)
        self.histogram[b] = self.histogram.get(b, 0) + 1
        if cause is not None and (self.cause is None or (error and self.errors == 1)):
            self.cause = cause

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts, "n": self.calls, "e": self.errors, "ls": self.latency_sum_ms,
            "lm": self.latency_max_ms, "h": {str(k): v for k, v in self.histogram.items()}, "c": self.cause,
            "o": self.oks, "w": self.oks_within, "sc": self.slow_cause,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Observation:
        return cls(
            float(d["ts"]), int(d["n"]), int(d["e"]), float(d["ls"]), float(d["lm"]),
            {int(k): int(v) for k, v in d.get("h", {}).items()}, d.get("c"),
            int(d.get("o", int(d["n"]) - int(d["e"]))), int(d.get("w", int(d["n"]) - int(d["e"]))), d.get("sc"),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class CircuitTransition:
    """A state change, with the figures that caused it."""

    provider: str
    model: str
    old: CircuitState
    new: CircuitState
    calls: int
    errors: int
    error_rate: float
    p95_ms: float | None
    reason: str


def _oks(observations: Iterable[Observation]) -> tuple[int, int]:
    """(successful calls within the latency threshold, successful calls)."""
    within = oks = 0
    for o in observations:
        within += o.oks_within
        oks += o.oks
    return within, oks


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def p95_of(observations: Iterable[Observation]) -> float | None:
    """The 95th percentile latency of the calls, from the histograms: the upper edge of the
    bin holding it, never above the largest latency seen."""
    counts: dict[int, int] = {}
    calls, top = 0, 0.0
    for o in observations:
        calls += o.calls
        top = max(top, o.latency_max_ms)
        for b, n in o.histogram.items():
            counts[b] = counts.get(b, 0) + n
    if not calls:
        return None
    rank = min(calls - 1, int(0.95 * calls))
    seen = 0
    for b in sorted(counts):
        seen += counts[b]
        if seen > rank:
            return min(LATENCY_EDGES_MS[b], top) if b < len(LATENCY_EDGES_MS) else top
    return top


class ProviderCircuit:
    """One provider/model circuit. ``observe`` calls, ``tick`` on a timer."""

    def __init__(self, provider: str, model: str, cfg: ProvidersConfig, clock: Callable[[], float]) -> None:
        self.provider, self.model, self.cfg, self.clock = provider, model, cfg, clock
        self.state = CircuitState.CLOSED
        self.samples: deque[Observation] = deque()  # by arrival, event time clamped to now
        self.calls = 0  # calls and errors in `samples`, kept as they come and go: O(1) per record
        self.errors = 0
        self.opened_at = 0.0
        self.reopens = 0  # consecutive failed probes: the open period doubles each time
        self.probes: list[Observation] = []

    def record(self, ts: float, error: bool, latency_ms: float) -> CircuitTransition | None:
        lo = self.cfg.latency_objective
        obs = Observation(ts)
        obs.add(ts, error, latency_ms, within=None if lo is None else latency_ms <= lo.threshold_ms)
        return self.observe(obs)

    def observe(self, obs: Observation) -> CircuitTransition | None:
        now = self.clock()
        if obs.ts < now - self.cfg.window_s or obs.calls <= 0:
            return None  # stale (a replayed backlog): says nothing about now
        if self.state is CircuitState.HALF_OPEN:
            self.probes.append(obs)
            return self._judge_probes()
        obs.ts = min(obs.ts, now)
        self.samples.append(obs)
        self.calls += obs.calls
        self.errors += obs.errors
        # Per record only the O(1) error-rate check; latency percentiles wait for the timer tick.
        return self._evaluate(now, with_latency=False) if self.state is CircuitState.CLOSED else None

    def _figures(self, rows: list[Observation]) -> tuple[int, int, float, float | None]:
        calls = sum(o.calls for o in rows)
        errors = sum(o.errors for o in rows)
        return calls, errors, (errors / calls if calls else 0.0), p95_of(rows)

    def _unhealthy(
        self, errors: int, calls: int, p95_ms: float | None, oks: tuple[int, int] | None = None
    ) -> str | None:
        if calls and errors / calls >= self.cfg.error_rate:
            return f"error rate {errors}/{calls} >= {self.cfg.error_rate:.0%}"
        if self.cfg.latency_p95_ms is not None and p95_ms is not None and p95_ms > self.cfg.latency_p95_ms:
            return f"p95 latency {p95_ms:.0f} ms > {self.cfg.latency_p95_ms:.0f} ms"
        lo = self.cfg.latency_objective
        if lo is not None and oks is not None:
            return slow_reason_counts(oks[0], oks[1], lo.threshold_ms, lo.target)
        return None

    def _move(self, new: CircuitState, rows: list[Observation], reason: str) -> CircuitTransition:
        calls, errors, rate, p = self._figures(rows)
        old, self.state = self.state, new
        return CircuitTransition(self.provider, self.model, old, new, calls, errors, rate, p, reason)

    @property
    def open_for_s(self) -> float:
        return self.cfg.half_open_after_s * 2.0 ** min(self.reopens, 4)

    def tick(self) -> CircuitTransition | None:
        """Evaluate the window now (also called on a timer, so time alone moves the state)."""
        now = self.clock()
        if self.state is CircuitState.OPEN and now - self.opened_at >= self.open_for_s:
            self.probes = []
            return self._move(CircuitState.HALF_OPEN, [], "waiting for probe traffic")
        return self._evaluate(now, with_latency=True) if self.state is CircuitState.CLOSED else None

    def _evaluate(self, now: float, with_latency: bool) -> CircuitTransition | None:
        while self.samples and self.samples[0].ts < now - self.cfg.window_s:
            gone = self.samples.popleft()
            self.calls -= gone.calls
            self.errors -= gone.errors
        if self.calls < self.cfg.min_volume:
            return None
        p = p95_of(self.samples) if with_latency and self.cfg.latency_p95_ms else None
        oks = _oks(self.samples) if with_latency and self.cfg.latency_objective else None
        why = self._unhealthy(self.errors, self.calls, p, oks)
        if why is None:
            return None
        rows = list(self.samples)
        self.opened_at = now
        self.samples.clear()
        self.calls = self.errors = 0
        return self._move(CircuitState.OPEN, rows, why)

    def _judge_probes(self) -> CircuitTransition | None:
        calls, errors, _, p = self._figures(self.probes)
        why = self._unhealthy(errors, calls, p, _oks(self.probes))
        # Reopen as soon as the probe batch can no longer come out healthy.
        doomed = errors / max(self.cfg.probe_volume, calls) >= self.cfg.error_rate
        if doomed or (calls >= self.cfg.probe_volume and why is not None):
            self.opened_at = self.clock()
            self.reopens += 1
            return self._move(CircuitState.OPEN, self.probes, f"probes failing: {why or 'errors'}")
        if calls >= self.cfg.probe_volume:
            self.reopens = 0
            return self._move(CircuitState.CLOSED, self.probes, "probes healthy")
        return None

    # --- state in the changelog table ---------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "state": self.state.value, "opened_at": self.opened_at, "reopens": self.reopens,
            "samples": [o.to_json() for o in self.samples], "probes": [o.to_json() for o in self.probes],
        }  # fmt: skip

    @classmethod
    def from_state(
        cls, provider: str, model: str, cfg: ProvidersConfig, clock: Callable[[], float], d: dict[str, Any]
    ) -> ProviderCircuit:
        c = cls(provider, model, cfg, clock)
        c.state = CircuitState(d["state"])
        c.opened_at, c.reopens = float(d["opened_at"]), int(d["reopens"])
        c.samples = deque(Observation.from_json(o) for o in d["samples"])
        c.calls = sum(o.calls for o in c.samples)
        c.errors = sum(o.errors for o in c.samples)
        c.probes = [Observation.from_json(o) for o in d["probes"]]
        return c


class ProviderHealthMonitor:
    """Every circuit, by (provider, model)."""

    def __init__(self, cfg: ProvidersConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.clock = cfg, clock
        self.circuits: dict[tuple[str, str], ProviderCircuit] = {}

    def circuit(self, provider: str, model: str) -> ProviderCircuit:
        key = (provider, model)
        if key not in self.circuits:
            self.circuits[key] = ProviderCircuit(provider, model, self.cfg, self.clock)
        return self.circuits[key]

    def record(
        self, provider: str, model: str, ts: float, error: bool, latency_ms: float
    ) -> CircuitTransition | None:
        return self.circuit(provider, model).record(ts, error, latency_ms)

    def observe(self, provider: str, model: str, obs: Observation) -> CircuitTransition | None:
        return self.circuit(provider, model).observe(obs)

    def tick(self) -> list[CircuitTransition]:
        return [t for c in list(self.circuits.values()) if (t := c.tick()) is not None]

    # --- state in the changelog table, one provider (all its models) per key ---------------------
    def dump_provider(self, provider: str) -> dict[str, Any]:
        return {m: c.to_state() for (p, m), c in self.circuits.items() if p == provider}

    def load_provider(self, provider: str, d: dict[str, Any]) -> None:
        for model, state in d.items():
            self.circuits[(provider, model)] = ProviderCircuit.from_state(
                provider, model, self.cfg, self.clock, state
            )

    def drop_provider(self, provider: str) -> None:
        for key in [k for k in self.circuits if k[0] == provider]:
            del self.circuits[key]
