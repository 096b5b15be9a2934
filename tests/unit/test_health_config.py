"""The health/alerts part of the shared policy file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentledger.errors import ConfigError
from agentledger.events import AlertEvent, AlertState, Severity
from agentledger.streams.healthconfig import DETECTOR_SECTIONS, load_health_config, parse_health_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alerts.yaml"


def _alert(rule: str, severity: Severity = Severity.WARNING, tenant: str = "acme") -> AlertEvent:
    return AlertEvent(
        alert_id="a-00000001",
        dedup_key=f"{rule}|x",
        ts=datetime.now(UTC),
        rule=rule,
        entity="acme/planner",
        tenant=tenant,
        state=AlertState.ALERT,
        severity=severity,
        summary="s",
    )


def test_example_file_loads_with_env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/sekrit")
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "R" * 32)
    monkeypatch.setenv("WEBHOOK_SECRET", "whsec")
    cfg = load_health_config(EXAMPLE)
    slack = next(c for c in cfg.alerts.channels if c.type == "slack")
    assert slack.url is not None and slack.url.get_secret_value().endswith("/sekrit")
    assert "sekrit" not in repr(cfg) and "sekrit" not in str(cfg.model_dump())
    assert cfg.providers.fallbacks["openai"] == "anthropic"


def test_missing_env_var_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    doc = {"alerts": {"channels": [{"name": "s", "type": "slack", "url": "${NOPE_NOT_SET}"}]}}
    with pytest.raises(ConfigError, match="NOPE_NOT_SET"):
        parse_health_config(doc)
    # the detectors worker does not read `alerts`, so it needs none of the channel secrets
    assert parse_health_config(doc, DETECTOR_SECTIONS).alerts.channels == []


def test_bad_config_error_never_echoes_secret_values() -> None:
    doc = {"alerts": {"channels": [{"name": "w", "type": "webhook", "url": "https://x/hook-sekrit"}]}}
    with pytest.raises(ConfigError) as info:
        parse_health_config(doc)
    assert "secret" in str(info.value) and "hook-sekrit" not in str(info.value)


def test_routes_pick_channels_by_rule_and_severity_and_ignore_foreign_keys() -> None:
    doc = {
        "policies": [{"whatever": 1}],  # the budget worker's key: ignored here
        "loops": {"x": 1},
        "alerts": {
            "channels": [
                {"name": "pd", "type": "pagerduty", "routing_key": "k"},
                {"name": "slack", "type": "slack", "url": "http://127.0.0.1:1/s"},
            ],
            "routes": [
                {"rule": "*", "channels": ["slack"]},
                {"rule": "provider.*", "min_severity": "error", "channels": ["pd", "slack"]},
            ],
        },
    }
    cfg = parse_health_config(doc).alerts
    assert cfg.channels_for(_alert("provider.circuit", Severity.ERROR)) == ["slack", "pd"]
    assert cfg.channels_for(_alert("provider.circuit", Severity.WARNING)) == ["slack"]
    with pytest.raises(ConfigError, match="unknown channel"):
        parse_health_config({"alerts": {"routes": [{"channels": ["nope"]}]}})


def test_quality_overrides_apply_per_agent_and_metric() -> None:
    cfg = parse_health_config(
        {"quality": {"overrides": [{"agent": "planner", "metric": "faith*", "settings": {"h_sd": 4}}]}}
    ).quality
    assert cfg.for_key("acme", "planner", "faithfulness").h_sd == 4
    assert cfg.for_key("acme", "planner", "relevance").h_sd == cfg.defaults.h_sd


def test_bad_override_fails_at_load_time() -> None:
    with pytest.raises(ConfigError, match="h_sd"):
        parse_health_config({"quality": {"overrides": [{"agent": "x", "settings": {"h_sd": -1}}]}})


def test_faust_credentials_follow_the_kafka_settings() -> None:
    import faust

    from agentledger.settings import Settings
    from agentledger.streams.health.app import faust_credentials

    assert faust_credentials(Settings(kafka_security_protocol="PLAINTEXT")) is None
    sasl = faust_credentials(
        Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert isinstance(sasl, faust.SASLCredentials) and sasl.username == "u" and sasl.ssl_context is None
    assert isinstance(faust_credentials(Settings(kafka_security_protocol="SSL")), faust.SSLCredentials)


@pytest.mark.parametrize("text", ["- a list\n", "objectives: [\n"])
def test_the_health_config_and_the_objectives_file_refuse_the_same_bad_file(
    text: str, tmp_path: Path
) -> None:
    from agentledger.streams.objectivetopic import load_objectives_file

    bad = tmp_path / "policy.yaml"
    bad.write_text(text)
    messages = []
    for load in (load_health_config, load_objectives_file):
        with pytest.raises(ConfigError) as err:
            load(bad)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and str(bad) in messages[0]
    missing = tmp_path / "missing.yaml"
    for load in (load_health_config, load_objectives_file):
        with pytest.raises(ConfigError, match="cannot read"):
            load(missing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_objectives_file(empty) == [] and load_health_config(empty).objectives == []
