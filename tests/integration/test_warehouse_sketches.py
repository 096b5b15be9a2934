"""Latency percentiles, provider health and quality series from the minute rollup: counts,
errors, maxima and score counts exactly those of the raw events; percentiles within the
sketch's stated error of the exact nearest-rank latency (``quantile_disc`` on the raw
events); mean scores equal up to float rounding. With one date rolled up and another
holding newer files, windows with partial minutes at both ends, a window under two minutes,
the ``second`` bucket, a user filter, failed LLM calls and a zero-latency call."""

from __future__ import annotations

import math
import shutil
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agentledger.api.testing import land_demo_warehouse
from agentledger.events import PricedEvent, SpanEvent, SpanKind, SpanStatus
from agentledger.warehouse import queries, rollup
from agentledger.warehouse.catalog import Catalog, rollup_files
from agentledger.warehouse.compact import SUMMARIES, compact
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import T0, priced_events

USER = "sketch-user"
WINDOWS: dict[str, tuple[datetime | None, datetime | None]] = {
    "all": (None, None),
    "partial minutes": (T0 + timedelta(hours=3, seconds=17.5), T0 + timedelta(hours=30, seconds=42)),
    "from a late date": (T0 + timedelta(hours=26, seconds=5), None),
}


def _llm_calls(root: str) -> None:
    """Failed LLM calls, a zero-latency one and calls naming a user, over two dates."""
    events = []
    for i in range(40):
        at = T0 + timedelta(hours=1 + i, seconds=i)
        status = SpanStatus.ERROR if i % 4 == 0 else SpanStatus.OK
        latency = timedelta(0) if i == 5 else timedelta(milliseconds=37 * i + 3)
        span = SpanEvent(
            event_id=f"sketch-{i}", ts=at, tenant="acme", agent="planner", agent_version="v1",
            trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", name="chat", kind=SpanKind.LLM,
            start=at - latency, end=at, status=status, provider="anthropic", model="claude-x",
            attributes={"user.id": USER} if i % 3 == 0 else {},
        )  # fmt: skip
        events.append(PricedEvent(event=span, cost_usd=Decimal(0), priced=True, price_source="test"))
    land_priced(Store(root), events, "sketch-calls")


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, Catalog]:
    """(with the minute rollups, the same events without them)."""
    base = tmp_path_factory.mktemp("sketches")
    root = base / "wh"
    land_demo_warehouse(str(root), n_traces=400)
    _llm_calls(str(root))
    store = Store(str(root))
    compact(store)
    land_priced(store, priced_events(40, seed=9, t0=T0 + timedelta(hours=26), hours=3), "late-arrivals")
    covered = rollup_files(store.files("events"), store.files(rollup.DATASET))
    assert 0 < len(covered) < len({f.date for f in store.files("events")})
    bare = base / "bare"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns(*SUMMARIES))
    return Catalog(str(root)), Catalog(str(bare))


def _short_window(cat: Catalog) -> tuple[datetime, datetime]:
    """Under two minutes around an LLM call (the rollup is not used: events only)."""
    at = cat.query("SELECT ts FROM events WHERE kind = 'llm' ORDER BY ts LIMIT 1 OFFSET 100")[0]["ts"]
    return at - timedelta(seconds=50), at + timedelta(seconds=45)


def _where(start: datetime | None, end: datetime | None, user: str | None = None) -> tuple[str, list[Any]]:
    parts: list[str] = ["TRUE"]
    params: list[Any] = []
    if start is not None:
        parts.append("ts >= ?")
        params.append(start)
    if end is not None:
        parts.append("ts < ?")
        params.append(end)
    if user is not None:
        parts.append(
            "trace_id IN (SELECT trace_id FROM events WHERE json_extract_string(attributes, '$.\"user.id\"') = ?)"
        )
        params.append(user)
    return " AND ".join(parts), params


def _close(got: float | None, exact: float | None) -> bool:
    if exact is None:
        return got is None
    assert got is not None
    return abs(got - exact) <= rollup.SKETCH_ERROR * abs(exact) + 1e-9


