"""Re-pricing from raw tokens with overrides, next to the recorded cost; raw files untouched."""

from __future__ import annotations

import hashlib
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest

from agentledger.errors import ConfigError
from agentledger.pricing import PriceBook
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.repricing import reprice
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import priced_events

OVERRIDES = """
models:
  - {provider: openai, model: gpt-4o, input_mtok: 2.00, output_mtok: 8.00, cache_read_mtok: 1.00, name: negotiated}
  - {provider: openai, model: mystery-1, input_mtok: 0.10, output_mtok: 0.20, name: selfhosted}
"""


def _cost(u, rates):  # type: ignore[no-untyped-def]
    inp, out, cached = rates
    raw = (Decimal(u.input_tokens - u.cache_read_tokens) * inp + Decimal(u.cache_read_tokens) * cached
           + Decimal(u.output_tokens) * out) / Decimal(1_000_000)  # fmt: skip
    return raw.quantize(Decimal("1e-12"), rounding=ROUND_HALF_EVEN)


def test_reprice_with_overrides_side_by_side(tmp_path: Path) -> None:
    events = priced_events(150, seed=5)
    store = Store(str(tmp_path / "wh"))
    paths = land_priced(store, events, "p0-0-1")
    land_priced(store, events[:50], "p0-replay")  # duplicates are not priced twice
    digest = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}
    overrides = tmp_path / "prices.yaml"
    overrides.write_text(OVERRIDES)
    rows = reprice(Catalog(store), PriceBook.load(overrides), group_by=["model"])
    by_model = {r["model"]: r for r in rows}
    usage = [e for e in events if e.event.type == "usage"]
    known = [e for e in usage if e.event.model == "gpt-4o"]
    mystery = [e for e in usage if e.event.model == "mystery-1"]
    assert known and mystery
    g = by_model["gpt-4o"]
    assert g["calls"] == len(known)
    assert g["recorded_cost_usd"] == sum(e.cost_usd for e in known)
    rates = (Decimal(2), Decimal(8), Decimal(1))
    assert g["repriced_cost_usd"] == sum(_cost(e.event, rates) for e in known)
    assert g["difference_usd"] == g["repriced_cost_usd"] - g["recorded_cost_usd"]
    m = by_model["mystery-1"]
    assert (m["recorded_cost_usd"], m["newly_priced"]) == (0, len(mystery))
    assert m["repriced_cost_usd"] == sum(
        _cost(e.event, (Decimal("0.1"), Decimal("0.2"), Decimal("0.1"))) for e in mystery
    )
    assert {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths} == digest  # untouched
    acme = reprice(Catalog(store), PriceBook.load(overrides), group_by=["tenant"], tenant="acme")
    assert [r["tenant"] for r in acme] == ["acme"]
    with pytest.raises(ConfigError):
        reprice(Catalog(store), PriceBook.load(overrides), group_by=["event_id"])


def test_reprice_with_the_bundled_snapshot_knows_gpt_4o(tmp_path: Path) -> None:
    events = priced_events(40, seed=8)
    store = Store(str(tmp_path))
    land_priced(store, events, "p0")
    rows = reprice(Catalog(store), PriceBook.load(), group_by=["model"])
    snap = {r["model"]: r for r in rows}
    assert snap["gpt-4o"]["repriced_cost_usd"] > 0 and snap["gpt-4o"]["newly_unpriced"] == 0
    assert snap["mystery-1"]["repriced_cost_usd"] == 0  # still unknown: never a made-up price
