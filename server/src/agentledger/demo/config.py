"""The demo's policy file: budgets and loop limits for the worker, alert routes, provider
fallbacks, drift and canary settings for the health worker — tuned so each story plays out
within a minute or two on a laptop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class DemoTiming:
    """When each story starts (seconds after the workload starts) and how long the run is."""

    duration_s: float
    loop_at_s: float
    canary_at_s: float
    outage_at_s: float
    outage_s: float
    budget_usd: float
    framework_budget_usd: float  # acme/summarizer (Pydantic AI): killed well before the outage

    @classmethod
    def for_mode(cls, short: bool) -> DemoTiming:
        if short:
            return cls(
                duration_s=55,
                loop_at_s=4,
                canary_at_s=2,
                outage_at_s=14,
                outage_s=12,
                budget_usd=0.25,
                framework_budget_usd=0.05,
            )
        return cls(
            duration_s=100,
            loop_at_s=8,
            canary_at_s=5,
            outage_at_s=35,
            outage_s=20,
            budget_usd=0.50,
            framework_budget_usd=0.15,
        )


def demo_config(receiver_url: str, dashboard_url: str, timing: DemoTiming) -> dict[str, Any]:
    return {
        "policies": [
            {
                "policy_id": "globex-writer-hourly",
                "description": "globex's writer agent: the demo's budget story",
                "selector": {"tenant": "globex", "agent": "writer", "per": "agent"},
                "window": "1h",
                "limit": timing.budget_usd,
                "unit": "usd",
                "thresholds": [
                    {"at": 0.5, "action": "alert"},
                    {"at": 0.8, "action": "throttle", "rate_per_s": 1},
                ],
                "hard_action": "kill",
            },
            {
                "policy_id": "acme-summarizer-hourly",
                "description": "acme's summarizer (a Pydantic AI agent behind the hook): a small hard budget",
                "selector": {"tenant": "acme", "agent": "summarizer", "per": "agent"},
                "window": "1h",
                "limit": timing.framework_budget_usd,
                "unit": "usd",
                "thresholds": [],
                "hard_action": "kill",
            },
            {
                "policy_id": "agent-daily",
                "description": "every agent: $50 a day",
                "selector": {"per": "agent"},
                "window": "calendar_day",
                "limit": 50,
                "thresholds": [{"at": 0.5, "action": "alert"}],
                "hard_action": "kill",
            },
            {
                "policy_id": "tenant-monthly",
                "description": "every tenant: $2,000 a month",
                "selector": {"per": "tenant"},
                "window": "calendar_month",
                "limit": 2000,
                "thresholds": [{"at": 0.9, "action": "alert"}],
                "hard_action": "kill",
            },
        ],
        "loops": {
            "enabled": True,
            "repeat_calls": 5,
            "repeat_window_s": 60,
            "max_llm_calls_per_min": 600,
            "max_tokens_per_min": 5_000_000,
            "kill_ttl_s": 3600,
        },
        "alerts": {
            "dashboard_url": dashboard_url,
            "renotify_minutes": 60,
            "retry": {"base_s": 0.5, "max_s": 5, "timeout_s": 5},
            "channels": [
                {"name": "slack", "type": "slack", "url": f"{receiver_url}/slack/T000/B000/demo"},
                {
                    "name": "pagerduty",
                    "type": "pagerduty",
                    "routing_key": "demo-routing-key",
                    "events_url": f"{receiver_url}/pagerduty/v2/enqueue",
                },
                {
                    "name": "webhook",
                    "type": "webhook",
                    "url": f"{receiver_url}/webhook",
                    "secret": "demo-secret",
                },
            ],
            "routes": [
                {"rule": "*", "channels": ["slack", "webhook"]},
                {"rule": "provider.*", "min_severity": "error", "channels": ["pagerduty"]},
                {"rule": "budget.*", "min_severity": "critical", "channels": ["pagerduty"]},
            ],
        },
        "providers": {
            "fallbacks": {"openai": "anthropic", "anthropic": "openai"},
            "window_s": 8,
            "min_volume": 6,
            "error_rate": 0.5,
            "latency_p95_ms": 20000,
            "half_open_after_s": 5,
            "probe_volume": 3,
        },
        "canary": {
            "live_window_s": 120,
            "task_idle_s": 2,
            "min_tasks": 12,
            "promote_min_tasks": 400,
            "alpha": 0.001,
            "cost_margin": 0.10,
            "error_margin": 0.02,
            "quality_margin": 0.05,
        },
    }


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
