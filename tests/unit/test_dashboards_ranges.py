"""Issue #19: time buckets follow the span shown, and budget burn shows the scopes nearest
their limit first, never a flood of per-trace rows; long names do not push labels off."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentledger.dashboards import figures, pagedata
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.reader import WarehouseReader
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import priced_events

T0 = datetime(2026, 11, 20, 22, 0, 5, tzinfo=UTC)


def test_bucket_follows_the_span() -> None:
    at = T0.isoformat()
    assert figures.bucket_for(at, (T0 + timedelta(seconds=100)).isoformat()) == "second"
    assert figures.bucket_for(T0, T0 + timedelta(minutes=40)) == "minute"
    assert figures.bucket_for(T0, T0 + timedelta(hours=48)) == "hour"
    assert figures.bucket_for(T0, T0 + timedelta(days=90)) == "day"
    assert figures.bucket_for(T0, T0 + timedelta(days=400)) == "week"
    assert figures.bucket_for(None, T0) == "hour"


def test_a_100_second_run_is_drawn_in_seconds(tmp_path: Path) -> None:
    # like the demo's short run: a few dozen traces inside 100 seconds
    land_priced(Store(str(tmp_path)), priced_events(40, seed=2, t0=T0, hours=100 / 3600), "run")
    src = pagedata.Sources(WarehouseReader(str(tmp_path)))
    spend = pagedata.overview(src).figures[0]
    xs = {x for bar in spend.data for x in bar.x}
    assert len(xs) >= 20 and "per second" in spend.layout.title.text
    assert max(xs) - min(xs) <= timedelta(seconds=100)
    agent = pagedata.agent(src).figures[0]
    assert len(agent.data[0].x) >= 5 and "per second" in agent.layout.title.text


def test_a_two_day_warehouse_stays_hourly(tmp_path: Path) -> None:
    land_priced(Store(str(tmp_path)), priced_events(60, seed=2, t0=T0, hours=48), "run")
    spend = pagedata.overview(pagedata.Sources(WarehouseReader(str(tmp_path)))).figures[0]
    assert "per hour" in spend.layout.title.text
    assert all((x.minute, x.second) == (0, 0) for bar in spend.data for x in bar.x)


def _status(scope: str, spend: float, policy: str = "per-trace") -> dict[str, object]:
    return {"policy_id": policy, "scope_key": scope, "spend": spend, "limit": 10, "state": "ok"}


def test_budget_burn_shows_the_nearest_scopes_first_and_counts_the_rest() -> None:
    traces = [_status(f"trace/acme/{i:032x}", (i % 97) / 10) for i in range(500)]
    agents = [_status("agent/acme/coder", 9.9, "daily"), _status("agent/acme/planner", 4.0, "daily")]
    fig = figures.budget_burn([*traces, *agents])
    bar = fig.data[0]
    assert len(bar.y) == 10  # never 502 rows
    assert bar.y[-1].startswith("daily · agent/acme/coder")  # nearest its limit, drawn on top
    assert list(bar.x) == sorted(bar.x) and bar.x[-1] == 99.0
    assert "10 nearest their limit, 492 more" in fig.layout.title.text
    # 32-hex trace ids are shortened on the axis, kept whole in the hover text
    assert all(len(y) <= 56 for y in bar.y) and any("…" in y for y in bar.y)
    assert all(re.search(r"[0-9a-f]{32}|agent/acme/coder", h) for h in bar.hovertext)


def test_budget_burn_exhaustion_is_short_and_labels_have_room() -> None:
    fig = figures.budget_burn(
        [{**_status("agent/acme/coder", 9.5), "projected_exhaustion": "2026-11-29T18:33:50.590962Z"}]
    )
    assert "exhausts Nov 29 18:33 UTC" in fig.data[0].text[0]
    assert fig.layout.yaxis.automargin is True and "more" not in fig.layout.title.text


def test_shortened_labels_that_would_collide_keep_their_whole_text() -> None:
    a, b = "trace/acme/" + "0" * 20 + "1" * 12, "trace/acme/" + "0" * 19 + "2" + "1" * 12
    fig = figures.budget_burn([_status(a, 5.0), _status(b, 6.0), _status("trace/acme/" + "f" * 32, 1.0)])
    assert set(fig.data[0].y) >= {f"per-trace · {a}", f"per-trace · {b}"} and len(set(fig.data[0].y)) == 3
    assert any("…" in y for y in fig.data[0].y)  # the one without a twin is still short
    model = "gpt-4o-2024-08-06-with-a-very-long-fine-tune-name"
    bars = figures.provider_health([{"provider": "openai", "model": model, "calls": 3}]).data[0]
    assert len(bars.x[0]) <= 49 and bars.x[0].startswith("openai/gpt-4o")
