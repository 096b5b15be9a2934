"""Service level objectives over LLM calls: exact good/total counts per time bucket, attainment
and error budget over the rolling window, multi-window multi-burn-rate alerts, and the "slow is
unhealthy" rule a provider circuit calls. Pure logic: no Kafka, no Faust, event time only."""

from .burn import BurnState, BurnVerdict, evaluate_rule
from .counts import SloCounts, WindowFigures
from .monitor import Owner, SloMonitor, SloTallies, entity_of
from .slow import slow_reason, slow_reason_counts

__all__ = [
    "BurnState",
    "BurnVerdict",
    "Owner",
    "SloCounts",
    "SloMonitor",
    "SloTallies",
    "WindowFigures",
    "entity_of",
    "evaluate_rule",
    "slow_reason",
    "slow_reason_counts",
]
