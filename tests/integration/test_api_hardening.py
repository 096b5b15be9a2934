"""Issue #13 on a real broker: big batches, a broker refusal, idempotent retries, provider
commands from tenant keys, OTLP partial success, readiness, and the #12 first-hour rules."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from agentledger import topics as specs
from agentledger.admin import RECORD_OVERHEAD_BYTES, create_topics, record_value_limit
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.events import ControlCommand
from agentledger.samples import sample_events
from agentledger.settings import Settings
from agentledger.wire import decode_envelope


@dataclass
class Api:
    url: str
    keys: dict[str, str]
    bootstrap: str
    prefix: str

    def topic(self, spec: specs.TopicSpec) -> str:
        return self.prefix + spec.name

    def call(self, method: str, path: str, role: str, body: Any = None, **headers: str) -> httpx.Response:
        h = {"authorization": f"Bearer {self.keys[role]}", **headers}
        if body is not None and not isinstance(body, bytes):
            body = orjson.dumps(body)
            h.setdefault("content-type", "application/json")
        return httpx.request(method, self.url + path, content=body, headers=h, timeout=60)


def _serve(bootstrap: str, home: Path, events_partitions: int = specs.PARTITIONS) -> tuple[ApiServer, Api]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    wanted = tuple(
        specs.TopicSpec(s.name, s.key, events_partitions, s.compacted, dict(s.config))
        if s is specs.EVENTS
        else s
        for s in specs.ALL
    )
    asyncio.run(create_topics(bootstrap, wanted, prefix=prefix))
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),  # the documented defaults: 5 MiB, 5,000 events
    )
    server = ApiServer(app)
    return server, Api(server.start(), keys, bootstrap, prefix)


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server, running = _serve(kafka_bootstrap, tmp_path_factory.mktemp("hardening"))
    yield running
    server.stop()


def records(bootstrap: str, topic: str, settle_s: float = 2.0) -> list[tuple[str, bytes | None, int]]:
    """Every record of ``topic`` (key, value, size of the value), read to the end."""

    async def run() -> list[tuple[str, bytes | None, int]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        out: list[tuple[str, bytes | None, int]] = []
        quiet_since = time.monotonic()
        try:
            while time.monotonic() - quiet_since < settle_s:
                batch = await consumer.getmany(timeout_ms=300)
                for recs in batch.values():
                    for r in recs:
                        out.append((r.key.decode(), r.value, len(r.value or b"")))
                        quiet_since = time.monotonic()
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


def event_ids(bootstrap: str, topic: str) -> list[str]:
    return [e.event_id for _, v, _ in records(bootstrap, topic) if v for e in decode_envelope(v).events]


def padded(n: int, agent: str, tenant: str = "acme", seed: int = 1, pad: int = 600) -> list[dict[str, Any]]:
    """``n`` valid events of about ``pad`` + 300 bytes each (attributes are in the contract)."""
    recent = datetime.now(UTC) - timedelta(minutes=5)
    out = []
    for e in sample_events(n, seed=seed, tenant=tenant, agent=agent, t0=recent):
        doc = e.model_dump(mode="json")
        doc["attributes"] = {f"note.{i}": "x" * (pad // 4) for i in range(4)}
        out.append(doc)
    return out


# -- 1. batches within the documented limits -------------------------------------------------


def test_a_5000_event_single_agent_batch_within_the_limits_is_written_whole(api: Api) -> None:
    events = padded(5000, "big-one", pad=500)
    body = orjson.dumps({"events": events})
    assert 4 * 1024 * 1024 < len(body) <= 5 * 1024 * 1024  # inside the documented 5 MiB
    response = api.call("POST", "/v1/events", "acme_ingest", body, **{"content-type": "application/json"})
    assert response.status_code == 202, response.text[:500]
    answer = response.json()
    assert answer["accepted"] == 5000 and answer["rejected"] == [] and answer["envelopes"] >= 4
    got = records(api.bootstrap, api.topic(specs.EVENTS))
    assert all(size <= 1024 * 1024 for _, _, size in got)  # the broker's record limit
    ids = [e.event_id for _, v, _ in got if v for e in decode_envelope(v).events]
    assert ids == [e["event_id"] for e in events]  # every event, once, in order


def test_one_event_too_large_for_any_record_is_rejected_alone(api: Api) -> None:
    events = padded(3, "one-huge", seed=5, pad=40)
    events[1]["attributes"] = {"blob": "x" * 1_200_000}  # over the broker's 1 MiB record limit
    response = api.call("POST", "/v1/events", "acme_ingest", {"events": events})
    assert response.status_code == 202, response.text[:300]
    assert response.json()["accepted"] == 2 and [r["index"] for r in response.json()["rejected"]] == [1]
    ids = event_ids(api.bootstrap, api.topic(specs.EVENTS))
    assert events[0]["event_id"] in ids and events[2]["event_id"] in ids and events[1]["event_id"] not in ids


async def _set_topic_limit(bootstrap: str, topic: str, limit: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(limit)})]
        )
    finally:
        await admin.close()
    # KRaft applies a config change a moment later: wait until the broker reports it.
    deadline = time.monotonic() + 30
    while await record_value_limit(bootstrap, topic) != limit - RECORD_OVERHEAD_BYTES:
        assert time.monotonic() < deadline, f"the broker did not apply max.message.bytes={limit}"
        await asyncio.sleep(0.1)


def test_after_a_refused_write_other_tenants_still_write(kafka_bootstrap: str, tmp_path: Path) -> None:
    # One partition: every tenant shares the partition of the refused write.
    server, api = _serve(kafka_bootstrap, tmp_path, events_partitions=1)
    try:
        # The API read 1 MiB at start; the topic's limit drops below what it sends now.
        asyncio.run(_set_topic_limit(kafka_bootstrap, api.topic(specs.EVENTS), 100_000))
        big = orjson.dumps({"events": padded(400, "refused", seed=2)})  # ~360 KB: refused
        smalls = [padded(5, f"busy-{i}", tenant="globex", seed=10 + i, pad=40) for i in range(8)]
        json = {"content-type": "application/json"}
        with ThreadPoolExecutor(9) as pool:  # writes in flight with it, as under load
            refused_f = pool.submit(api.call, "POST", "/v1/events", "admin", big, **json)
            small_f = [
                pool.submit(api.call, "POST", "/v1/events", "globex_ingest", {"events": s}) for s in smalls
            ]
            refused, during = refused_f.result(), [f.result() for f in small_f]
        assert refused.status_code == 503, refused.text[:300]
        assert all(r.status_code in (202, 503) for r in during)
        after = [
            padded(5, "after", tenant=t, seed=30 + i, pad=40) for i, t in enumerate(["globex", "acme"] * 2)
        ]
        for events in after:  # before: 503 OutOfOrderSequenceNumber for everyone until a restart
            response = api.call("POST", "/v1/events", "admin", {"events": events})
            assert response.status_code == 202, response.text
        detail = refused.json()["detail"]
        assert detail["written"] == [] and detail["not_written"] == [[0, 399]] and detail["unknown"] == []
        assert "same event ids" in detail["message"]
        # A multi-agent batch half refused: the 503 says exactly which events were written.
        mixed = padded(5, "mixed-a", seed=50, pad=40) + padded(400, "mixed-b", seed=51)
        partial = api.call("POST", "/v1/events", "acme_ingest", {"events": mixed})
        assert partial.status_code == 503, partial.text[:300]
        detail = partial.json()["detail"]
        assert detail["written"] == [[0, 4]] and detail["not_written"] == [[5, 404]]
        ids = set(event_ids(kafka_bootstrap, api.topic(specs.EVENTS)))
        assert {e["event_id"] for e in mixed[:5]} <= ids and not any(i.startswith("ev-51-") for i in ids)
        assert {e["event_id"] for batch in after for e in batch} <= ids
        ok = [s for s, r in zip(smalls, during, strict=True) if r.status_code == 202]
        assert {e["event_id"] for batch in ok for e in batch} <= ids
        assert not any(i.startswith("ev-2-") for i in ids)  # nothing of the refused batch
    finally:
        server.stop()


# -- 2. idempotent writes --------------------------------------------------------------------


def test_a_control_command_retried_with_its_id_is_one_command(api: Api) -> None:
    request = {
        "command_id": "ops-kill-0001",
        "scope": {"kind": "agent", "tenant": "acme", "agent": "retry-me"},
        "action": "kill",
        "reason": "runaway",
    }
    first = api.call("POST", "/v1/control", "acme_admin", request)
    second = api.call("POST", "/v1/control", "acme_admin", request)  # a retry after a 503
    assert first.status_code == 202, first.text
    assert second.status_code == 202 and second.json() == first.json()
    assert first.json()["command_id"] == "ops-kill-0001"
    reused = api.call("POST", "/v1/control", "acme_admin", {**request, "action": "resume"})
    assert reused.status_code == 409 and reused.json()["error"] == "conflict"
    resume = {**request, "command_id": "ops-resume-0001", "action": "resume"}
    assert api.call("POST", "/v1/control", "acme_admin", resume).status_code == 202
    late = api.call("POST", "/v1/control", "acme_admin", request)  # a late retry of the kill
    assert late.status_code == 202 and late.json() == first.json()
    in_force = api.call("GET", "/v1/control", "acme_read").json()
    assert [c["action"] for c in in_force if c["scope"].get("agent") == "retry-me"] == ["resume"]
    written = [
        ControlCommand.model_validate_json(v)
        for _, v, _ in records(api.bootstrap, api.topic(specs.CONTROL))
        if v is not None
    ]
    assert [c.command_id for c in written].count("ops-kill-0001") == 1


def test_a_retry_racing_the_first_write_of_a_command_id_is_still_one_command(api: Api) -> None:
    """A client that times out and retries at once can reach the API while the first request
    is still producing: both must not write. Several rounds of concurrent requests per id."""
    ids = [f"race-{uuid.uuid4().hex[:12]}" for _ in range(6)]

    def post(command_id: str) -> httpx.Response:
        request = {
            "command_id": command_id,
            "scope": {"kind": "agent", "tenant": "acme", "agent": "raced"},
            "action": "throttle",
            "reason": "retried at once",
            "params": {"rate_per_s": 1.0},
        }
        return api.call("POST", "/v1/control", "acme_admin", request)

    with ThreadPoolExecutor(8) as pool:
        answers = {cid: list(pool.map(post, [cid] * 8)) for cid in ids}
    for got in answers.values():
        assert [r.status_code for r in got] == [202] * 8, [r.text for r in got]
        assert len({r.text for r in got}) == 1  # every retry answers the one command
    written = [
        ControlCommand.model_validate_json(v)
        for _, v, _ in records(api.bootstrap, api.topic(specs.CONTROL))
        if v is not None
    ]
    assert {cid: [c.command_id for c in written].count(cid) for cid in ids} == dict.fromkeys(ids, 1)


def test_a_policy_put_twice_is_one_policy(api: Api) -> None:
    policy = {"policy_id": "retry-daily", "selector": {"tenant": "acme"}, "window": "24h", "limit": "10"}
    for _ in range(2):
        response = api.call("PUT", "/v1/policies/retry-daily", "acme_admin", policy)
        assert response.status_code == 200, response.text
    listed = api.call("GET", "/v1/policies", "acme_admin").json()
    assert [p["policy_id"] for p in listed].count("retry-daily") == 1


# -- 3. provider commands and tenant keys ----------------------------------------------------


def _failover(
    api: Api, role: str, scope: dict[str, str], fallback: str, action: str = "failover"
) -> httpx.Response:
    params = {"fallback_provider": fallback} if action == "failover" else {}
    return api.call(
        "POST", "/v1/control", role, {"scope": scope, "action": action, "reason": "t", "params": params}
    )


def _sees(guard: Any, key: str, command_id: str) -> None:
    """Wait until ``guard`` has read the command ``command_id`` at ``key``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        held = guard.commands.get(key)
        if held is not None and held.command_id == command_id:
            return
        time.sleep(0.05)
    raise AssertionError(f"the Guard did not read {command_id} at {key}")


