"""The rollouts API on a running server with a real broker: a tenant admin starts a rollout,
sees it pending until the controller announces it, and pauses, resumes, promotes or aborts it;
each request lands on the rollouts topic with who asked; other tenants see and touch nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from agentledger import topics
from agentledger.admin import create_topics
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.rollout import RolloutPolicy, RolloutRequest
from agentledger.settings import Settings
from agentledger.warehouse.reader import WarehouseReader


class Api:
    def __init__(self, url: str, keys: dict[str, str], bootstrap: str, prefix: str) -> None:
        self.url, self.keys, self.bootstrap, self.prefix = url, keys, bootstrap, prefix

    def call(self, method: str, path: str, role: str | None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("api")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
        warehouse=WarehouseReader(str(home / "wh")),
    )
    with ApiServer(app) as url:
        yield Api(url, keys, kafka_bootstrap, prefix)


def _on_topic(api: Api, key: str, want: int) -> list[RolloutPolicy]:
    async def run() -> list[RolloutPolicy]:
        consumer = AIOKafkaConsumer(api.prefix + topics.ROLLOUTS.name, bootstrap_servers=api.bootstrap,
                                    auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        out: list[RolloutPolicy] = []
        try:
            async with asyncio.timeout(20):
                while len(out) < want:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        out += [RolloutPolicy.model_validate_json(r.value) for r in records
                                if r.key == key.encode() and r.value]  # fmt: skip
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


BODY = {"rollout_id": "writer-v2", "tenant": "acme", "agent": "writer", "baseline": "v1", "candidate": "v2"}


def test_a_tenant_admin_starts_and_steers_a_rollout_and_others_cannot(api: Api) -> None:
    assert api.call("PUT", "/v1/rollouts/acme/writer", None, json=BODY).status_code == 401
    assert api.call("PUT", "/v1/rollouts/acme/writer", "acme_read", json=BODY).status_code == 403
    assert api.call("PUT", "/v1/rollouts/acme/writer", "globex_admin", json=BODY).status_code == 403
    bad = {**BODY, "steps": [{"weight_pct": 5}, {"weight_pct": 50}]}
    refused = api.call("PUT", "/v1/rollouts/acme/writer", "acme_admin", json=bad)
    assert refused.status_code == 422 and "100" in refused.text
    started = api.call("PUT", "/v1/rollouts/acme/writer", "acme_admin", json=BODY)
    assert started.status_code == 200, started.text
    view = started.json()
    assert view["status"] == "pending" and [s["weight_pct"] for s in view["policy"]["steps"]] == [
        5,
        25,
        50,
        100,
    ]
    assert [r["policy"]["rollout_id"] for r in api.call("GET", "/v1/rollouts", "acme_read").json()] == [
        "writer-v2"
    ]
    assert api.call("GET", "/v1/rollouts", "globex_read").json() == []
    assert api.call("GET", "/v1/rollouts/acme/writer", "globex_read").status_code == 404
    assert api.call("POST", "/v1/rollouts/acme/writer/pause", "globex_admin").status_code == 403
    assert api.call("POST", "/v1/rollouts/acme/writer/pause", "acme_read").status_code == 403
    paused = api.call("POST", "/v1/rollouts/acme/writer/pause", "acme_admin")
    assert paused.status_code == 202
    assert api.call("POST", "/v1/rollouts/acme/writer/rewind", "acme_admin").status_code == 422
    assert api.call("POST", "/v1/rollouts/acme/nobody/abort", "acme_admin").status_code == 404
    records = _on_topic(api, "acme/writer", 2)
    assert records[0].request is RolloutRequest.RUN and records[0].created is not None
    assert records[1].request is RolloutRequest.PAUSE and records[1].request_id
    assert (records[1].requested_by or "").startswith("key:acme_admin:")
    assert api.call("DELETE", "/v1/rollouts/acme/writer", "acme_admin").status_code == 204
    assert api.call("GET", "/v1/rollouts/acme/writer", "acme_read").status_code == 404
