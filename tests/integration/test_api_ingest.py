"""POST /v1/events on a running API with a real broker behind it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from agentledger.admin import create_topics
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.keys import KeyScope, KeyStore
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.samples import sample_events
from agentledger.settings import Settings
from agentledger.wire import Decoded, decode_envelope


@dataclass
class Running:
    url: str
    keys: dict[str, str]
    bootstrap: str
    events_topic: str
    keys_path: Path

    def post(self, role: str | None, body: bytes, **headers: str) -> httpx.Response:
        h = {"content-type": "application/json", **headers}
        if role is not None:
            h["authorization"] = f"Bearer {self.keys.get(role, role)}"
        return httpx.post(f"{self.url}/v1/events", content=body, headers=h, timeout=30)


def _start(bootstrap: str, home: Path, **limits: float) -> tuple[ApiServer, Running]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(bootstrap, prefix=prefix))
    keys_path = home / "keys.sqlite"
    keys = standard_keys(keys_path)
    api_settings = ApiSettings(keys_path=keys_path, max_body_bytes=256 * 1024, **limits)  # type: ignore[arg-type]
    app = create_app(Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, home=home), api_settings)
    server = ApiServer(app)
    return server, Running(server.start(), keys, bootstrap, prefix + "agentledger.events.v1", keys_path)


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    server, running = _start(kafka_bootstrap, tmp_path_factory.mktemp("api"))
    yield running
    server.stop()


def consume(
    bootstrap: str, topic: str, agent: str, want: int, timeout_s: float = 30
) -> list[tuple[str, Decoded, int]]:
    """Envelopes of ``agent`` on ``topic`` until ``want`` events were seen."""

    async def run() -> list[tuple[str, Decoded, int]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: list[tuple[str, Decoded, int]] = []
        try:
            async with asyncio.timeout(timeout_s):
                while sum(len(d.events) for _, d, _ in out) < want:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        for r in records:
                            key = r.key.decode()
                            if key.endswith("/" + agent):
                                out.append((key, decode_envelope(r.value), r.timestamp))
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


def _body(*batches: list) -> bytes:  # type: ignore[type-arg]
    return orjson.dumps({"events": [e.model_dump(mode="json") for b in batches for e in b]})


def test_batch_is_acknowledged_and_lands_as_one_envelope_per_agent(api: Running) -> None:
    recent = datetime.now(UTC) - timedelta(minutes=10)  # inside Kafka's timestamp bounds
    a = sample_events(30, seed=1, agent="ing-a", t0=recent)
    b = sample_events(20, seed=2, agent="ing-b")
    response = api.post("acme_ingest", _body(a, b))
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 50, "rejected": [], "envelopes": 2}
    (key, decoded, ts), *_ = consume(api.bootstrap, api.events_topic, "ing-a", 30)
    assert key == "acme/ing-a" and decoded.key == key and not decoded.rejected
    assert [e.event_id for e in decoded.events] == [e.event_id for e in a]
    assert ts == max(int(e.ts.timestamp() * 1000) for e in a)  # the newest event time
    assert len(consume(api.bootstrap, api.events_topic, "ing-b", 20)[0][1].events) == 20


def test_invalid_events_are_reported_by_index_and_the_rest_written(api: Running) -> None:
    events = [e.model_dump(mode="json") for e in sample_events(10, seed=3, agent="ing-bad")]
    events[1]["input_tokens"] = -5
    events[7]["trace_id"] = "not-hex"
    response = api.post("acme_ingest", orjson.dumps({"events": events}))
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 8 and [r["index"] for r in body["rejected"]] == [1, 7]
    assert "input_tokens" in body["rejected"][0]["reason"] and "trace_id" in body["rejected"][1]["reason"]
    got = consume(api.bootstrap, api.events_topic, "ing-bad", 8)
    assert sorted(e.event_id for _, d, _ in got for e in d.events) == sorted(
        ev["event_id"] for i, ev in enumerate(events) if i not in (1, 7)
    )


def test_another_tenants_events_are_refused_and_nothing_is_written(api: Running) -> None:
    mixed = _body(
        sample_events(5, seed=4, agent="ing-iso"), sample_events(5, seed=5, tenant="globex", agent="ing-iso")
    )
    response = api.post("acme_ingest", mixed)
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert api.post("globex_ingest", _body(sample_events(3, seed=6, agent="ing-iso"))).status_code == 403
    marker = sample_events(2, seed=7, agent="ing-iso")
    assert api.post("acme_ingest", _body(marker)).status_code == 202
    got = consume(api.bootstrap, api.events_topic, "ing-iso", 2)
    assert [e.event_id for _, d, _ in got for e in d.events] == [e.event_id for e in marker]
    assert all(k == "acme/ing-iso" for k, _, _ in got)


def test_keys_scopes_and_revocation(api: Running) -> None:
    body = _body(sample_events(2, seed=8, agent="ing-auth"))
    assert api.post(None, body).status_code == 401
    assert api.post("al_nope_nope", body).status_code == 401
    assert api.post("acme_read", body).status_code == 403  # read scope cannot ingest
    assert api.post("admin", body).status_code == 202  # admin implies ingest, any tenant
    store = KeyStore(api.keys_path)
    key, token = store.create("temp", {KeyScope.INGEST}, "acme")
    assert api.post(token, body).status_code == 202
    store.revoke(key.key_id)
    store.close()
    response = api.post(token, body)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_unreadable_and_oversized_bodies_get_clear_json_errors(api: Running) -> None:
    for body, status in [
        (b"{oops", 400),
        (b'{"events": []}', 422),
        (b'{"x": 1}', 422),
        (b"x" * 300_000, 413),
    ]:
        response = api.post("acme_ingest", body)
        assert response.status_code == status, (body[:20], response.text)
        payload = response.json()
        assert set(payload) == {"error", "detail"} and "Traceback" not in response.text


def test_rate_limit_per_key_answers_429_with_retry_after(kafka_bootstrap: str, tmp_path: Path) -> None:
    server, running = _start(kafka_bootstrap, tmp_path, ingest_rate_per_s=10.0, ingest_burst=150)
    try:
        first = running.post("acme_ingest", _body(sample_events(100, seed=9, agent="ing-rate")))
        second = running.post("acme_ingest", _body(sample_events(100, seed=10, agent="ing-rate")))
        other_key = running.post("admin", _body(sample_events(100, seed=11, agent="ing-rate")))
    finally:
        server.stop()
    assert first.status_code == 202
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert second.json()["error"] == "rate_limited"
    assert other_key.status_code == 202  # limits are per key


def test_the_collectors_http_transport_delivers_through_the_api(api: Running) -> None:
    from agentledger.collectors.emitter import Emitter
    from agentledger.collectors.http import HttpTransport

    emitter = Emitter(
        tenant="acme", agent="ing-client", transport=HttpTransport(api.url, api.keys["acme_ingest"])
    )
    for i in range(25):
        emitter.record_usage("openai", "gpt-4o", 100 + i, 10)
    assert emitter.flush(20)
    stats = emitter.stats()
    emitter.shutdown(5)
    assert stats["sent"] == 25 and stats["failed"] == 0 and stats["dropped"] == 0
    got = consume(api.bootstrap, api.events_topic, "ing-client", 25)
    assert sorted(e.input_tokens for _, d, _ in got for e in d.events) == list(range(100, 125))  # type: ignore[union-attr]


def test_every_route_has_the_body_limit(api: Running) -> None:
    big = b'{"policy_id": "p", "description": "' + b"x" * 300_000 + b'"}'
    headers = {"authorization": f"Bearer {api.keys['admin']}", "content-type": "application/json"}
    response = httpx.put(f"{api.url}/v1/policies/p", content=big, headers=headers, timeout=30)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_a_streamed_body_over_the_limit_is_cut_off(api: Running) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"events": ['
        for _ in range(100):
            yield b'"' + b"x" * 4000 + b'",'  # no Content-Length: chunked transfer
        yield b'"x"]}'

    headers = {"authorization": f"Bearer {api.keys['acme_ingest']}", "content-type": "application/json"}
    response = httpx.post(f"{api.url}/v1/events", content=chunks(), headers=headers, timeout=30)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