def test_a_tenant_key_fails_over_a_provider_for_its_own_tenant_only(api: Api) -> None:
    from agentledger.collectors.guard import Guard

    acme, globex = (Guard(api.bootstrap, api.topic(specs.CONTROL)) for _ in range(2))
    try:
        assert acme.wait_ready(30) and globex.wait_ready(30)
        # A tenant key cannot fail a provider over for every tenant; the 403 says what to add.
        refused = _failover(api, "acme_admin", {"kind": "provider", "provider": "openai"}, "anthropic")
        assert refused.status_code == 403, refused.text
        assert '"tenant"' in refused.json()["detail"] and "all-tenant admin key" in refused.json()["detail"]
        # ... nor for another tenant.
        other = {"kind": "provider", "provider": "openai", "tenant": "globex"}
        assert _failover(api, "acme_admin", other, "anthropic").status_code == 403

        # For its own tenant it may: acme's calls move, globex's do not.
        mine = _failover(
            api, "acme_admin", {"kind": "provider", "provider": "openai", "tenant": "acme"}, "anthropic"
        )
        assert mine.status_code == 202, mine.text
        for guard in (acme, globex):
            _sees(guard, "provider.manual:provider@acme/openai/*", mine.json()["command_id"])
        assert acme.provider("openai", tenant="acme") == "anthropic"
        assert globex.provider("openai", tenant="globex") == "openai"
        assert globex.provider("openai", "gpt-4o", tenant="globex") == "openai"
        # globex's keys do not see acme's command; acme's do.
        for role in ("globex_read", "globex_admin"):
            seen = api.call("GET", "/v1/control", role).json()
            assert [c for c in seen if c["scope"].get("tenant") == "acme"] == []
        acme_seen = api.call("GET", "/v1/control", "acme_read").json()
        assert mine.json()["command_id"] in [c["command_id"] for c in acme_seen]

        # An all-tenant key's global failover moves every tenant; acme keeps its own rule.
        glob = _failover(api, "admin", {"kind": "provider", "provider": "openai"}, "google")
        assert glob.status_code == 202, glob.text
        for guard in (acme, globex):
            _sees(guard, "provider.manual:provider/openai/*", glob.json()["command_id"])
        assert globex.provider("openai", tenant="globex") == "google"
        assert acme.provider("openai", tenant="acme") == "anthropic"
        assert [c["command_id"] for c in api.call("GET", "/v1/control", "globex_read").json()
                if c["scope"]["kind"] == "provider"] == [glob.json()["command_id"]]  # fmt: skip

        # The global resume (what the health worker sends when the circuit closes) has its own
        # key: acme's manual failover stays in force.
        resumed = _failover(api, "admin", {"kind": "provider", "provider": "openai"}, "", action="resume")
        assert resumed.status_code == 202, resumed.text
        for guard in (acme, globex):
            _sees(guard, "provider.manual:provider/openai/*", resumed.json()["command_id"])
        assert globex.provider("openai", tenant="globex") == "openai"
        assert acme.provider("openai", tenant="acme") == "anthropic"

        # acme ends its own failover.
        back = _failover(
            api, "acme_admin", {"kind": "provider", "provider": "openai", "tenant": "acme"}, "", "resume"
        )
        assert back.status_code == 202, back.text
        _sees(acme, "provider.manual:provider@acme/openai/*", back.json()["command_id"])
        assert acme.provider("openai", tenant="acme") == "openai"
    finally:
        acme.close()
        globex.close()


