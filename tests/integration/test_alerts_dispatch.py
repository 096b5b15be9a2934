"""The alert dispatcher on the real broker, delivering to real HTTP receivers on 127.0.0.1.

Payloads are checked field by field against Slack's Block Kit and PagerDuty's Events API v2
formats; the webhook HMAC is verified the way a receiver does. The receiver-down case keeps
the full 30 s outage and crashes (SIGKILLs) the dispatcher in the middle of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from agentledger.events import AlertEvent, AlertState, Severity
from agentledger.streams.alerts.delivery import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from agentledger.streams.alerts.dispatch import AlertDispatcher
from agentledger.streams.healthconfig import AlertsConfig, parse_health_config
from agentledger.wire import dump

SLACK_SECRET = "XoXslackSecretPath0123"
PD_KEY = "PdRoutingKey0123456789abcdefABCD"
HMAC_SECRET = "whsec_hmacSecret_456"
HOOK_SECRET = "hookPathSecret789"
SECRETS = (SLACK_SECRET, PD_KEY, HMAC_SECRET, HOOK_SECRET)


class Receiver:
    """Slack, PagerDuty and a webhook endpoint on one 127.0.0.1 port; records every request."""

    def __init__(self, port: int = 0, fail_first: int = 0) -> None:
        self.port = port
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.bad_signatures = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    if outer.fail_first > 0:
                        outer.fail_first -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    if self.path.startswith("/hook") and not verify(
                        HMAC_SECRET,
                        self.headers.get(TIMESTAMP_HEADER, ""),
                        self.headers.get(SIGNATURE_HEADER, ""),
                        body,
                        time.time(),
                    ):
                        outer.bad_signatures += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                    outer.requests.append((self.path, dict(self.headers.items()), body))
                if self.path.startswith("/pd"):
                    reply = {
                        "status": "success",
                        "message": "Event processed",
                        "dedup_key": json.loads(body)["dedup_key"],
                    }
                    self.send_response(202)
                    payload = json.dumps(reply).encode()
                else:
                    self.send_response(200)
                    payload = b"ok"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def bodies(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(b) for p, _, b in self.requests if p.startswith(prefix)]

    def headers(self, prefix: str) -> list[dict[str, str]]:
        with self.lock:
            return [h for p, h, _ in self.requests if p.startswith(prefix)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alerts_doc(port: int) -> dict[str, Any]:
    return {
        "dashboard_url": "http://dash.example/d",
        "renotify_minutes": 60,
        "retry": {"base_s": 0.2, "max_s": 2.0, "timeout_s": 2.0},
        "channels": [
            {"name": "slack", "type": "slack", "url": f"http://127.0.0.1:{port}/slack/T000/B000/{SLACK_SECRET}"},
            {"name": "pd", "type": "pagerduty", "routing_key": PD_KEY, "events_url": f"http://127.0.0.1:{port}/pd/v2/enqueue"},
            {"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{port}/hook/{HOOK_SECRET}", "secret": HMAC_SECRET},
        ],
        "routes": [{"channels": ["slack", "pd", "hook"]}],
    }  # fmt: skip


def _cfg(port: int) -> AlertsConfig:
    return parse_health_config({"alerts": _alerts_doc(port)}).alerts


def _alert(key: str, state: AlertState, severity: Severity = Severity.CRITICAL) -> AlertEvent:
    return AlertEvent(
        alert_id=uuid.uuid4().hex,
        dedup_key=f"budget.hard|{key}",
        ts=datetime.now(UTC),
        rule="budget.hard",
        entity=key,
        tenant=key.split("/")[0],
        state=state,
        severity=severity,
        summary=f"{key} spent $12.50 of a $10.00 daily budget",
        figures={"spend_usd": 12.5, "limit_usd": 10.0, "window": "24h"},
    )


async def _produce(bootstrap: str, topic: str, alerts: list[AlertEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for a in alerts:
            await producer.send(topic, dump(a), key=a.dedup_key.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_payloads_match_slack_and_pagerduty_formats_and_hmac_verifies(
    topics: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recv = Receiver(fail_first=2).start()  # two 503s first: the retry path runs (and logs)
    disp = AlertDispatcher(_cfg(recv.port), topics.bootstrap, topics.alerts, tmp_path / "state.db")
    stop = asyncio.Event()
    task = asyncio.create_task(disp.run(stop))
    try:
        await _produce(
            topics.bootstrap,
            topics.alerts,
            [
                _alert("acme/planner", AlertState.ALERT),
                _alert("acme/planner", AlertState.RESOLVED, Severity.INFO),
            ],
        )
        await _until(lambda: len(recv.requests) >= 6, 30)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await task
        recv.stop()
    # PagerDuty Events API v2: trigger then resolve with the same dedup_key
    trigger, resolve = recv.bodies("/pd/v2/enqueue")
    assert trigger["routing_key"] == PD_KEY and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "budget.hard|acme/planner"
    p = trigger["payload"]
    assert set(p) >= {"summary", "source", "severity"}
    assert p["severity"] == "critical" and p["source"] == "acme/planner"
    assert 0 < len(p["summary"]) <= 1024 and "$12.50" in p["summary"]
    assert datetime.fromisoformat(p["timestamp"]).tzinfo is not None
    assert p["custom_details"]["spend_usd"] == 12.5
    assert trigger["links"][0]["href"].startswith("http://dash.example/d")
    assert resolve == {
        "routing_key": PD_KEY,
        "event_action": "resolve",
        "dedup_key": "budget.hard|acme/planner",
    }
    # Slack Block Kit: header (plain_text <= 150), section with mrkdwn fields (<= 10), link, context
    fire, recovered = recv.bodies("/slack/")
    assert fire["text"] and [b["type"] for b in fire["blocks"]] == ["header", "section", "section", "context"]
    header = fire["blocks"][0]["text"]
    assert header["type"] == "plain_text" and len(header["text"]) <= 150 and "ALERT" in header["text"]
    section = fire["blocks"][1]
    assert section["text"]["type"] == "mrkdwn" and "$12.50" in section["text"]["text"]
    assert len(section["fields"]) <= 10 and all(f["type"] == "mrkdwn" for f in section["fields"])
    field_texts = [f["text"] for f in section["fields"]]
    assert "*Tenant*\nacme" in field_texts and "*spend_usd*\n12.5" in field_texts
    assert "http://dash.example/d" in fire["blocks"][2]["text"]["text"]
    assert "RESOLVED" in recovered["blocks"][0]["text"]["text"]
    # webhook: the receiver verified every HMAC (none rejected); ids are unique
    hooks = recv.bodies("/hook/")
    assert [h["kind"] for h in hooks] == ["trigger", "resolve"] and recv.bad_signatures == 0
    assert len({h[DELIVERY_HEADER] for h in recv.headers("/hook/")}) == 2
    # secrets never in logs, even on the failure path
    assert "retrying" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text


async def test_alert_storm_1000_breaches_one_trigger_one_resolve(topics: Any, tmp_path: Path) -> None:
    recv = Receiver().start()
    disp = AlertDispatcher(_cfg(recv.port), topics.bootstrap, topics.alerts, tmp_path / "state.db")
    stop = asyncio.Event()
    task = asyncio.create_task(disp.run(stop))
    try:
        storm = [_alert("acme/runaway", AlertState.ALERT) for _ in range(1000)]
        await _produce(topics.bootstrap, topics.alerts, [*storm, _alert("acme/runaway", AlertState.RESOLVED)])
        await _until(lambda: len(recv.bodies("/pd/")) >= 2, 30)
        await asyncio.sleep(2.0)  # anything extra would arrive now
    finally:
        stop.set()
        await task
        recv.stop()
    assert [b["event_action"] for b in recv.bodies("/pd/")] == ["trigger", "resolve"]
    assert len(recv.bodies("/slack/")) == 2 and len(recv.bodies("/hook/")) == 2


def _start_cli(config: Path, state: Path, topics: Any, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AGENTLEDGER_KAFKA_BOOTSTRAP": topics.bootstrap,
        "AGENTLEDGER_TOPIC_PREFIX": topics.prefix,
        "AGENTLEDGER_HOME": str(state.parent),
    }
    out = log_path.open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentledger",
            "alerts",
            "dispatch",
            "--config",
            str(config),
            "--state",
            str(state),
        ],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


async def test_receiver_down_30s_then_up_every_alert_once_across_a_crash(
    topics: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    port = _free_port()
    doc = _alerts_doc(port)
    slack_url = doc["channels"][0]["url"]
    monkeypatch.setenv("SLACK_URL_FROM_ENV", slack_url)
    doc["channels"][0]["url"] = "${SLACK_URL_FROM_ENV}"  # secrets from the environment
    config = tmp_path / "alerts.yaml"
    config.write_text(yaml.safe_dump({"alerts": doc, "policies": [], "loops": {}}))
    state, log_path = tmp_path / "dispatch.db", tmp_path / "dispatch.log"
    proc = _start_cli(config, state, topics, log_path)
    t0 = time.monotonic()
    first = [_alert(f"acme/agent{i}", AlertState.ALERT) for i in range(10)]
    resolved = [_alert(f"acme/agent{i}", AlertState.RESOLVED, Severity.INFO) for i in range(5)]
    later = [_alert(f"beta/agent{i}", AlertState.ALERT) for i in range(5)]
    recv: Receiver | None = None
    try:
        await _produce(topics.bootstrap, topics.alerts, first + resolved)
        await asyncio.sleep(8)
        proc.send_signal(signal.SIGKILL)  # a crash while everything is still undelivered
        proc.wait(10)
        proc = _start_cli(config, state, topics, log_path)
        await _produce(topics.bootstrap, topics.alerts, later + first[:3])  # repeats: no new notice
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        recv = Receiver(port=port).start()  # the receiver is back after 30 s
        await _until(lambda: len(recv.bodies("/pd/")) >= 20, 60)
        await asyncio.sleep(2.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        if recv is not None:
            recv.stop()
    pd = [(b["dedup_key"], b["event_action"]) for b in recv.bodies("/pd/")]
    expected = {(f"budget.hard|acme/agent{i}", "trigger") for i in range(10)}
    expected |= {(f"budget.hard|acme/agent{i}", "resolve") for i in range(5)}
    expected |= {(f"budget.hard|beta/agent{i}", "trigger") for i in range(5)}
    assert sorted(pd) == sorted(expected)  # every alert, each once
    for key in range(5):  # per alert, the trigger reached PagerDuty before its resolve
        k = f"budget.hard|acme/agent{key}"
        assert pd.index((k, "trigger")) < pd.index((k, "resolve"))
    assert len(recv.bodies("/slack/")) == 20 and recv.bad_signatures == 0
    ids = [h[DELIVERY_HEADER] for h in recv.headers("/hook/")]
    assert len(ids) == 20 and len(set(ids)) == 20
    logs = log_path.read_text()
    assert "retrying" in logs
    for secret in SECRETS:
        assert secret not in logs
