"""Channel payloads against the vendors' documented formats, and webhook signing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agentledger.events import AlertEvent, AlertState, Severity
from agentledger.streams.alerts.alerting import OutboxItem
from agentledger.streams.alerts.delivery import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    build_request,
    sign,
    verify,
)
from agentledger.streams.alerts.dispatch import backoff_s, redact
from agentledger.streams.healthconfig import ChannelConfig, RetryConfig

NOW = 1_800_000_000.0


def _item(
    kind: str = "trigger", severity: Severity = Severity.CRITICAL, summary: str = "spend $12.50 > $10"
) -> OutboxItem:
    alert = AlertEvent(
        alert_id="alert-00000001",
        dedup_key="budget.hard|acme/planner",
        ts=datetime.fromtimestamp(NOW, UTC),
        rule="budget.hard",
        entity="acme/planner",
        tenant="acme",
        state=AlertState.ALERT if kind != "resolve" else AlertState.RESOLVED,
        severity=severity,
        summary=summary,
        figures={f"f{i}": i for i in range(12)},
    )
    return OutboxItem(1, f"alert-00000001:{kind}:c", "c", alert.dedup_key, kind, alert, 0)  # type: ignore[arg-type]


SLACK = ChannelConfig(name="s", type="slack", url="https://hooks.slack.com/services/T/B/sekrit")  # type: ignore[arg-type]
PD = ChannelConfig(name="p", type="pagerduty", routing_key="R0UTINGKEY0000000000000000000000")  # type: ignore[arg-type]
HOOK = ChannelConfig(name="w", type="webhook", url="http://127.0.0.1:1/h", secret="whsec")  # type: ignore[arg-type]


def test_slack_block_kit_limits_and_content() -> None:
    req = build_request(SLACK, _item(summary="x" * 1024), "http://dash", NOW)
    assert req is not None and req.url.endswith("/sekrit")
    msg = json.loads(req.body)
    assert isinstance(msg["text"], str) and msg["text"]
    header, section, link, context = msg["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150 and "budget.hard" in header["text"]["text"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert len(section["text"]["text"]) <= 3000
    assert 1 <= len(section["fields"]) <= 10
    assert all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000 for f in section["fields"])
    assert "*Tenant*\nacme" in [f["text"] for f in section["fields"]]
    assert "<http://dash?entity=acme/planner|" in link["text"]["text"]
    assert context["type"] == "context" and context["elements"][0]["type"] == "mrkdwn"


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.INFO, "info"),
        (Severity.WARNING, "warning"),
        (Severity.ERROR, "error"),
        (Severity.CRITICAL, "critical"),
    ],
)
def test_pagerduty_trigger_format_and_severity_mapping(severity: Severity, expected: str) -> None:
    req = build_request(PD, _item(severity=severity, summary="y" * 1024), "http://dash", NOW)
    assert req is not None and req.url == "https://events.pagerduty.com/v2/enqueue"
    ev = json.loads(req.body)
    assert ev["routing_key"] == "R0UTINGKEY0000000000000000000000"
    assert ev["event_action"] == "trigger" and ev["dedup_key"] == "budget.hard|acme/planner"
    p = ev["payload"]
    assert p["severity"] == expected and len(p["summary"]) <= 1024
    assert p["source"] == "acme/planner" and p["timestamp"].startswith("2027-01-15T08:00:00")
    assert p["custom_details"]["f3"] == 3
    assert ev["links"][0]["href"].startswith("http://dash")


def test_pagerduty_resolve_has_the_same_dedup_key_and_no_payload() -> None:
    req = build_request(PD, _item(kind="resolve"), "http://dash", NOW)
    assert req is not None
    assert json.loads(req.body) == {
        "routing_key": "R0UTINGKEY0000000000000000000000",
        "event_action": "resolve",
        "dedup_key": "budget.hard|acme/planner",
    }
    assert build_request(PD, _item(kind="renotify"), "http://dash", NOW) is None


def test_webhook_signature_verifies_and_rejects_tampering_and_replay() -> None:
    req = build_request(HOOK, _item(), "http://dash", NOW)
    assert req is not None
    ts, sig = req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER]
    assert req.headers[DELIVERY_HEADER] == "alert-00000001:trigger:c"
    assert sig == sign("whsec", int(NOW), req.body) and sig.startswith("v1=")
    assert verify("whsec", ts, sig, req.body, now=NOW + 10)
    assert not verify("other", ts, sig, req.body, now=NOW)
    assert not verify("whsec", ts, sig, req.body + b" ", now=NOW)
    assert not verify("whsec", ts, sig, req.body, now=NOW + 301)  # replayed later
    assert json.loads(req.body)["alert"]["dedup_key"] == "budget.hard|acme/planner"


def test_redact_and_backoff() -> None:
    assert redact("POST https://h/services/sekrit failed", ["sekrit"]) == "POST https://h/services/*** failed"
    import random

    rng = random.Random(1)
    retry = RetryConfig(base_s=1, max_s=8)
    delays = [backoff_s(a, retry, rng) for a in range(8)]
    assert all(0.5 * min(8, 2**a) <= d <= min(8, 2**a) for a, d in enumerate(delays))
