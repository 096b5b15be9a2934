"""Canary verdicts: when two versions of one agent are live, is the new one worse?

Per (tenant, agent) and version we keep: cost per task (a task is one trace; it is finished
when no priced event arrived for ``task_idle_s``), span error counts, and quality scores per
metric. With both versions live (seen within ``live_window_s``), the newest version (the
canary) is compared with the oldest (the baseline):

- cost per task: one-sided Mann-Whitney (costs are skewed; ranks do not care),
- error rate: one-sided two-proportion z-test,
- quality per metric: one-sided Mann-Whitney.

A metric is *worse* only when the test is significant (p < ``alpha``) AND the difference is
larger than its practical margin. Any worse metric: ``rollback`` to the baseline. Enough
canary tasks and nothing worse: ``promote``. Otherwise ``undecided``. The verdict is judged
repeatedly as data arrives, so ``alpha`` is small (0.001) to keep repeated looks honest.

State is per (tenant, agent): ``dump_agent``/``load_agent`` carry it through the health
worker's changelog table; ``changed`` names the agents whose state moved since it was emptied.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agentledger.streams.healthconfig import CanaryConfig

from .drift import mann_whitney_p, normal_sf, pack_floats, unpack_floats

Verdict = Literal["promote", "rollback", "undecided"]
_KEEP = 5000  # recent values per version and metric


@dataclass(slots=True)
class VersionStats:
    first_seen: float
    last_seen: float
    open_tasks: dict[str, tuple[float, float]] = field(default_factory=dict)  # trace -> (cost, last)
    task_costs: deque[float] = field(default_factory=lambda: deque(maxlen=_KEEP))
    spans: int = 0
    errors: int = 0
    quality: dict[str, deque[float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CanaryVerdict:
    tenant: str
    agent: str
    baseline: str
    canary: str
    verdict: Verdict
    reasons: tuple[str, ...]
    figures: dict[str, float | int | str]


def two_proportion_p(err_c: int, n_c: int, err_b: int, n_b: int) -> float:
    """One-sided p that the canary's rate exceeds the baseline's (pooled z-test)."""
    if n_c == 0 or n_b == 0:
        return 1.0
    pooled = (err_c + err_b) / (n_c + n_b)
    var = pooled * (1 - pooled) * (1 / n_c + 1 / n_b)
    if var <= 0:
        return 1.0
    return normal_sf((err_c / n_c - err_b / n_b) / math.sqrt(var))


def _mean(values: deque[float] | list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class CanaryJudge:
    """Feeds per-version facts; ``evaluate()`` returns verdicts that changed."""

    def __init__(self, cfg: CanaryConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.clock = cfg, clock
        self.agents: dict[tuple[str, str], dict[str, VersionStats]] = {}
        self.last: dict[tuple[str, str, str], Verdict] = {}
        self.changed: set[tuple[str, str]] = set()

    def _stats(self, tenant: str, agent: str, version: str, ts: float) -> VersionStats:
        self.changed.add((tenant, agent))
        versions = self.agents.setdefault((tenant, agent), {})
        st = versions.get(version)
        if st is None:
            st = versions[version] = VersionStats(first_seen=ts, last_seen=ts)
        st.first_seen = min(st.first_seen, ts)
        st.last_seen = max(st.last_seen, self.clock())
        return st

    def record_cost(
        self, tenant: str, agent: str, version: str, trace_id: str, cost: float, ts: float
    ) -> None:
        st = self._stats(tenant, agent, version, ts)
        spent, _ = st.open_tasks.get(trace_id, (0.0, 0.0))
        st.open_tasks[trace_id] = (spent + cost, self.clock())

    def record_span(self, tenant: str, agent: str, version: str, error: bool, ts: float) -> None:
        st = self._stats(tenant, agent, version, ts)
        st.spans += 1
        st.errors += int(error)

    def record_quality(
        self, tenant: str, agent: str, version: str, metric: str, score: float, ts: float
    ) -> None:
        st = self._stats(tenant, agent, version, ts)
        st.quality.setdefault(metric, deque(maxlen=_KEEP)).append(score)

    def _close_tasks(self, st: VersionStats, now: float) -> bool:
        done = [t for t, (_, last) in st.open_tasks.items() if now - last >= self.cfg.task_idle_s]
        for trace in done:
            st.task_costs.append(st.open_tasks.pop(trace)[0])
        return bool(done)

    def evaluate(self) -> list[CanaryVerdict]:
        now = self.clock()
        out: list[CanaryVerdict] = []
        for (tenant, agent), versions in self.agents.items():
            for version, st in list(versions.items()):
                if now - st.last_seen > 2 * self.cfg.live_window_s:
                    del versions[version]  # long gone: forget it (memory stays bounded)
                    self.changed.add((tenant, agent))
                    continue
                if self._close_tasks(st, now):
                    self.changed.add((tenant, agent))
            live = sorted(
                ((v, st) for v, st in versions.items() if now - st.last_seen <= self.cfg.live_window_s),
                key=lambda item: item[1].first_seen,
            )
            if len(live) < 2:
                continue
            (base_v, base), (can_v, can) = live[0], live[-1]
            verdict = self.judge(tenant, agent, base_v, base, can_v, can)
            key = (tenant, agent, can_v)
            if self.last.get(key) != verdict.verdict:
                self.last[key] = verdict.verdict
                self.changed.add((tenant, agent))
                out.append(verdict)
        return out

    def judge(
        self, tenant: str, agent: str, base_v: str, base: VersionStats, can_v: str, can: VersionStats
    ) -> CanaryVerdict:
        cfg = self.cfg
        figs: dict[str, float | int | str] = {"baseline_version": base_v, "canary_version": can_v}
        worse: list[str] = []
        nb, nc = len(base.task_costs), len(can.task_costs)
        figs.update(tasks_baseline=nb, tasks_canary=nc)
        if min(nb, nc) >= cfg.min_tasks:
            mb, mc = _mean(base.task_costs), _mean(can.task_costs)
            p = mann_whitney_p(list(can.task_costs), list(base.task_costs), "up")
            figs.update(cost_per_task_baseline=round(mb, 6), cost_per_task_canary=round(mc, 6), cost_p=p)
            if p < cfg.alpha and mc > mb * (1 + cfg.cost_margin):
                worse.append(f"cost per task {mc:.4f} vs {mb:.4f} USD (p={p:.2g})")
        if min(base.spans, can.spans) >= cfg.min_tasks:
            rb, rc = base.errors / base.spans, can.errors / can.spans
            p = two_proportion_p(can.errors, can.spans, base.errors, base.spans)
            figs.update(error_rate_baseline=round(rb, 4), error_rate_canary=round(rc, 4), error_p=p)
            if p < cfg.alpha and rc - rb > cfg.error_margin:
                worse.append(f"error rate {rc:.1%} vs {rb:.1%} (p={p:.2g})")
        for metric in sorted(set(base.quality) & set(can.quality)):
            qb, qc = base.quality[metric], can.quality[metric]
            if min(len(qb), len(qc)) < cfg.min_tasks:
                continue
            mb, mc = _mean(qb), _mean(qc)
            p = mann_whitney_p(list(qc), list(qb), "down")
            figs.update(
                {f"quality_{metric}_baseline": round(mb, 4), f"quality_{metric}_canary": round(mc, 4)}
            )
            figs[f"quality_{metric}_p"] = p
            if p < cfg.alpha and mc < mb - abs(mb) * cfg.quality_margin:
                worse.append(f"{metric} {mc:.3f} vs {mb:.3f} (p={p:.2g})")
        enough = max(nc, can.spans) >= cfg.promote_min_tasks
        verdict: Verdict = "rollback" if worse else ("promote" if enough else "undecided")
        reasons = tuple(worse) if worse else (("no metric worse",) if enough else ("not enough data",))
        return CanaryVerdict(tenant, agent, base_v, can_v, verdict, reasons, figs)

    # --- state in the changelog table, one (tenant, agent) per key -------------------------------
    def dump_agent(self, tenant: str, agent: str) -> dict[str, Any]:
        versions = {
            v: {
                "f": st.first_seen, "l": st.last_seen, "o": st.open_tasks, "c": pack_floats(st.task_costs),
                "s": st.spans, "e": st.errors, "q": {m: pack_floats(q) for m, q in st.quality.items()},
            }
            for v, st in self.agents.get((tenant, agent), {}).items()
        }  # fmt: skip
        last = {v: verdict for (t, a, v), verdict in self.last.items() if (t, a) == (tenant, agent)}
        return {"versions": versions, "last": last}

    def load_agent(self, tenant: str, agent: str, d: dict[str, Any]) -> None:
        versions: dict[str, VersionStats] = {}
        for v, x in d.get("versions", {}).items():
            versions[v] = VersionStats(
                first_seen=float(x["f"]), last_seen=float(x["l"]),
                open_tasks={t: (float(c), float(last)) for t, (c, last) in x["o"].items()},
                task_costs=deque(unpack_floats(x["c"]), maxlen=_KEEP), spans=int(x["s"]), errors=int(x["e"]),
                quality={m: deque(unpack_floats(q), maxlen=_KEEP) for m, q in x["q"].items()},
            )  # fmt: skip
        if versions:
            self.agents[(tenant, agent)] = versions
        for v, verdict in d.get("last", {}).items():
            self.last[(tenant, agent, v)] = verdict

    def drop_agent(self, tenant: str, agent: str) -> None:
        self.agents.pop((tenant, agent), None)
        for key in [k for k in self.last if k[:2] == (tenant, agent)]:
            del self.last[key]
        self.changed.discard((tenant, agent))
