"""What each channel receives: Slack Block Kit, PagerDuty Events API v2, signed webhooks.

Pure functions from a notification to an HTTP request (url, headers, body). Formats follow
the vendors' documentation: Slack header text <= 150 chars, section text <= 3000, at most 10
fields of <= 2000 chars, a top-level ``text`` as the notification fallback; PagerDuty
``summary`` <= 1024, ``dedup_key`` <= 255, severity one of critical/error/warning/info, and a
resolve carries only routing_key, event_action and dedup_key.

Webhook signature: ``X-AgentLedger-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``
with ``X-AgentLedger-Timestamp: <unix seconds>``; a receiver recomputes it, compares in constant
time, rejects timestamps more than 5 minutes away, and dedupes on ``X-AgentLedger-Delivery``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from agentledger.events import AlertState, Severity
from agentledger.streams.healthconfig import ChannelConfig

from .alerting import OutboxItem

SIGNATURE_HEADER = "X-AgentLedger-Signature"
TIMESTAMP_HEADER = "X-AgentLedger-Timestamp"
DELIVERY_HEADER = "X-AgentLedger-Delivery"
REPLAY_TOLERANCE_S = 300

_TITLES = {
    "trigger": ("🔴", "ALERT"),
    "warn": ("🟡", "WARNING"),
    "resolve": ("✅", "RESOLVED"),
    "renotify": ("🔁", "STILL FIRING"),
}
_PD_SEVERITY = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.ERROR: "error",
    Severity.CRITICAL: "critical",
}


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    headers: dict[str, str]
    body: bytes


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_message(item: OutboxItem, dashboard_url: str) -> dict[str, Any]:
    """A Block Kit message: what happened, which agent/tenant, the figures, a dashboard link."""
    a = item.alert
    icon, word = _TITLES[item.kind]
    title = _cut(f"{icon} {word}: {a.rule} — {a.entity}", 150)
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*Tenant*\n{a.tenant or '-'}", 2000)},
        {"type": "mrkdwn", "text": _cut(f"*Entity*\n{a.entity}", 2000)},
        {"type": "mrkdwn", "text": f"*Severity*\n{a.severity.value}"},
        {"type": "mrkdwn", "text": f"*State*\n{a.state.value}"},
    ]
    for name, value in list(a.figures.items())[: 10 - len(fields)]:
        fields.append({"type": "mrkdwn", "text": _cut(f"*{name}*\n{value}", 2000)})
    link = f"{dashboard_url.rstrip('/')}?entity={a.entity}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(a.summary, 3000)}, "fields": fields},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"<{link}|Open the dashboard>"}},
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"agentledger · {a.ts.isoformat()} · dedup `{a.dedup_key}`"}
            ],
        },
    ]
    return {"text": _cut(f"{word}: {a.rule} {a.entity}: {a.summary}", 3000), "blocks": blocks}


def pagerduty_event(item: OutboxItem, routing_key: str, dashboard_url: str) -> dict[str, Any] | None:
    """An Events API v2 event (None: PagerDuty escalates by itself, no renotify needed)."""
    a = item.alert
    dedup = a.dedup_key[:255]
    if item.kind == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup}
    if item.kind == "renotify":
        return None
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": _cut(f"{a.rule} {a.entity}: {a.summary}", 1024),
            "source": a.entity,
            "severity": _PD_SEVERITY[a.severity],
            "timestamp": a.ts.isoformat(),
            "component": a.entity.split("/")[-1],
            "group": a.tenant or "agentledger",
            "class": a.rule,
            "custom_details": {**a.figures, "state": a.state.value, "alert_id": a.alert_id},
        },
        "client": "agentledger",
        "client_url": dashboard_url,
        "links": [
            {"href": f"{dashboard_url.rstrip('/')}?entity={a.entity}", "text": "agentledger dashboard"}
        ],
    }


def webhook_body(item: OutboxItem, dashboard_url: str) -> bytes:
    a = item.alert
    doc = {
        "delivery_id": item.id,
        "kind": item.kind,
        "resolved": item.kind == "resolve" or a.state in (AlertState.RESOLVED, AlertState.OK),
        "dashboard_url": dashboard_url,
        "alert": json.loads(a.model_dump_json()),
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 over ``f"{timestamp}.".encode() + body``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, signature: str, body: bytes, now: float) -> bool:
    """What a receiver does: reject stale/future timestamps (replay), then compare in
    constant time."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > REPLAY_TOLERANCE_S:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def build_request(
    channel: ChannelConfig, item: OutboxItem, dashboard_url: str, now: float
) -> HttpRequest | None:
    """The HTTP request for one outbox item on one channel (None: nothing to send)."""
    json_headers = {"Content-Type": "application/json"}
    if channel.type == "slack":
        assert channel.url is not None
        body = json.dumps(slack_message(item, dashboard_url)).encode()
        return HttpRequest(channel.url.get_secret_value(), json_headers, body)
    if channel.type == "pagerduty":
        assert channel.routing_key is not None
        event = pagerduty_event(item, channel.routing_key.get_secret_value(), dashboard_url)
        if event is None:
            return None
        return HttpRequest(channel.events_url, json_headers, json.dumps(event).encode())
    assert channel.url is not None and channel.secret is not None
    body = webhook_body(item, dashboard_url)
    ts = int(now)
    headers = {
        **json_headers,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(channel.secret.get_secret_value(), ts, body),
        DELIVERY_HEADER: item.id,
    }
    return HttpRequest(channel.url.get_secret_value(), headers, body)