# -- 4. OTLP ---------------------------------------------------------------------------------


def _otlp_span(trace_id: str, span_id: str, tokens: int) -> dict[str, Any]:
    now = time.time_ns()
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "chat gpt-4o",
        "startTimeUnixNano": str(now - 1_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": str(tokens)}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "5"}},
        ],
    }


def test_otlp_spans_the_mapping_rejects_are_reported_in_partial_success(api: Api) -> None:
    good = _otlp_span("ab" * 16, "cd" * 8, 100)
    bad = _otlp_span("0" * 32, "ef" * 8, 200)  # an all-zero trace id: the contract refuses it
    capped = _otlp_span("ab" * 16, "12" * 8, 10**12)  # over the contract's token cap
    doc = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "otlp-partial"}}]
                },
                "scopeSpans": [{"spans": [good, bad, capped]}],
            }
        ]
    }
    response = api.call("POST", "/v1/traces", "acme_ingest", doc)
    assert response.status_code == 200, response.text
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 2
    assert "efefefefefefefef" in partial["errorMessage"] and "trace_id" in partial["errorMessage"]
    assert "1212121212121212" in partial["errorMessage"] and "input_tokens" in partial["errorMessage"]
    ids = event_ids(api.bootstrap, api.topic(specs.EVENTS))
    assert f"otel:{'ab' * 16}:{'cd' * 8}:u" in ids and not any("1212121212121212" in i for i in ids)