_BUCKET = {
    None: "NULL",
    "second": "epoch_us(ts) // 1000000",
    "hour": "epoch_us(ts) // 3600000000",
    "day": "date",
}


def _exact_latency(cat: Catalog, start: Any, end: Any, bucket: str | None) -> dict[Any, dict[str, Any]]:
    where, params = _where(start, end)
    ok = "status IS DISTINCT FROM 'error'"
    lat = 'epoch_ms("end") - epoch_ms(start)'
    rows = cat.query(
        f"""SELECT provider, model, {_BUCKET[bucket]} AS b, count(*) AS calls,
               count(*) FILTER (WHERE NOT ({ok})) AS errors, max({lat}) FILTER (WHERE {ok}) AS max_ms,
               {", ".join(f"quantile_disc({lat}, {p / 100}) FILTER (WHERE {ok}) AS p{p}_ms" for p in (50, 90, 95, 99))}
            FROM events WHERE {where} AND type = 'span' AND kind = 'llm' AND provider IS NOT NULL
            GROUP BY ALL ORDER BY provider, model, b""",
        params,
    )
    return {(r["provider"], r["model"], i): r for i, r in enumerate(rows)}


# a second bucket over days is not a page's choice: the short window covers it
SHAPES = [(w, b) for w in WINDOWS for b in (None, "hour", "day")] + [("short", b) for b in (None, "second")]


@pytest.mark.parametrize(("window", "bucket"), SHAPES)
def test_latency_percentiles_within_the_sketch_error(
    catalogs: tuple[Catalog, Catalog], window: str, bucket: str | None
) -> None:
    rolled, bare = catalogs
    start, end = _short_window(rolled) if window == "short" else WINDOWS[window]
    got = queries.latency_percentiles(rolled, start=start, end=end, bucket=bucket)
    assert got == queries.latency_percentiles(bare, start=start, end=end, bucket=bucket)
    exact = list(_exact_latency(rolled, start, end, bucket).values())
    assert got and len(got) == len(exact)
    for g, e in zip(got, exact, strict=True):
        assert (g["provider"], g["model"], g["calls"], g["errors"], g["max_ms"]) == (
            e["provider"], e["model"], e["calls"], e["errors"], e["max_ms"],
        )  # fmt: skip
        for p in (50, 90, 95, 99):
            assert _close(g[f"p{p}_ms"], e[f"p{p}_ms"]), (p, g, e)
    if window == "all" and bucket is None:
        claude = next(g for g in got if g["model"] == "claude-x")
        assert (claude["calls"], claude["errors"]) == (40, 10)


@pytest.mark.parametrize("window", [*WINDOWS, "short"])
@pytest.mark.parametrize("user", [None, USER])
def test_provider_health_within_the_sketch_error(
    catalogs: tuple[Catalog, Catalog], window: str, user: str | None
) -> None:
    rolled, bare = catalogs
    start, end = _short_window(rolled) if window == "short" else WINDOWS[window]
    got = queries.provider_health(rolled, start=start, end=end, user=user)
    assert got == queries.provider_health(bare, start=start, end=end, user=user)
    where, params = _where(start, end, user)
    lat = 'epoch_ms("end") - epoch_ms(start)'
    exact = rolled.query(
        f"""SELECT provider, model, count(*) FILTER (WHERE type = 'usage') AS calls, sum(cost_usd) AS cost_usd,
               count(*) FILTER (WHERE type = 'span') AS spans,
               count(*) FILTER (WHERE type = 'span' AND status = 'error') AS errors,
               quantile_disc({lat}, 0.5) FILTER (WHERE type = 'span') AS p50_ms,
               quantile_disc({lat}, 0.95) FILTER (WHERE type = 'span') AS p95_ms
            FROM events WHERE {where} AND provider IS NOT NULL GROUP BY ALL ORDER BY provider, model""",
        params,
    )
    assert len(got) == len(exact) and (got or (user is not None and window == "short"))
    for g, e in zip(got, exact, strict=True):
        for k in ("provider", "model", "calls", "cost_usd", "spans", "errors"):
            assert g[k] == e[k], (k, g, e)
        assert _close(g["p50_ms"], e["p50_ms"]) and _close(g["p95_ms"], e["p95_ms"]), (g, e)
    if user is not None and window == "all":  # i % 3 == 0 of 40 name the user; i % 12 == 0 failed
        assert [(g["model"], g["spans"], g["errors"]) for g in got] == [("claude-x", 14, 4)]


