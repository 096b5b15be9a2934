"""Drift detector on seeded synthetic streams: detects a 10 % drop, stays quiet when stable."""

from __future__ import annotations

import random

from agentledger.streams.health.drift import DriftDetector, mann_whitney_p
from agentledger.streams.healthconfig import DriftSettings


def _stream(rng: random.Random, mean: float, n: int) -> list[float]:
    return [min(1.0, max(0.0, rng.gauss(mean, 0.1))) for _ in range(n)]


def test_mann_whitney_sees_a_clear_drop_and_not_equal_samples() -> None:
    rng = random.Random(3)
    base = _stream(rng, 0.8, 200)
    assert mann_whitney_p(_stream(rng, 0.6, 50), base, "down") < 1e-6
    assert mann_whitney_p(_stream(rng, 0.8, 50), base, "down") > 0.01
    # one-sided: a rise is not a drop
    assert mann_whitney_p(_stream(rng, 0.9, 50), base, "down") > 0.5


def test_mann_whitney_handles_ties_on_binary_scores() -> None:
    base = [1.0] * 90 + [0.0] * 10
    worse = [1.0] * 20 + [0.0] * 20
    assert mann_whitney_p(worse, base, "down") < 1e-4
    assert mann_whitney_p([1.0] * 30, [1.0] * 30, "down") == 1.0


def test_ten_percent_drop_is_detected_within_200_scores_then_recovers() -> None:
    rng = random.Random(7)
    det = DriftDetector(DriftSettings())
    for x in _stream(rng, 0.8, 600):
        assert det.update(x) is None
    found = None
    for i, x in enumerate(_stream(rng, 0.72, 400)):
        f = det.update(x)
        if f is not None:
            found = (i, f)
            break
    assert found is not None
    delay, finding = found
    assert delay <= 200
    assert finding.direction == "down" and not finding.recovered
    assert finding.p_value < 1e-4
    assert -15 < finding.change_pct < -5
    recovered = [f for x in _stream(rng, 0.8, 600) if (f := det.update(x)) is not None]
    assert len(recovered) == 1 and recovered[0].recovered


def test_stable_stream_raises_no_alarm() -> None:
    rng = random.Random(11)
    det = DriftDetector(DriftSettings())
    assert [f for x in _stream(rng, 0.8, 20_000) if (f := det.update(x)) is not None] == []


def test_direction_setting_ignores_a_rise_when_watching_drops() -> None:
    rng = random.Random(5)
    det = DriftDetector(DriftSettings(direction="down"))
    for x in _stream(rng, 0.5, 300) + _stream(rng, 0.7, 500):
        assert det.update(x) is None
    det_up = DriftDetector(DriftSettings(direction="both"))
    found = [f for x in _stream(rng, 0.5, 300) + _stream(rng, 0.7, 500) if (f := det_up.update(x))]
    assert found and found[0].direction == "up"
