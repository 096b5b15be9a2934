"""The SLO routes on a running API with a real broker and a real Parquet warehouse: attainment
per agent and day and latency percentiles, tenant-filtered; an objective checked as the health
worker will read it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentledger.admin import create_topics
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, land_demo_warehouse, standard_keys
from agentledger.settings import Settings
from agentledger.warehouse import queries as q
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.reader import WarehouseReader
from agentledger.warehouse.storage import Store


class Api:
    def __init__(self, url: str, keys: dict[str, str], root: str, bootstrap: str, prefix: str) -> None:
        self.url, self.keys, self.root = url, keys, root
        self.bootstrap, self.prefix = bootstrap, prefix

    def call(self, method: str, path: str, role: str | None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("api-slo")
    prefix = f"s{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    root = str(home / "wh")
    land_demo_warehouse(root, n_traces=120, seed=5)
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
        warehouse=WarehouseReader(root),
    )
    with ApiServer(app) as url:
        yield Api(url, keys, root, kafka_bootstrap, prefix)


@pytest.mark.parametrize("path", ["/v1/slo/attainment?target=0.95&threshold_ms=800", "/v1/providers/latency"])
def test_slo_reads_need_the_read_scope_and_see_one_tenant(api: Api, path: str) -> None:
    assert api.call("GET", path, None).status_code == 401
    assert api.call("GET", path, "acme_ingest").status_code == 403
    assert (
        api.call(
            "GET", path + "&tenant=globex" if "?" in path else path + "?tenant=globex", "acme_read"
        ).status_code
        == 403
    )
    everything = api.call("GET", path, "admin").json()
    acme = api.call("GET", path, "acme_read").json()
    assert acme and everything and sum(r["calls"] for r in acme) < sum(r["calls"] for r in everything)
    assert all(r.get("tenant", "acme") == "acme" for r in acme)


def test_attainment_route_is_the_named_query(api: Api) -> None:
    rows = api.call("GET", "/v1/slo/attainment?target=0.95&threshold_ms=800", "acme_read").json()
    truth = q.slo_attainment(Catalog(Store(api.root)), target=0.95, threshold_ms=800, tenant="acme")
    assert [(r["agent"], r["calls"], r["good"]) for r in rows] == [
        (r["agent"], r["calls"], r["good"]) for r in truth
    ]
    assert all(abs(r["budget_left"] - t["budget_left"]) < 1e-9 for r, t in zip(rows, truth, strict=True))
    bad = api.call("GET", "/v1/slo/attainment?target=1.5", "acme_read")
    assert bad.status_code == 422 and "target" in bad.text


def test_an_objective_is_checked_as_the_worker_reads_it(api: Api) -> None:
    body = {"objective_id": "planner-p95", "kind": "latency", "target": 0.95, "threshold_ms": 4000,
            "selector": {"tenant": "acme", "agent": "planner"}}  # fmt: skip
    ok = api.call("POST", "/v1/objectives/check", "acme_admin", json=body)
    assert ok.status_code == 200, ok.text
    assert [r["name"] for r in ok.json()["alerts"]] == ["page", "ticket"] and ok.json()["window_days"] == 28
    no_threshold = api.call("POST", "/v1/objectives/check", "acme_admin", json={**body, "threshold_ms": None})
    assert no_threshold.status_code == 422 and "threshold_ms" in no_threshold.text
    unreachable = api.call("POST", "/v1/objectives/check", "acme_admin", json={**body, "target": 0.9})
    assert unreachable.status_code == 422 and "can never be reached" in unreachable.text
    every = {**body, "selector": {"tenant": "*"}}
    assert api.call("POST", "/v1/objectives/check", "acme_admin", json=every).status_code == 403
    assert api.call("POST", "/v1/objectives/check", "acme_read", json=body).status_code == 403
    assert api.call("POST", "/v1/objectives/check", "admin", json=every).status_code == 200


def test_objectives_put_get_list_delete_are_tenant_scoped_and_land_on_the_topic(api: Api) -> None:
    from agentledger.streams.objectivetopic import read_objectives

    body = {"objective_id": "acme-avail", "kind": "availability", "target": 0.99,
            "selector": {"tenant": "acme", "agent": "planner"}}  # fmt: skip
    assert api.call("PUT", "/v1/objectives/acme-avail", "acme_read", json=body).status_code == 403
    assert api.call("PUT", "/v1/objectives/other-id", "acme_admin", json=body).status_code == 422
    put = api.call("PUT", "/v1/objectives/acme-avail", "acme_admin", json=body)
    assert put.status_code == 200, put.text
    assert put.json()["window_days"] == 28  # as the health worker reads it
    # a tenant key may not write another tenant's objective, nor one for every tenant
    globex = {**body, "objective_id": "g", "selector": {"tenant": "globex"}}
    assert api.call("PUT", "/v1/objectives/g", "acme_admin", json=globex).status_code == 403
    every = {**body, "objective_id": "every", "selector": {"tenant": "*"}}
    assert api.call("PUT", "/v1/objectives/every", "acme_admin", json=every).status_code == 403
    assert api.call("PUT", "/v1/objectives/every", "admin", json=every).status_code == 200
    assert api.call("PUT", "/v1/objectives/g", "admin", json=globex).status_code == 200
    # acme sees its own and the global one, not globex's
    assert [o["objective_id"] for o in api.call("GET", "/v1/objectives", "acme_read").json()] == [
        "acme-avail",
        "every",
    ]
    assert api.call("GET", "/v1/objectives/g", "acme_read").status_code == 404
    assert api.call("GET", "/v1/objectives/acme-avail", "acme_read").json()["target"] == 0.99
    assert api.call("DELETE", "/v1/objectives/every", "acme_admin").status_code == 403
    assert api.call("DELETE", "/v1/objectives/acme-avail", "acme_admin").status_code == 204
    assert api.call("DELETE", "/v1/objectives/acme-avail", "acme_admin").status_code == 404
    # what the health worker reads: the topic, latest value per key, the deleted one gone
    app_state = api.call("GET", "/v1/objectives", "admin").json()
    assert [o["objective_id"] for o in app_state] == ["every", "g"]
    on_topic = asyncio.run(read_objectives(api.bootstrap, api.prefix))
    assert sorted(on_topic) == ["every", "g"] and on_topic["g"].selector.tenant == "globex"
