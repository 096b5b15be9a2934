"""Quality drift detector: detection delay and false alarms on synthetic score streams.

Streams with a known change point (a 10 % drop in mean score after the baseline and a stable
stretch) give the detection delay in scores; long stable streams give false alarms per
10,000 scores. Two score shapes: a clipped normal (mean 0.8, sd 0.1) and a Beta(8, 2)
(mean 0.8, skewed, bounded). The anchor, measured in the same run, is the same CUSUM with no
Mann-Whitney confirmation (alpha = 1): it shows what the confirmation buys.

No broker needed: the detector is pure. Usage:
    .venv/bin/python benchmarks/drift.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from agentledger.streams.health.drift import DriftDetector
from agentledger.streams.healthconfig import DriftSettings

Gen = Callable[[np.random.Generator, float, int], np.ndarray]


def clipped_normal(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    return np.clip(rng.normal(mean, 0.1, n), 0.0, 1.0)


def beta10(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    return rng.beta(10 * mean, 10 * (1 - mean), n)


SHAPES: dict[str, Gen] = {"normal": clipped_normal, "beta": beta10}


def delays(settings: DriftSettings, streams: int, seed: int) -> tuple[list[int], int]:
    """Delay (scores after the change) per stream; and how many streams had no alarm after
    the change (missed, or alarmed before it)."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    missed = 0
    early = 0
    for i in range(streams):
        gen = list(SHAPES.values())[i % len(SHAPES)]
        pre = settings.baseline_n + int(rng.integers(200, 1000))
        scores = np.concatenate([gen(rng, 0.8, pre), gen(rng, 0.72, 2000)])
        det = DriftDetector(settings)
        found = None
        for j, x in enumerate(scores.tolist()):
            f = det.update(x)
            if f is not None and not f.recovered:
                found = j
                break
        if found is None:
            missed += 1
        elif found < pre:  # an alarm before the change: a false alarm (stable-stream figure)
            early += 1
        else:
            out.append(found - pre + 1)
    return out, missed + early


def false_alarms(settings: DriftSettings, total: int, seed: int) -> tuple[int, int]:
    """Alarms on stable streams of 10k scores each (a fresh detector per stream)."""
    rng = np.random.default_rng(seed)
    alarms = 0
    monitored = 0
    per = 10_000
    for i in range(max(1, total // per)):
        gen = list(SHAPES.values())[i % len(SHAPES)]
        det = DriftDetector(settings)
        for x in gen(rng, 0.8, per).tolist():
            f = det.update(x)
            if f is not None and not f.recovered:
                alarms += 1
                det.drifted = None  # keep watching: count every alarm, not the first only
                det.low = det.high = 0.0
        monitored += per - settings.baseline_n
    return alarms, monitored


def run(quick: bool) -> dict[str, float]:
    settings = DriftSettings()
    anchor = settings.model_copy(update={"alpha": 1.0})
    streams, stable = (60, 200_000) if quick else (400, 2_000_000)
    t0 = time.perf_counter()
    d, missed = delays(settings, streams, seed=1)
    alarms, monitored = false_alarms(settings, stable, seed=2)
    elapsed = time.perf_counter() - t0
    ad, _ = delays(anchor, streams, seed=1)
    a_alarms, _ = false_alarms(anchor, stable, seed=2)
    res = {
        "detect_delay_scores_median": float(statistics.median(d)) if d else float("nan"),
        "detect_delay_scores_p90": float(np.percentile(d, 90)) if d else float("nan"),
        "missed_changes": float(missed),
        "false_alarms_per_10k": 10_000 * alarms / monitored,
        "stable_scores": float(monitored),
        "change_streams": float(streams),
        "scores_per_s": (monitored + streams * 2000) / elapsed,
        "anchor_cusum_only_delay_median": float(statistics.median(ad)) if ad else float("nan"),
        "anchor_cusum_only_false_alarms_per_10k": 10_000 * a_alarms / monitored,
    }
    rows = [
        (
            "detect delay median (scores)",
            res["detect_delay_scores_median"],
            res["anchor_cusum_only_delay_median"],
        ),
        ("false alarms / 10k", res["false_alarms_per_10k"], res["anchor_cusum_only_false_alarms_per_10k"]),
    ]
    print(f"{'figure':34} {'cusum+MW':>10} {'anchor: cusum only':>20} {'ratio':>8}")
    for name, value, anchor_value in rows:
        ratio = value / anchor_value if anchor_value else float("nan")
        print(f"{name:34} {value:10.2f} {anchor_value:20.2f} {ratio:8.2f}")
    print(
        f"targets: delay <= 200 scores, <= 1 false alarm / 10k; p90 delay {res['detect_delay_scores_p90']:.0f}, "
        f"missed {missed}/{streams}, {res['scores_per_s']:.0f} scores/s"
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = run(args.quick)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