def test_otlp_json_nested_a_thousand_deep_is_a_400(api: Api) -> None:
    depth = 250  # 4 JSON levels each: 1,000 deep (orjson itself stops at 1,024)
    body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x","attributes":[{"key":"a","value":'
    body += b'{"kvlistValue":{"values":[{"key":"k","value":' * depth + b'{"stringValue":"leaf"}'
    body += b"}]}}" * depth + b"}]}]}]}]}"
    response = api.call("POST", "/v1/traces", "acme_ingest", body, **{"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    assert api.call("GET", "/v1/control", "acme_read").status_code == 200  # the server is fine


# -- 5/6. readiness, content types, empty batches, policies ----------------------------------


def test_readyz_says_ready_when_kafka_answers(api: Api) -> None:
    response = httpx.get(api.url + "/readyz", timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "ready"}


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("POST", "/v1/events", "text/plain"),
        ("POST", "/v1/events", None),
        ("POST", "/v1/control", "application/x-www-form-urlencoded"),  # curl -d without -H
        ("PUT", "/v1/policies/p1", "text/json"),
        ("POST", "/v1/traces", "application/xml"),
    ],
)
def test_one_content_type_rule_on_every_route(
    api: Api, method: str, path: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = api.call(method, path, "admin", b'{"events": []}', **headers)
    assert response.status_code == 415, response.text
    assert (
        response.json()["error"] == "unsupported_media_type"
        and "application/json" in response.json()["detail"]
    )


def test_a_batch_with_nothing_accepted_is_a_422_with_the_reasons(api: Api) -> None:
    events = padded(3, "all-bad", pad=4)
    events[0]["input_tokens"] = -1
    events[1]["trace_id"] = "nope"
    events[2]["ts"] = "yesterday"
    response = api.call("POST", "/v1/events", "acme_ingest", {"events": events})
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]["problems"]
    assert [p["loc"] for p in problems] == ["events.0", "events.1", "events.2"]
    assert "input_tokens" in problems[0]["msg"] and "trace_id" in problems[1]["msg"]


