"""The HTTP transport against a local stdlib server: body shape, bearer key, retries on 503,
no retry on 4xx (counted as failed), nothing raised into agent code."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agentledger import wire
from agentledger.collectors import Emitter, HttpTransport


class Api:
    def __init__(self) -> None:
        self.statuses: list[int] = []  # served in order, then 202
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.reject: list[dict[str, Any]] = []


@pytest.fixture
def api() -> Iterator[tuple[Api, str]]:
    state = Api()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.auth.append(self.headers.get("Authorization"))
            status = state.statuses.pop(0) if state.statuses else 202
            if status == 202:
                state.bodies.append(json.loads(body))
            answer = json.dumps({"accepted": 0, "rejected": state.reject, "envelopes": 1}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_posts_contract_events_with_the_key_and_retries_5xx(api: tuple[Api, str]) -> None:
    state, url = api
    em = Emitter(
        tenant="acme", agent="a", transport=HttpTransport(url, "k-123", backoff_s=0.01), linger_ms=2000
    )
    em.record_usage("openai", "gpt-4o", 1, 1)  # sent at once (the first after idle)
    assert em.flush(10)
    state.statuses = [503, 503]
    with em.span("s"):  # these two within the linger: one batch
        em.record_usage("openai", "gpt-4o", 10, 1)
    assert em.flush(10)
    assert em.stats() == {"sent": 3, "dropped": 0, "failed": 0, "queued": 0, "rejected": 0}
    assert state.auth == ["Bearer k-123"] * 4
    (_, body) = state.bodies
    assert [wire.parse_event(e).type for e in body["events"]] == ["usage", "span"]
    em.shutdown(1)


def test_client_errors_are_counted_not_retried_not_raised(api: tuple[Api, str]) -> None:
    state, url = api
    state.statuses = [401]
    em = Emitter(tenant="acme", agent="a", transport=HttpTransport(url, "bad", backoff_s=0.01), linger_ms=1)
    em.record_usage("openai", "gpt-4o", 10, 1)
    assert em.flush(10)
    assert em.stats()["failed"] == 1 and len(state.auth) == 1
    em.shutdown(1)


def test_unreachable_api_gives_up_after_retries() -> None:
    from agentledger.localkafka import free_ports

    (port,) = free_ports(1)
    transport = HttpTransport(f"http://127.0.0.1:{port}", "k", backoff_s=0.01, max_attempts=3)
    em = Emitter(tenant="acme", agent="a", transport=transport, linger_ms=1)
    em.record_quality("m", 1.0)
    assert em.flush(10)
    assert em.stats()["failed"] == 1
    em.shutdown(1)


def test_events_the_api_rejects_are_counted_failed(api: tuple[Api, str]) -> None:
    state, url = api
    em = Emitter(tenant="acme", agent="a", transport=HttpTransport(url, "k", backoff_s=0.01), linger_ms=2000)
    em.record_usage("openai", "gpt-4o", 10, 1)  # sent at once (the first after idle)
    assert em.flush(10)
    state.reject = [{"index": 0, "reason": "input_tokens: too large"}]
    em.record_usage("openai", "gpt-4o", 10, 1)  # these two within the linger: one batch
    em.record_usage("openai", "gpt-4o", 10, 1)
    assert em.flush(10)
    assert (em.stats()["sent"], em.stats()["failed"]) == (2, 1) and len(state.auth) == 2
    em.shutdown(1)
