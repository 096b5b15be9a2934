"""Tenant isolation and scope checks for every route, on a running API with a real broker
and a real Parquet warehouse (written with the warehouse's own landing code)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agentledger.admin import create_topics
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, land_demo_warehouse, standard_keys
from agentledger.events import BudgetState, BudgetStatus, ControlCommand, LimitUnit, Policy, Window
from agentledger.settings import Settings
from agentledger.warehouse.reader import WarehouseReader
from agentledger.warehouse.synthetic import priced_events
from agentledger.wire import dump


@dataclass
class Running:
    url: str
    keys: dict[str, str]
    bootstrap: str
    prefix: str
    traces: dict[str, str]  # tenant -> one of its trace ids

    def call(self, method: str, path: str, role: str | None, **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", {})
        if role:
            headers["authorization"] = f"Bearer {self.keys[role]}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)


def _budget(scope_key: str) -> BudgetStatus:
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    return BudgetStatus(policy_id="daily", scope_key=scope_key, window=Window.DAY, window_start=now,
                        spend=Decimal("8"), limit=Decimal("10"), unit=LimitUnit.USD, state=BudgetState.WARN,
                        updated_at=now, projected_exhaustion=now)  # fmt: skip


async def _produce_budgets(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for scope_key in ("agent/acme/planner", "agent/globex/planner", "provider/openai/*"):
            await producer.send_and_wait(topic, dump(_budget(scope_key)), key=f"daily|{scope_key}".encode())
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("api")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    asyncio.run(_produce_budgets(kafka_bootstrap, prefix + "agentledger.budgets.v1"))
    land_demo_warehouse(str(home / "wh"), n_traces=120, seed=5)  # events, plus acme's alerts and commands
    traces = {e.event.tenant: e.event.trace_id for e in priced_events(120, seed=5)}
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
        warehouse=WarehouseReader(str(home / "wh")),
    )
    with ApiServer(app) as url:
        yield Running(url, keys, kafka_bootstrap, prefix, traces)


READS = ["/v1/costs?group_by=tenant", "/v1/top-traces", "/v1/agents", "/v1/alerts", "/v1/commands", "/v1/providers",
         "/v1/quality?agent=planner&metric=faithfulness", "/v1/budgets", "/v1/policies", "/v1/control"]  # fmt: skip


@pytest.mark.parametrize("path", READS)
def test_reads_need_a_key_and_the_read_scope(api: Running, path: str) -> None:
    assert api.call("GET", path, None).status_code == 401
    assert api.call("GET", path, "acme_ingest").status_code == 403
    assert api.call("GET", path, "acme_read").status_code == 200


@pytest.mark.parametrize("path", READS[:8])
def test_a_tenant_key_reads_only_its_tenant(api: Running, path: str) -> None:
    sep = "&" if "?" in path else "?"
    assert api.call("GET", f"{path}{sep}tenant=globex", "acme_read").status_code == 403
    for role, tenant in (("acme_read", "acme"), ("globex_read", "globex")):
        rows = api.call("GET", path, role).json()
        for row in rows:
            assert row.get("tenant", tenant) == tenant
            assert tenant in row.get("scope_key", tenant)
    everything = api.call("GET", path, "admin").json()
    assert len(everything) >= len(api.call("GET", path, "acme_read").json())


@pytest.mark.parametrize("path", ["/v1/alerts", "/v1/commands"])
def test_history_of_one_tenant_is_invisible_to_another(api: Running, path: str) -> None:
    acme = api.call("GET", path, "acme_read").json()
    assert acme and {r["tenant"] for r in acme} == {"acme"}
    assert api.call("GET", path, "globex_read").json() == []


def test_costs_per_tenant_add_up_to_the_whole(api: Running) -> None:
    total = {
        r["tenant"]: Decimal(r["cost_usd"])
        for r in api.call("GET", "/v1/costs?group_by=tenant", "admin").json()
    }
    for tenant in ("acme", "globex"):
        (row,) = api.call("GET", "/v1/costs?group_by=tenant", f"{tenant}_read").json()
        assert Decimal(row["cost_usd"]) == total[tenant] > 0


def test_budgets_live_view_is_filtered_by_tenant(api: Running) -> None:
    deadline = time.monotonic() + 20
    while len(api.call("GET", "/v1/budgets", "admin").json()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {b["scope_key"] for b in api.call("GET", "/v1/budgets", "acme_read").json()} == {
        "agent/acme/planner"
    }
    assert len(api.call("GET", "/v1/budgets", "admin").json()) == 3


def test_a_trace_of_another_tenant_is_not_found(api: Running) -> None:
    acme_trace = api.traces["acme"]
    spans = api.call("GET", f"/v1/traces/{acme_trace}", "acme_read").json()
    assert spans and all(Decimal(s["inclusive_cost_usd"]) >= Decimal(s["direct_cost_usd"]) for s in spans)
    assert api.call("GET", f"/v1/traces/{acme_trace}", "globex_read").status_code == 404
    assert api.call("GET", f"/v1/traces/{acme_trace}", "admin").status_code == 200
    assert api.call("GET", f"/v1/traces/{acme_trace}", "acme_ingest").status_code == 403
    assert api.call("GET", f"/v1/traces/{acme_trace}", None).status_code == 401


def _policy(pid: str, tenant: str) -> dict[str, Any]:
    return {
        "policy_id": pid,
        "selector": {"tenant": tenant},
        "window": "24h",
        "limit": "25",
        "hard_action": "kill",
    }


def test_policies_are_written_to_the_topic_and_isolated(api: Running) -> None:
    pid = f"p-{uuid.uuid4().hex[:6]}"
    assert api.call("PUT", f"/v1/policies/{pid}", "acme_read", json=_policy(pid, "acme")).status_code == 403
    assert (
        api.call("PUT", f"/v1/policies/{pid}", "acme_admin", json=_policy(pid, "globex")).status_code == 403
    )
    assert api.call("PUT", f"/v1/policies/{pid}", "acme_admin", json=_policy(pid, "*")).status_code == 403
    assert (
        api.call("PUT", f"/v1/policies/{pid}", "acme_admin", json=_policy("other", "acme")).status_code == 422
    )
    created = api.call("PUT", f"/v1/policies/{pid}", "acme_admin", json=_policy(pid, "acme"))
    assert created.status_code == 200 and created.json()["limit"] == "25"
    assert api.call("GET", f"/v1/policies/{pid}", "acme_read").json()["policy_id"] == pid
    assert api.call("GET", f"/v1/policies/{pid}", "globex_read").status_code == 404
    assert pid not in {p["policy_id"] for p in api.call("GET", "/v1/policies", "globex_read").json()}
    assert (
        api.call("PUT", f"/v1/policies/{pid}", "globex_admin", json=_policy(pid, "globex")).status_code == 403
    )
    assert api.call("DELETE", f"/v1/policies/{pid}", "globex_admin").status_code == 404
    assert api.call("DELETE", f"/v1/policies/{pid}", "acme_read").status_code == 403
    assert api.call("DELETE", f"/v1/policies/{pid}", None).status_code == 401
    assert api.call("PUT", f"/v1/policies/{pid}", "acme_ingest", json=_policy(pid, "acme")).status_code == 403
    updated = {**_policy(pid, "acme"), "limit": "30"}
    assert api.call("PUT", f"/v1/policies/{pid}", "acme_admin", json=updated).status_code == 200
    assert api.call("DELETE", f"/v1/policies/{pid}", "acme_admin").status_code == 204
    assert api.call("GET", f"/v1/policies/{pid}", "acme_read").status_code == 404
    records = _read_topic(api.bootstrap, api.prefix + "agentledger.policies.v1", pid, 3)
    assert [r and Policy.model_validate_json(r).limit for r in records] == [Decimal(25), Decimal(30), None]


def _read_topic(bootstrap: str, topic: str, key: str, want: int) -> list[bytes | None]:
    async def run() -> list[bytes | None]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        out: list[bytes | None] = []
        try:
            async with asyncio.timeout(20):
                while len(out) < want:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        out += [r.value for r in records if r.key == key.encode()]
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


def test_control_records_who_and_refuses_other_tenants(api: Running) -> None:
    kill = {
        "scope": {"kind": "agent", "tenant": "acme", "agent": "ctl"},
        "action": "kill",
        "reason": "runaway",
    }
    assert api.call("POST", "/v1/control", None, json=kill).status_code == 401
    assert api.call("POST", "/v1/control", "acme_read", json=kill).status_code == 403
    assert api.call("POST", "/v1/control", "acme_ingest", json=kill).status_code == 403
    foreign = {**kill, "scope": {"kind": "agent", "tenant": "globex", "agent": "ctl"}}
    assert api.call("POST", "/v1/control", "acme_admin", json=foreign).status_code == 403
    provider = {**kill, "action": "failover", "scope": {"kind": "provider", "provider": "openai"},
                "params": {"fallback_provider": "anthropic"}}  # fmt: skip
    assert api.call("POST", "/v1/control", "acme_admin", json=provider).status_code == 403
    assert (
        api.call("POST", "/v1/control", "acme_admin", json={**kill, "action": "throttle"}).status_code == 422
    )
    response = api.call("POST", "/v1/control", "acme_admin", json=kill)
    assert response.status_code == 202
    command = ControlCommand.model_validate(response.json())
    assert command.issued_by.startswith("key:acme_admin:") and command.scope.key == "agent/acme/ctl"
    (raw,) = _read_topic(
        api.bootstrap, api.prefix + "agentledger.control.v1", "admission.manual:agent/acme/ctl", 1
    )
    assert raw is not None and ControlCommand.model_validate_json(raw) == command
    listed = api.call("GET", "/v1/control", "acme_read").json()
    assert {
        (c["control_key"], c["lane"], c["authority"]) for c in listed if c["command_id"] == command.command_id
    } == {("admission.manual:agent/acme/ctl", "admission", "manual")}
    extra = ("control_key", "authority", "lane")  # what the listing adds to each command
    live = [ControlCommand.model_validate({k: v for k, v in c.items() if k not in extra}) for c in listed]
    assert command in live and all(c.scope.tenant == "acme" for c in live)
    assert api.call("GET", "/v1/control", "globex_read").json() == []
    assert api.call("POST", "/v1/control", "admin", json=provider).status_code == 202


def test_a_manual_downgrade_is_keyed_apart_from_the_kill(api: Running) -> None:
    scope = {"kind": "agent", "tenant": "acme", "agent": "dg"}
    kill = {"scope": scope, "action": "kill", "reason": "stop"}
    down = {"scope": scope, "action": "downgrade", "reason": "cheaper", "params": {"model": "gpt-4o-mini"}}
    assert api.call("POST", "/v1/control", "acme_admin", json=kill).status_code == 202
    assert api.call("POST", "/v1/control", "acme_admin", json=down).status_code == 202
    (raw,) = _read_topic(
        api.bootstrap, api.prefix + "agentledger.control.v1", "downgrade.manual:agent/acme/dg", 1
    )
    assert raw is not None and ControlCommand.model_validate_json(raw).params.model == "gpt-4o-mini"
    live = api.call("GET", "/v1/control", "acme_read").json()
    assert sorted(c["action"] for c in live if c["scope"]["agent"] == "dg") == ["downgrade", "kill"]


def test_otlp_and_pages_refuse_other_tenants(api: Running) -> None:
    headers = {"content-type": "application/json", "x-agentledger-tenant": "globex"}
    response = api.call("POST", "/v1/traces", "acme_ingest", content=b'{"resourceSpans":[]}', headers=headers)
    assert response.status_code == 403
    assert api.call("POST", "/v1/traces", "acme_read", content=b"{}", headers=headers).status_code == 403
    for page in ("overview", "agent", "trace", "providers", "timeline"):
        assert api.call("GET", f"/ui/{page}", None).status_code == 401
        assert api.call("GET", f"/ui/{page}?tenant=globex", "acme_read").status_code == 403
        assert api.call("GET", f"/ui/{page}", "acme_read").status_code == 200