def test_tenant_keys_see_global_policies_but_do_not_change_them(api: Api) -> None:
    glob = {"policy_id": "all-tenants-daily", "window": "24h", "limit": "100"}
    assert api.call("PUT", "/v1/policies/all-tenants-daily", "admin", glob).status_code == 200
    listed = [p["policy_id"] for p in api.call("GET", "/v1/policies", "acme_read").json()]
    assert "all-tenants-daily" in listed
    assert api.call("GET", "/v1/policies/all-tenants-daily", "globex_read").status_code == 200
    assert api.call("DELETE", "/v1/policies/all-tenants-daily", "acme_admin").status_code == 403
    assert api.call("PUT", "/v1/policies/all-tenants-daily", "acme_admin", glob).status_code == 403


def test_deleting_a_policy_publishes_a_tombstone_and_an_unknown_one_is_404(api: Api) -> None:
    policy = {"policy_id": "to-delete", "selector": {"tenant": "acme"}, "window": "1h", "limit": "1"}
    assert api.call("PUT", "/v1/policies/to-delete", "acme_admin", policy).status_code == 200
    assert api.call("DELETE", "/v1/policies/to-delete", "acme_admin").status_code == 204
    assert api.call("DELETE", "/v1/policies/to-delete", "acme_admin").status_code == 404
    assert api.call("DELETE", "/v1/policies/never-was", "admin").status_code == 404
    mine = [(v is None) for k, v, _ in records(api.bootstrap, api.topic(specs.POLICIES)) if k == "to-delete"]
    assert mine == [False, True]  # the policy, then its tombstone (the worker drops its budgets)


def test_record_value_limit_reads_the_topic_and_the_broker(kafka_bootstrap: str, topics: Any) -> None:
    from agentledger.admin import KAFKA_DEFAULT_MAX_MESSAGE_BYTES

    before = asyncio.run(record_value_limit(kafka_bootstrap, topics.events))
    assert before == KAFKA_DEFAULT_MAX_MESSAGE_BYTES - RECORD_OVERHEAD_BYTES
    asyncio.run(_set_topic_limit(kafka_bootstrap, topics.events, 300_000))  # waits for 300,000
    # No such topic yet: the broker's message.max.bytes (the launcher keeps Kafka's default).
    missing = asyncio.run(record_value_limit(kafka_bootstrap, topics.prefix + "not.yet"))
    assert missing == KAFKA_DEFAULT_MAX_MESSAGE_BYTES - RECORD_OVERHEAD_BYTES


