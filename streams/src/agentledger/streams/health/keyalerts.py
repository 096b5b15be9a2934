"""Per-key error alerts (docs/security.md, "A failing key"): events name the provider key a
call was sent with by fingerprint (``agentledger.key_fingerprint``: on usage events for the
calls that succeeded, on the ``key_refused`` / ``key_rate_limited`` error spans the client
records when a key answered 401 or 429 and the call moved to the next key). Calls and errors
are counted per (provider, fingerprint) in one-second buckets over a short window; a key whose
errors spike raises a ``provider.key`` alert naming the provider and the fingerprint (never
the key), resolved once the window is clean again.

Counting happens in stage two of the health worker (keyed by provider), so every partition's
calls of one key meet in one process. Pure apart from the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentledger.streams.healthconfig import KeyAlertsConfig

FINGERPRINT = "agentledger.key_fingerprint"
KEY_CAUSES = ("key_refused", "key_rate_limited")
"""``agentledger.error.cause`` of the spans of a key's refused attempts (the call went on)."""


@dataclass(frozen=True, slots=True)
class KeyTransition:
    provider: str
    fingerprint: str
    alerting: bool  # True: raised; False: resolved
    calls: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


class KeyErrorMonitor:
    def __init__(self, cfg: KeyAlertsConfig, clock: Callable[[], float]) -> None:
        self.cfg, self.clock = cfg, clock
        self.buckets: dict[tuple[str, str], dict[int, list[int]]] = {}  # -> second -> [calls, errors]
        self.alerting: set[tuple[str, str]] = set()

    def observe(self, provider: str, fp: str, ts: float, calls: int, errors: int) -> KeyTransition | None:
        if ts < self.clock() - self.cfg.window_s:
            return None  # older than the window: says nothing about the key now
        bucket = self.buckets.setdefault((provider, fp), {}).setdefault(int(ts), [0, 0])
        bucket[0] += calls
        bucket[1] += errors
        return self._judge(provider, fp)

    def tick(self) -> list[KeyTransition]:
        """Time alone: errors leave the window, an alert resolves; idle keys are forgotten."""
        out = []
        for provider, fp in list(self.buckets):
            t = self._judge(provider, fp)
            if t is not None:
                out.append(t)
            if not self.buckets[(provider, fp)] and (provider, fp) not in self.alerting:
                del self.buckets[(provider, fp)]
        return out

    def _judge(self, provider: str, fp: str) -> KeyTransition | None:
        buckets = self.buckets[(provider, fp)]
        oldest = self.clock() - self.cfg.window_s
        for second in [s for s in buckets if s < oldest]:
            del buckets[second]
        calls = sum(b[0] for b in buckets.values())
        errors = sum(b[1] for b in buckets.values())
        rate = errors / calls if calls else 0.0
        key = (provider, fp)
        if key not in self.alerting:
            if errors >= self.cfg.min_errors and rate >= self.cfg.error_rate:
                self.alerting.add(key)
                return KeyTransition(provider, fp, True, calls, errors)
        elif errors < self.cfg.min_errors or rate < self.cfg.error_rate / 2:
            self.alerting.discard(key)
            return KeyTransition(provider, fp, False, calls, errors)
        return None

    # --- state (saved with the provider's, so a restart does not lose a raised alert) ---
    def dump_provider(self, provider: str) -> dict[str, Any]:
        return {
            fp: {"b": [[s, *b] for s, b in sorted(buckets.items())], "alerting": (p, fp) in self.alerting}
            for (p, fp), buckets in self.buckets.items()
            if p == provider
        }

    def load_provider(self, provider: str, state: dict[str, Any]) -> None:
        for fp, d in state.items():
            self.buckets[(provider, fp)] = {int(s): [int(c), int(e)] for s, c, e in d.get("b", [])}
            if d.get("alerting"):
                self.alerting.add((provider, fp))

    def drop_provider(self, provider: str) -> None:
        for key in [k for k in self.buckets if k[0] == provider]:
            del self.buckets[key]
            self.alerting.discard(key)
