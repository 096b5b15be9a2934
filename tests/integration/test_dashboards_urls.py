"""The view in a page's URL on a running API: filters narrow what is listed, a tenant key
cannot widen its view, an all-tenant key picks a tenant from the form, bad values are a 400/422
with a message, and inline scripts keep the response's nonce."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from agentledger.admin import create_topics
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, land_demo_warehouse, standard_keys
from agentledger.settings import Settings
from agentledger.warehouse import queries
from agentledger.warehouse.reader import WarehouseReader

pytestmark = pytest.mark.integration


@dataclass
class Running:
    url: str
    keys: dict[str, str]
    warehouse: str

    def page(self, role: str, path: str, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[role]}", "Accept": "text/html"}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("urls")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    land_demo_warehouse(str(home / "wh"))
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
        warehouse=WarehouseReader(str(home / "wh")),
    )
    with ApiServer(app) as url:
        yield Running(url, keys, str(home / "wh"))


def listed(body: str) -> list[str]:
    return re.findall(r'href="/ui/trace\?[^"]*trace_id=([0-9a-f]{32})', body)


def test_filters_in_the_url_narrow_the_traces_listed(api: Running) -> None:
    reader = WarehouseReader(api.warehouse)
    every = api.page("acme_read", "/ui/traces")
    assert every.status_code == 200
    assert listed(every.text) == [
        r["trace_id"] for r in reader.rows(queries.traces, tenant="acme", limit=200)
    ]
    coder = api.page("acme_read", "/ui/traces", agent="coder", sort="duration")
    expected = reader.rows(queries.traces, tenant="acme", agent="coder", sort="duration", limit=200)
    assert listed(coder.text) == [r["trace_id"] for r in expected] and 0 < len(expected) < len(
        listed(every.text)
    )
    assert 'href="/ui/overview?agent=coder"' in coder.text  # the nav keeps the filter


def test_a_tenant_key_cannot_widen_its_view_and_an_admin_picks_a_tenant(api: Running) -> None:
    assert api.page("acme_read", "/ui/traces", tenant="globex").status_code == 403
    admin = api.page("admin", "/ui/traces", tenant="globex")
    assert admin.status_code == 200
    assert '<option value="globex" selected>globex</option>' in admin.text
    assert '<option value="acme">acme</option>' in admin.text  # the other tenant stays offered
    reader = WarehouseReader(api.warehouse)
    assert listed(admin.text) == [
        r["trace_id"] for r in reader.rows(queries.traces, tenant="globex", limit=200)
    ]
    assert 'name="tenant"' not in api.page("acme_read", "/ui/traces").text  # nothing to pick


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"range": "forever"}, 422, "range"),
        ({"range": "custom", "start": "yesterday"}, 400, "start must be a date and time"),
        ({"range": "custom", "start": "2026-11-21T00:00:00", "end": "2026-11-20T00:00:00"}, 400, "before"),
        ({"min_cost": "lots"}, 400, "min_cost must be a number"),
        ({"sort": "vibes"}, 422, "sort"),
    ],
)
def test_bad_view_values_are_refused_with_a_message(
    api: Running, params: dict[str, str], status: int, message: str
) -> None:
    response = api.page("acme_read", "/ui/traces", **params)
    assert response.status_code == status and message in response.text


def test_every_inline_script_carries_the_pages_nonce(api: Running) -> None:
    for path in ("/ui/overview", "/ui/trace", "/ui/traces", "/ui/timeline"):
        page = api.page(
            "acme_read", path, range="custom", start="2026-11-20T22:00:00", end="2026-11-21T22:00:00"
        )
        nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"])
        assert page.status_code == 200 and nonce is not None
        scripts = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", page.text)
        assert all(f'nonce="{nonce.group(1)}"' in attrs for attrs in scripts), path
