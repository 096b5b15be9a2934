"""The health/alerting part of the shared policy file: `alerts`, `providers`, `quality`, `canary`.

The file is shared with the budget worker, which owns `policies:` and `loops:`; keys we do not
own are ignored here. Secrets may be written as ``${ENV_VAR}`` and are kept as ``SecretStr``
so they never show in a repr or a log line.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from agentledger.errors import ConfigError
from agentledger.events import AlertEvent, ObjectivePolicy, Severity
from agentledger.wire import describe

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Cfg):
    """Exponential backoff with full jitter, capped."""

    base_s: float = Field(default=1.0, gt=0)
    max_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, description="One HTTP attempt.")


class ChannelConfig(_Cfg):
    name: str = Field(min_length=1, max_length=64)
    type: Literal["slack", "pagerduty", "webhook"]
    url: SecretStr | None = Field(default=None, description="Slack incoming webhook or webhook URL.")
    routing_key: SecretStr | None = Field(default=None, description="PagerDuty integration key.")
    events_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue", description="PagerDuty Events API v2."
    )
    secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key for webhooks.")

    @model_validator(mode="after")
    def _needs(self) -> ChannelConfig:
        if self.type in ("slack", "webhook") and self.url is None:
            raise ValueError(f"channel {self.name!r} ({self.type}) needs url")
        if self.type == "pagerduty" and self.routing_key is None:
            raise ValueError(f"channel {self.name!r} (pagerduty) needs routing_key")
        if self.type == "webhook" and self.secret is None:
            raise ValueError(f"channel {self.name!r} (webhook) needs secret (HMAC signing)")
        return self

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.url, self.routing_key, self.secret) if s]


_SEVERITY_ORDER = [Severity.INFO, Severity.WARNING, Severity.ERROR, Severity.CRITICAL]


class RouteConfig(_Cfg):
    """Which alerts go where. Patterns are shell globs (``budget.*``); empty matches all."""

    rule: str = "*"
    tenant: str = "*"
    entity: str = "*"
    min_severity: Severity = Severity.INFO
    channels: list[str] = Field(min_length=1)

    def matches(self, alert: AlertEvent) -> bool:
        return (
            fnmatch.fnmatchcase(alert.rule, self.rule)
            and fnmatch.fnmatchcase(alert.tenant or "", self.tenant)
            and fnmatch.fnmatchcase(alert.entity, self.entity)
            and _SEVERITY_ORDER.index(alert.severity) >= _SEVERITY_ORDER.index(self.min_severity)
        )


class AlertsConfig(_Cfg):
    channels: list[ChannelConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    renotify_minutes: float = Field(default=60.0, gt=0)
    dashboard_url: str = "http://127.0.0.1:8000/dashboards"
    retry: RetryConfig = Field(default_factory=RetryConfig)
    max_age_minutes: float = Field(
        default=60.0, gt=0, description="Older alerts update the lifecycle but notify nobody."
    )
    state_path: str | None = Field(default=None, description="sqlite file; default under home.")

    @model_validator(mode="after")
    def _routes_name_channels(self) -> AlertsConfig:
        names = {c.name for c in self.channels}
        if len(names) != len(self.channels):
            raise ValueError("channel names must be unique")
        for route in self.routes:
            unknown = set(route.channels) - names
            if unknown:
                raise ValueError(f"route names unknown channel(s): {', '.join(sorted(unknown))}")
        return self

    def channels_for(self, alert: AlertEvent) -> list[str]:
        out: list[str] = []
        for route in self.routes:
            if route.matches(alert):
                out.extend(c for c in route.channels if c not in out)
        return out

    def secrets(self) -> list[str]:
        return [s for c in self.channels for s in c.secrets()]


class LatencyObjectiveConfig(_Cfg):
    """Slow is unhealthy: a circuit opens when fewer than ``target`` of its successful calls
    answer within ``threshold_ms`` (judged on the timer tick, like the p95 bound)."""

    threshold_ms: float = Field(gt=0)
    target: float = Field(default=0.95, gt=0, lt=1)


class KeyAlertsConfig(_Cfg):
    """A provider key whose calls fail (401, 429, other errors) raises ``provider.key``: at
    least ``min_errors`` errors and an error rate of at least ``error_rate`` in the last
    ``window_s`` seconds; resolved once the window holds fewer errors than that, or a rate under
    half of it (docs/security.md)."""

    window_s: float = Field(default=60.0, gt=0)
    min_errors: int = Field(default=5, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)


class ProvidersConfig(_Cfg):
    fallbacks: dict[str, str] = Field(default_factory=dict)
    keys: KeyAlertsConfig = Field(default_factory=KeyAlertsConfig)
    window_s: float = Field(default=30.0, gt=0)
    min_volume: int = Field(default=20, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    latency_p95_ms: float | None = Field(default=None, gt=0)
    latency_objective: LatencyObjectiveConfig | None = None
    half_open_after_s: float = Field(
        default=30.0,
        gt=0,
        description="Open this long, then half-open; doubles on each failed probe (x16 max).",
    )
    probe_volume: int = Field(default=5, ge=1, description="Healthy spans that close a half-open circuit.")
    half_open: Literal["resume", "wait"] = Field(
        default="resume",
        description="`resume`: half-open publishes resume so live traffic is the probe (failing probes "
        "fail over again); `wait`: stay failed over until probe spans (client trickle, health checks) "
        "prove the provider healthy.",
    )


class DriftSettings(_Cfg):
    """Sensitivity of one drift detector (see docs/quality.md)."""

    baseline_n: int = Field(default=200, ge=20)
    k_sd: float = Field(default=0.25, gt=0, description="CUSUM allowance, in baseline sd.")
    h_sd: float = Field(default=10.0, gt=0, description="CUSUM alarm threshold, in baseline sd.")
    window: int = Field(default=100, ge=10, description="Recent scores in the confirmation test.")
    alpha: float = Field(default=0.0001, gt=0, lt=1, description="Mann-Whitney confirmation level.")
    min_sd: float = Field(default=0.01, gt=0)
    direction: Literal["down", "up", "both"] = "down"
    action: Literal["alert", "throttle", "rollback"] = "alert"
    throttle_rate_per_s: float = Field(default=1.0, gt=0)
    rollback_to: str | None = None


class DriftOverride(_Cfg):
    tenant: str = "*"
    agent: str = "*"
    metric: str = "*"
    settings: dict[str, Any] = Field(default_factory=dict)


class QualityConfig(_Cfg):
    defaults: DriftSettings = Field(default_factory=DriftSettings)
    overrides: list[DriftOverride] = Field(default_factory=list)

    @model_validator(mode="after")
    def _overrides_valid(self) -> QualityConfig:
        # Fail at load time, not on the first quality event of a matching agent.
        for o in self.overrides:
            DriftSettings.model_validate({**self.defaults.model_dump(), **o.settings})
        return self

    def for_key(self, tenant: str, agent: str, metric: str) -> DriftSettings:
        merged = self.defaults.model_dump()
        for o in self.overrides:
            if all(
                fnmatch.fnmatchcase(v, p)
                for v, p in ((tenant, o.tenant), (agent, o.agent), (metric, o.metric))
            ):
                merged.update(o.settings)
        return DriftSettings.model_validate(merged)


class CanaryConfig(_Cfg):
    live_window_s: float = Field(default=600.0, gt=0, description="A version is live if seen this recently.")
    task_idle_s: float = Field(default=30.0, gt=0, description="A trace idle this long is a finished task.")
    min_tasks: int = Field(default=30, ge=5)
    promote_min_tasks: int = Field(default=200, ge=5)
    alpha: float = Field(default=0.001, gt=0, lt=1)
    cost_margin: float = Field(default=0.10, ge=0, description="Relative cost increase that matters.")
    error_margin: float = Field(default=0.02, ge=0, description="Absolute error-rate increase that matters.")
    quality_margin: float = Field(default=0.05, ge=0, description="Relative quality drop that matters.")
    eval_interval_s: float = Field(default=5.0, gt=0)


class HealthConfig(_Cfg):
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    providers: ProvidersConfig = Field(default_factory=ProvidersConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    objectives: list[ObjectivePolicy] = Field(default_factory=list, max_length=256)

    @model_validator(mode="after")
    def _objective_ids_unique(self) -> HealthConfig:
        ids = [o.objective_id for o in self.objectives]
        if len(ids) != len(set(ids)):
            raise ValueError("objective ids must be unique")
        return self


_OURS = ("alerts", "providers", "quality", "canary", "objectives")
DETECTOR_SECTIONS = ("providers", "quality", "canary", "objectives")


def _expand(value: Any, path: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            env = os.environ.get(m.group(1))
            if env is None:
                raise ConfigError(f"{path}: environment variable {m.group(1)} is not set")
            return env

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def parse_health_config(doc: dict[str, Any] | None, sections: tuple[str, ...] = _OURS) -> HealthConfig:
    """Our part of an already-loaded policy file (other top-level keys are ignored).

    ``sections`` limits what is read: the detectors worker skips ``alerts`` so it never needs
    the channel secrets in its environment."""
    doc = doc or {}
    ours = {k: _expand(doc[k], k) for k in sections if k in _OURS and doc.get(k) is not None}
    try:
        return HealthConfig.model_validate(ours)
    except ValidationError as exc:
        # describe() names fields and problems, never the input values (they may be secrets).
        raise ConfigError(f"invalid health/alerts configuration: {describe(exc)}") from None


def load_health_config(path: str | Path | None, sections: tuple[str, ...] = _OURS) -> HealthConfig:
    """Read the YAML policy file (``None``: defaults, no channels)."""
    if path is None:
        return HealthConfig()
    return parse_health_config(read_mapping(path), sections)


def read_mapping(path: str | Path) -> dict[str, Any] | None:
    """The YAML policy file's top-level mapping (None: the file is empty); ``ConfigError``
    when it cannot be read or parsed, or is not a mapping."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if doc is not None and not isinstance(doc, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return doc
