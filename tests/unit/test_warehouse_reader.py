"""The reader the API and the dashboards use: typed named-query calls, JSON-ready rows, and a
page's queries always under its view's tenant."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agentledger.dashboards.pagedata import Sources
from agentledger.warehouse import queries
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.reader import WarehouseReader
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import priced_events

EVENTS = priced_events(80, seed=9)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = Store(str(tmp_path_factory.mktemp("wh")))
    land_priced(store, EVENTS, "p0-a")
    return store.root


def test_rows_are_the_querys_rows_with_exact_money_and_iso_times(root: str) -> None:
    raw = queries.agents(Catalog(root), tenant="acme")
    rows = WarehouseReader(root).rows(queries.agents, tenant="acme")
    assert [r["agent"] for r in rows] == [r["agent"] for r in raw] and rows
    for got, want in zip(rows, raw, strict=True):
        assert isinstance(got["cost_usd"], str) and Decimal(got["cost_usd"]) == want["cost_usd"]
        assert got["first_ts"] == want["first_ts"].isoformat()
        assert got["versions"] == want["versions"]
    spent = sum((e.cost_usd for e in EVENTS if e.event.tenant == "acme"), Decimal(0))
    assert sum(Decimal(r["cost_usd"]) for r in rows) == spent


def test_an_error_that_is_not_missing_data_is_not_hidden(root: str) -> None:
    class Broken:
        def query(self, sql: str, params: object = None) -> list[dict[str, object]]:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        WarehouseReader(root, catalog=Broken()).rows(queries.agents)  # type: ignore[arg-type]


def test_a_page_reads_only_its_views_tenant(root: str) -> None:
    acme = Sources(WarehouseReader(root), "acme")
    globex = Sources(WarehouseReader(root), "globex")
    assert {r["tenant"] for r in acme.rows(queries.traces, limit=500)} == {"acme"}
    assert {r["tenant"] for r in globex.rows(queries.traces, limit=500)} == {"globex"}
    with pytest.raises(TypeError, match="sets the tenant itself"):
        globex.rows(queries.traces, tenant="acme")  # type: ignore[call-arg]
