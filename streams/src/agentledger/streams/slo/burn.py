"""Multi-window, multi-burn-rate evaluation with hysteresis: one trigger, one resolve.

A rule fires when the error budget burns at ``burn_rate`` x or faster over both its long window
(the evidence is significant) and its short window (it is still happening). It resolves once
the condition has been false for a whole short window, so a burn rate hovering at the line
cannot flood the channels with alert/resolved pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agentledger.events import BurnRateRule

from .counts import SloCounts, WindowFigures


class BurnVerdict(StrEnum):
    FIRE = "fire"
    RESOLVE = "resolve"


@dataclass(slots=True)
class BurnState:
    """Where one rule stands for one objective and entity."""

    firing: bool = False
    fired_at: float | None = None
    clear_since: float | None = None  # event time the condition last became false while firing
    alert_id: str | None = None  # the id of the fire, named by its resolve

    def to_state(self) -> list[Any]:
        return [self.firing, self.fired_at, self.clear_since, self.alert_id]

    @classmethod
    def from_state(cls, s: list[Any]) -> BurnState:
        firing, fired_at, clear_since, alert_id = s
        return cls(
            bool(firing),
            None if fired_at is None else float(fired_at),
            None if clear_since is None else float(clear_since),
            None if alert_id is None else str(alert_id),
        )


@dataclass(frozen=True, slots=True)
class RuleFigures:
    long: WindowFigures
    short: WindowFigures


def rule_figures(counts: SloCounts, rule: BurnRateRule, now: float, target: float) -> RuleFigures:
    return RuleFigures(
        counts.window(now, rule.long_window_s, target), counts.window(now, rule.short_window_s, target)
    )


def evaluate_rule(
    state: BurnState, rule: BurnRateRule, figures: RuleFigures, now: float
) -> BurnVerdict | None:
    """Move ``state`` at event time ``now``; a verdict only when the rule changes state."""
    burning = figures.long.burn_rate >= rule.burn_rate and figures.short.burn_rate >= rule.burn_rate
    if not state.firing:
        if burning:
            state.firing, state.fired_at, state.clear_since = True, now, None
            return BurnVerdict.FIRE
        return None
    if burning:
        state.clear_since = None
        return None
    if state.clear_since is None:
        state.clear_since = now
    if now - state.clear_since >= rule.short_window_s:
        state.firing, state.clear_since = False, None
        return BurnVerdict.RESOLVE
    return None