# -- a broker of our own: paused, then stopped (these two run last, in this order) -----------


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    from agentledger.localkafka import LocalKafka

    local = LocalKafka(tmp_path_factory.mktemp("own-kafka"))
    state = local.up(nodes=1, timeout=120)
    try:
        yield local, state.bootstrap
    finally:
        local.down()


def test_writes_answered_503_while_the_broker_hangs_are_safe_to_retry_by_id(
    own_broker: tuple[Any, str], tmp_path: Path
) -> None:
    import signal

    local, bootstrap = own_broker
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(bootstrap, prefix=prefix))
    keys = standard_keys(tmp_path / "keys.sqlite")
    settings = ApiSettings(keys_path=tmp_path / "keys.sqlite", produce_timeout_s=2.0)
    server = ApiServer(
        create_app(Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, home=tmp_path), settings)
    )
    api = Api(server.start(), keys, bootstrap, prefix)
    command = {
        "command_id": "ops-kill-hang-01",
        "scope": {"kind": "agent", "tenant": "acme", "agent": "hung"},
        "action": "kill",
        "reason": "test",
    }
    policy = {"policy_id": "hang-daily", "selector": {"tenant": "acme"}, "window": "24h", "limit": "5"}
    events = padded(10, "hung", seed=60, pad=40)
    try:
        local.signal_node(1, signal.SIGSTOP)
        try:
            answers = [
                api.call("POST", "/v1/control", "acme_admin", command),
                api.call("PUT", "/v1/policies/hang-daily", "acme_admin", policy),
                api.call("POST", "/v1/events", "acme_ingest", {"events": events}),
            ]
        finally:
            local.signal_node(1, signal.SIGCONT)
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert "same id" in answer.text or "same event ids" in answer.text
        assert answers[2].json()["detail"]["unknown"] == [[0, 9]]
        # The broker is back: what was answered 503 lands (the outcome was unknown, not "no").
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = [c["command_id"] for c in api.call("GET", "/v1/control", "acme_read").json()]
            if "ops-kill-hang-01" in seen:
                break
            time.sleep(0.2)
        assert "ops-kill-hang-01" in seen
        # Retrying with the same ids is safe: one command, one policy, events once after dedupe.
        retried = api.call("POST", "/v1/control", "acme_admin", command)
        assert retried.status_code == 202 and retried.json()["command_id"] == "ops-kill-hang-01"
        assert api.call("PUT", "/v1/policies/hang-daily", "acme_admin", policy).status_code == 200
        assert api.call("POST", "/v1/events", "acme_ingest", {"events": events}).status_code == 202
        control = [v for _, v, _ in records(bootstrap, api.topic(specs.CONTROL)) if v is not None]
        assert [ControlCommand.model_validate_json(v).command_id for v in control] == ["ops-kill-hang-01"]
        assert [p["policy_id"] for p in api.call("GET", "/v1/policies", "acme_read").json()] == ["hang-daily"]
        assert set(event_ids(bootstrap, api.topic(specs.EVENTS))) == {e["event_id"] for e in events}
    finally:
        server.stop()


def test_readyz_names_kafka_when_it_is_down(own_broker: tuple[Any, str], tmp_path: Path) -> None:
    local, bootstrap = own_broker
    server, api = _serve(bootstrap, tmp_path)
    try:
        assert httpx.get(api.url + "/readyz", timeout=10).status_code == 200
        local.down()
        response = httpx.get(api.url + "/readyz", timeout=30)
        assert response.status_code == 503, response.text
        assert response.json()["status"] == "unavailable" and "kafka" in response.json()["down"]
        assert httpx.get(api.url + "/healthz", timeout=10).status_code == 200  # the process lives
    finally:
        server.stop()


def test_a_post_without_a_body_needs_no_content_type_and_a_route_needing_one_says_so(api: Api) -> None:
    response = api.call("POST", "/v1/control", "admin")  # no body, no Content-Type
    assert response.status_code == 422, response.text  # the route wants a body: it says so, not 415