@pytest.mark.parametrize(
    ("window", "bucket"),
    [(w, b) for w in WINDOWS for b in ("minute", "hour", "day")] + [("short", "minute"), ("short", "second")],
)
def test_quality_series_from_the_rollup(catalogs: tuple[Catalog, Catalog], window: str, bucket: str) -> None:
    rolled, bare = catalogs
    start, end = _short_window(rolled) if window == "short" else WINDOWS[window]
    args: dict[str, Any] = {
        "agent": "planner",
        "metric": "faithfulness",
        "bucket": bucket,
        "start": start,
        "end": end,
    }
    got = queries.quality_series(rolled, **args)
    from_events = queries.quality_series(bare, **args)
    assert [{**g, "score": None} for g in got] == [{**g, "score": None} for g in from_events]
    assert [g["score"] for g in got] == pytest.approx([g["score"] for g in from_events], rel=1e-12)
    where, params = _where(start, end)
    key = {"minute": "epoch_us(ts) // 60000000", "hour": _BUCKET["hour"], "day": "date",
           "second": _BUCKET["second"]}[bucket]  # fmt: skip
    exact = rolled.query(
        f"""SELECT {key} AS b, agent_version, avg(score) AS score, min(score) AS min_score, count(*) AS n
            FROM events WHERE {where} AND type = 'quality' AND agent = 'planner' AND metric = 'faithfulness'
            GROUP BY ALL ORDER BY b, agent_version""",
        params,
    )
    assert len(got) == len(exact) and (window == "short" or got)
    for g, e in zip(got, exact, strict=True):
        assert (g["agent_version"], g["min_score"], g["n"]) == (e["agent_version"], e["min_score"], e["n"])
        assert g["score"] == pytest.approx(e["score"], rel=1e-12)


def test_the_rollup_is_what_they_read(catalogs: tuple[Catalog, Catalog], tmp_path: Path) -> None:
    # Proof the rollup is used (no scan of the events): emptied rollup files change the answers.
    rolled, _ = catalogs
    root = tmp_path / "wh"
    shutil.copytree(rolled.store.root, root)
    store = Store(str(root))
    for f in store.files(rollup.DATASET):
        table = store.read(f.path)
        store.delete([f.path])
        store.write(rollup.DATASET, f.date, f.name, table.slice(0, 0))
    tampered = Catalog(str(root))
    for query, args in (
        (queries.latency_percentiles, {"bucket": None}),
        (queries.provider_health, {}),
        (queries.quality_series, {"agent": "planner", "metric": "faithfulness", "bucket": "day"}),
    ):
        assert query(tampered, **args) != query(rolled, **args), query.__name__


def test_sketch_buckets_hold_their_latencies() -> None:
    """Every latency reads back within the stated error (no float edge lands it astray)."""
    import duckdb

    con = duckdb.connect()
    values = [0, 1, 2, 3, 50, 51, 99, 100, 101, 999, 1000, 2999, 3000, 60_000, 3_600_000, -7]
    for v in values:
        sql = f"SELECT {rollup.sketch_value(rollup.sketch_key('v'))} FROM (SELECT ?::BIGINT AS v)"
        (back,) = con.execute(sql, [v]).fetchone()  # type: ignore[misc]
        assert math.isclose(back, v, rel_tol=rollup.SKETCH_ERROR, abs_tol=0), (v, back)
