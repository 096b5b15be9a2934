"""Provider health: a circuit breaker per (provider, model) fed by LLM spans.

Closed: spans in the last ``window_s`` seconds are counted; with at least ``min_volume`` of
them, an error rate at or above ``error_rate`` (or a p95 latency above ``latency_p95_ms``)
opens the circuit. Open: after ``half_open_after_s`` (doubling after each failed probe, up to
16x) the circuit is half-open; ``probe_volume`` healthy spans close it, failing ones open it
again. What that means for commands (failover / resume) is decided by the health engine from
``providers.half_open``. Event time is used for the window so a replayed backlog (older than
the window) never trips a circuit; the clock is injected for tests.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from agentledger.streams.healthconfig import ProvidersConfig
from agentledger.streams.slo import slow_reason


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


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


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


class ProviderCircuit:
    """One provider/model circuit. ``record`` spans, ``tick`` on a timer."""

    def __init__(self, provider: str, model: str, cfg: ProvidersConfig, clock: Callable[[], float]) -> None:
        self.provider, self.model, self.cfg, self.clock = provider, model, cfg, clock
        self.state = CircuitState.CLOSED
        self.samples: deque[tuple[float, bool, float]] = deque()  # (event time, error, latency ms)
        self.errors = 0  # errors in `samples`, kept as they come and go: O(1) per span
        self.opened_at = 0.0
        self.reopens = 0  # consecutive failed probes: the open period doubles each time
        self.probes: list[tuple[bool, float]] = []

    def record(self, ts: float, error: bool, latency_ms: float) -> CircuitTransition | None:
        now = self.clock()
        if ts < now - self.cfg.window_s:
            return None  # stale (a replayed backlog): says nothing about now
        if self.state is CircuitState.HALF_OPEN:
            self.probes.append((error, latency_ms))
            return self._judge_probes()
        self.samples.append((min(ts, now), error, latency_ms))
        self.errors += error
        # Per span only the O(1) error-rate check; latency percentiles wait for the timer tick.
        return self._evaluate(now, with_latency=False) if self.state is CircuitState.CLOSED else None

    def _figures(self, rows: list[tuple[bool, float]]) -> tuple[int, int, float, float | None]:
        calls = len(rows)
        errors = sum(1 for e, _ in rows if e)
        return calls, errors, (errors / calls if calls else 0.0), p95([lat for _, lat in rows])

    def _unhealthy(
        self, errors: int, calls: int, p95_ms: float | None, ok_latencies: list[float] | None = None
    ) -> str | None:
        if calls and errors / calls >= self.cfg.error_rate:
            return f"error rate {errors}/{calls} >= {self.cfg.error_rate:.0%}"
        if self.cfg.latency_p95_ms is not None and p95_ms is not None and p95_ms > self.cfg.latency_p95_ms:
            return f"p95 latency {p95_ms:.0f} ms > {self.cfg.latency_p95_ms:.0f} ms"
        lo = self.cfg.latency_objective
        if lo is not None and ok_latencies is not None:
            return slow_reason(ok_latencies, lo.threshold_ms, lo.target)
        return None

    def _move(self, new: CircuitState, rows: list[tuple[bool, float]], reason: str) -> CircuitTransition:
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
        while self.samples and self.samples[0][0] < now - self.cfg.window_s:
            self.errors -= self.samples.popleft()[1]
        calls = len(self.samples)
        if calls < self.cfg.min_volume:
            return None
        p = p95([lat for _, _, lat in self.samples]) if with_latency and self.cfg.latency_p95_ms else None
        oks = (
            [lat for _, e, lat in self.samples if not e]
            if with_latency and self.cfg.latency_objective
            else None
        )
        why = self._unhealthy(self.errors, calls, p, oks)
        if why is None:
            return None
        rows = [(e, lat) for _, e, lat in self.samples]
        self.opened_at = now
        self.samples.clear()
        self.errors = 0
        return self._move(CircuitState.OPEN, rows, why)

    def _judge_probes(self) -> CircuitTransition | None:
        calls, errors, _, p = self._figures(self.probes)
        why = self._unhealthy(errors, calls, p, [lat for e, lat in self.probes if not e])
        # Reopen as soon as the probe batch can no longer come out healthy.
        doomed = errors / self.cfg.probe_volume >= self.cfg.error_rate
        if doomed or (calls >= self.cfg.probe_volume and why is not None):
            self.opened_at = self.clock()
            self.reopens += 1
            return self._move(CircuitState.OPEN, self.probes, f"probes failing: {why or 'errors'}")
        if calls >= self.cfg.probe_volume:
            self.reopens = 0
            return self._move(CircuitState.CLOSED, self.probes, "probes healthy")
        return None


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

    def tick(self) -> list[CircuitTransition]:
        return [t for c in self.circuits.values() if (t := c.tick()) is not None]
