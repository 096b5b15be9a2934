"""Quality drift: a baseline, a CUSUM change detector, and a Mann-Whitney test to confirm.

One ``DriftDetector`` per (tenant, agent, agent version, metric). The first ``baseline_n``
scores set the baseline (mean, sd, and a sample kept for the test). After that a two-sided
CUSUM on standardised scores accumulates evidence of a shift; when it crosses ``h_sd`` the
recent scores are compared with the baseline sample by a one-sided Mann-Whitney U test, and
only a significant result (p < alpha) is a drift. CUSUM alone reacts fast but is fooled by
heavy tails and bounded scores; the rank test alone, run on every score, would raise false
alarms by sheer repetition. Together: fast and rarely wrong (numbers in benchmarks/drift.py).

Pure Python, no clock: feed scores, read findings. ``to_state``/``from_state`` carry a
detector through the health worker's changelog table (score lists as packed doubles).
"""

from __future__ import annotations

import base64
import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentledger.streams.healthconfig import DriftSettings

Direction = Literal["down", "up"]


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mann_whitney_p(sample: Sequence[float], reference: Sequence[float], alternative: Direction) -> float:
    """One-sided Mann-Whitney U p-value that ``sample`` is stochastically smaller ("down") or
    larger ("up") than ``reference``. Normal approximation with tie correction and continuity
    correction; fine from about 10 values per side (we use 20+)."""
    n1, n2 = len(sample), len(reference)
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = sorted([(v, 0) for v in sample] + [(v, 1) for v in reference])
    rank_sum = 0.0
    tie_term = 0.0
    i = 0
    n = n1 + n2
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg_rank = (i + j) / 2.0 + 1.0
        size = j - i + 1
        tie_term += size**3 - size
        rank_sum += avg_rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u1 = rank_sum - n1 * (n1 + 1) / 2.0
    mean_u = n1 * n2 / 2.0
    var_u = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if var_u <= 0:
        return 1.0
    if alternative == "down":
        z = (mean_u - u1 - 0.5) / math.sqrt(var_u)
    else:
        z = (u1 - mean_u - 0.5) / math.sqrt(var_u)
    return normal_sf(z)


def pack_floats(values: Sequence[float]) -> str:
    """Doubles, exactly, in about 11 characters each (JSON decimals take ~20)."""
    return base64.b64encode(array("d", values).tobytes()).decode()


def unpack_floats(text: str) -> list[float]:
    out = array("d")
    out.frombytes(base64.b64decode(text))
    return out.tolist()


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


@dataclass(frozen=True, slots=True)
class DriftFinding:
    """A confirmed drift (``recovered=False``) or the return to the baseline (``True``)."""

    direction: Direction
    recovered: bool
    baseline_mean: float
    recent_mean: float
    p_value: float
    cusum: float
    scores_seen: int
    recent_n: int

    @property
    def change_pct(self) -> float:
        if self.baseline_mean == 0:
            return 0.0
        return 100.0 * (self.recent_mean - self.baseline_mean) / abs(self.baseline_mean)


class DriftDetector:
    """Baseline + CUSUM + Mann-Whitney confirmation for one score stream."""

    MIN_CONFIRM = 20  # scores in the confirmation test, at least

    def __init__(self, settings: DriftSettings) -> None:
        self.s = settings
        self.baseline: list[float] = []
        self.mu = 0.0
        self.sd = 1.0
        self.low = 0.0  # evidence of a drop
        self.high = 0.0  # evidence of a rise
        self.run_low = 0  # scores since `low` was last zero: the suspected change segment
        self.run_high = 0
        self.recent: deque[float] = deque(maxlen=settings.window)
        self.seen = 0
        self.drifted: Direction | None = None
        self.since_check = 0
        self.unconfirmed = 0

    @property
    def ready(self) -> bool:
        return len(self.baseline) >= self.s.baseline_n

    def update(self, score: float) -> DriftFinding | None:
        """Feed one score; returns a finding when a drift is confirmed or has recovered."""
        self.seen += 1
        if not self.ready:
            self.baseline.append(score)
            if self.ready:
                self.mu, sd = mean_sd(self.baseline)
                self.sd = max(sd, self.s.min_sd)
            return None
        self.recent.append(score)
        if self.drifted is not None:
            return self._check_recovery()
        z = (score - self.mu) / self.sd
        k = self.s.k_sd
        self.low = max(0.0, self.low - z - k)
        self.high = max(0.0, self.high + z - k)
        self.run_low = self.run_low + 1 if self.low > 0 else 0
        self.run_high = self.run_high + 1 if self.high > 0 else 0
        for direction, stat, run in (("down", self.low, self.run_low), ("up", self.high, self.run_high)):
            if self.s.direction not in (direction, "both") or stat < self.s.h_sd:
                continue
            finding = self._confirm(direction, stat, run)  # type: ignore[arg-type]
            if finding is not None:
                return finding
        return None

    def _confirm(self, direction: Direction, stat: float, run: int) -> DriftFinding | None:
        n = min(len(self.recent), max(self.MIN_CONFIRM, run))
        if n < self.MIN_CONFIRM:
            return None
        sample = list(self.recent)[-n:]
        p = mann_whitney_p(sample, self.baseline, direction)
        if p >= self.s.alpha:
            # CUSUM crossed but the ranks do not agree: start collecting evidence afresh.
            self.unconfirmed += 1
            if direction == "down":
                self.low, self.run_low = 0.0, 0
            else:
                self.high, self.run_high = 0.0, 0
            return None
        self.drifted = direction
        self.since_check = 0
        return DriftFinding(direction, False, self.mu, mean_sd(sample)[0], p, stat, self.seen, n)

    def _check_recovery(self) -> DriftFinding | None:
        # Recovered when a full window no longer differs from the baseline in the drift's
        # direction (p > 0.2) and its mean is within the CUSUM allowance of the baseline.
        self.since_check += 1
        if self.since_check < self.s.window or self.drifted is None:
            return None
        self.since_check = 0
        sample = list(self.recent)
        mean = mean_sd(sample)[0]
        p = mann_whitney_p(sample, self.baseline, self.drifted)
        if p > 0.2 and abs(mean - self.mu) <= self.s.k_sd * self.sd:
            direction = self.drifted
            self.drifted = None
            self.low = self.high = 0.0
            self.run_low = self.run_high = 0
            return DriftFinding(direction, True, self.mu, mean, p, 0.0, self.seen, len(sample))
        return None

    # --- state in the changelog table ---------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "b": pack_floats(self.baseline), "mu": self.mu, "sd": self.sd, "lo": self.low,
            "hi": self.high, "rl": self.run_low, "rh": self.run_high, "r": pack_floats(self.recent),
            "n": self.seen, "d": self.drifted, "sc": self.since_check, "u": self.unconfirmed,
        }  # fmt: skip

    @classmethod
    def from_state(cls, settings: DriftSettings, d: dict[str, Any]) -> DriftDetector:
        det = cls(settings)
        det.baseline = unpack_floats(d["b"])
        det.mu, det.sd, det.low, det.high = float(d["mu"]), float(d["sd"]), float(d["lo"]), float(d["hi"])
        det.run_low, det.run_high = int(d["rl"]), int(d["rh"])
        det.recent.extend(unpack_floats(d["r"]))
        det.seen, det.drifted = int(d["n"]), d["d"]
        det.since_check, det.unconfirmed = int(d["sc"]), int(d["u"])
        return det
