"""Provider circuit breaker with a fixed, hand-moved clock."""

from __future__ import annotations

from agentledger.streams.health.providers import CircuitState, ProviderHealthMonitor
from agentledger.streams.healthconfig import ProvidersConfig


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


CFG = ProvidersConfig(window_s=10, min_volume=10, error_rate=0.5, half_open_after_s=5, probe_volume=3)


def _feed(mon: ProviderHealthMonitor, clock: Clock, n: int, error: bool, latency: float = 100.0) -> list:
    out = []
    for _ in range(n):
        clock.t += 0.1
        t = mon.record("openai", "gpt-4o", clock.t, error, latency)
        if t is not None:
            out.append(t)
    return out


def test_outage_opens_then_half_open_then_healthy_probes_close() -> None:
    clock = Clock()
    mon = ProviderHealthMonitor(CFG, clock)
    assert _feed(mon, clock, 50, error=False) == []
    opened = _feed(mon, clock, 60, error=True)
    assert [t.new for t in opened] == [CircuitState.OPEN]
    assert opened[0].errors >= 5 and opened[0].error_rate >= 0.5
    clock.t += 2
    assert mon.tick() == []  # not yet half-open
    clock.t += 4
    half = mon.tick()
    assert [t.new for t in half] == [CircuitState.HALF_OPEN]
    closed = _feed(mon, clock, 3, error=False)
    assert [t.new for t in closed] == [CircuitState.CLOSED]


def test_failing_probes_reopen() -> None:
    clock = Clock()
    mon = ProviderHealthMonitor(CFG, clock)
    _feed(mon, clock, 20, error=True)
    clock.t += 6
    mon.tick()
    assert [t.new for t in _feed(mon, clock, 2, error=True)] == [CircuitState.OPEN]


def test_below_min_volume_no_verdict_and_stale_spans_ignored() -> None:
    clock = Clock()
    mon = ProviderHealthMonitor(CFG, clock)
    assert _feed(mon, clock, 9, error=True) == []
    # old spans (a backlog replay) say nothing about now
    for _ in range(50):
        assert mon.record("openai", "gpt-4o", clock.t - 60, True, 10.0) is None
    assert mon.circuit("openai", "gpt-4o").state is CircuitState.CLOSED


def test_errors_age_out_of_the_window() -> None:
    clock = Clock()
    mon = ProviderHealthMonitor(CFG, clock)
    _feed(mon, clock, 8, error=True)
    clock.t += 20
    assert _feed(mon, clock, 10, error=False) == []


def test_latency_p95_opens() -> None:
    clock = Clock()
    mon = ProviderHealthMonitor(CFG.model_copy(update={"latency_p95_ms": 2000.0}), clock)
    # latency percentiles are judged on the timer tick, not per span
    assert _feed(mon, clock, 20, error=False, latency=5000.0) == []
    opened = mon.tick()
    assert opened and opened[0].new is CircuitState.OPEN and "p95" in opened[0].reason
    assert opened[0].p95_ms == 5000.0
