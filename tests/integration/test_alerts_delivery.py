"""Delivery rules against a real HTTP server on 127.0.0.1, with a fixed clock (no broker):
a payload rejected with 4xx is dropped (not retried forever) and does not block others; a
held alert is renotified to Slack and webhooks after the interval, not to PagerDuty."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentledger.events import AlertEvent, AlertState, Severity
from agentledger.streams.alerts.dispatch import AlertDispatcher
from agentledger.streams.healthconfig import parse_health_config
from agentledger.wire import dump

SECRET_PATH = "sekritSlackPath42"


class Clock:
    def __init__(self) -> None:
        self.t = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server() -> Any:
    got: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            got.append((self.path, body))
            status = (
                400 if self.path.startswith("/rejecting") else 202 if self.path.startswith("/pd") else 200
            )
            self.send_response(status)
            self.send_header("Content-Length", "12")
            self.end_headers()
            self.wfile.write(b"invalid_blah" if status == 400 else b"ok          ")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], got
    srv.shutdown()
    srv.server_close()


def _dispatcher(port: int, tmp_path: Path, clock: Clock) -> AlertDispatcher:
    doc = {
        "renotify_minutes": 10,
        "retry": {"base_s": 1, "max_s": 4},
        "channels": [
            {"name": "slack", "type": "slack", "url": f"http://127.0.0.1:{port}/slack/{SECRET_PATH}"},
            {"name": "bad", "type": "slack", "url": f"http://127.0.0.1:{port}/rejecting/{SECRET_PATH}"},
            {
                "name": "pd",
                "type": "pagerduty",
                "routing_key": "rk",
                "events_url": f"http://127.0.0.1:{port}/pd",
            },
        ],
        "routes": [{"rule": "r.*", "channels": ["slack", "bad", "pd"]}],
    }
    cfg = parse_health_config({"alerts": doc}).alerts
    return AlertDispatcher(cfg, "unused:9092", "alerts", tmp_path / "s.db", clock=clock)


def _alert(state: AlertState, at: float) -> bytes:
    return dump(
        AlertEvent(
            alert_id=uuid.uuid4().hex,
            dedup_key="r.x|acme/a",
            ts=datetime.fromtimestamp(at, UTC),
            rule="r.x",
            entity="acme/a",
            tenant="acme",
            state=state,
            severity=Severity.ERROR,
            summary="s",
        )
    )


async def test_rejected_payload_is_dropped_and_others_flow_and_renotify(
    server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port, got = server
    clock = Clock()
    disp = _dispatcher(port, tmp_path, clock)
    disp.apply(0, 0, _alert(AlertState.ALERT, clock.t))
    disp.apply(0, 1, b"not an alert")  # skipped, logged, offset advanced
    phases: list[list[tuple[str, Any]]] = []

    def phase() -> None:
        done = sum(len(p) for p in phases)
        phases.append(sorted((p.split("/")[1], b.get("event_action")) for p, b in got[done:]))

    async with httpx.AsyncClient() as client:
        assert await disp.deliver_due(client) == 2  # slack + pd; "bad" answered 400
        assert await disp.deliver_due(client) == 0  # nothing is retried: 400 is final
        phase()
        assert disp.store.counts() == {"sent": 2, "dead": 1}
        assert disp.store.next_offsets("alerts") == {0: 2}
        clock.t += 11 * 60  # past renotify_minutes
        disp.store.renotify_due()
        assert await disp.deliver_due(client) == 1  # slack only; pd escalates by itself
        phase()
        disp.apply(0, 2, _alert(AlertState.RESOLVED, clock.t))
        assert await disp.deliver_due(client) == 2  # recovery notice to slack and pd
        phase()
    assert phases == [
        [("pd", "trigger"), ("rejecting", None), ("slack", None)],
        [("rejecting", None), ("slack", None)],
        [("pd", "resolve"), ("rejecting", None), ("slack", None)],
    ]
    renotified = next(b for p, b in got if p.startswith("/slack") and "STILL FIRING" in json.dumps(b))
    assert renotified["blocks"][0]["type"] == "header"
    assert "rejected" in caplog.text and "not an AlertEvent" in caplog.text
    assert SECRET_PATH not in caplog.text
    disp.store.close()
