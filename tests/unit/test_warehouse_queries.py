"""Every named query against a seeded ground truth computed here in plain Python."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agentledger.errors import ConfigError
from agentledger.events import Action, AlertEvent, AlertState, CommandParams, ControlCommand, Scope, ScopeKind
from agentledger.warehouse import queries as q
from agentledger.warehouse import rollup
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.rows import ModelBuffer
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import T0, priced_events
from agentledger.wire import dump

EVENTS = priced_events(300, seed=21, hours=50)
ZERO = Decimal(0)


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    root = tmp_path_factory.mktemp("wh")
    store = Store(str(root))
    land_priced(store, EVENTS[:1000], "p0-a")
    land_priced(store, EVENTS[1000:], "p1-b")
    land_priced(store, EVENTS[500:700], "p0-replay")  # duplicates must not count
    cmd = ControlCommand(
        command_id="cmd-0000001",
        ts=T0 + timedelta(hours=3),
        scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent="planner"),
        action=Action.THROTTLE,
        reason="budget 80%",
        policy_id="daily",
        params=CommandParams(rate_per_s=1.0),
    )
    other = cmd.model_copy(
        update={"command_id": "cmd-0000002", "scope": Scope(kind=ScopeKind.TENANT, tenant="globex")}
    )
    buf = ModelBuffer("commands")
    buf.add_record(dump(cmd), 0, 0)
    buf.add_record(dump(other), 0, 1)
    store.write("commands", cmd.ts.date().isoformat(), "p0-0-1", buf.to_table())
    alert = AlertEvent(
        alert_id="alert-0001", dedup_key="budget/acme", ts=cmd.ts, rule="budget", entity="acme/planner",
        tenant="acme", state=AlertState.ALERT, summary="80%", command_id=cmd.command_id,
    )  # fmt: skip
    abuf = ModelBuffer("alerts")
    abuf.add_record(dump(alert), 0, 0)
    store.write("alerts", cmd.ts.date().isoformat(), "p0-0-0", abuf.to_table())
    return Catalog(store)


def _sum(pairs):  # type: ignore[no-untyped-def]
    out: dict = defaultdict(lambda: ZERO)
    for key, cost in pairs:
        out[key] += cost
    return dict(out)


def test_cost_by_agent_day_to_the_cent(cat: Catalog) -> None:
    truth = _sum(((e.event.tenant, e.event.agent, e.event.ts.date()), e.cost_usd) for e in EVENTS)
    rows = q.cost_by_agent_day(cat)
    assert {(r["tenant"], r["agent"], r["day"]): r["cost_usd"] for r in rows} == truth
    assert sum(r["events"] for r in rows) == len(EVENTS)
    acme = q.cost_by_agent_day(cat, tenant="acme")
    assert acme and {r["tenant"] for r in acme} == {"acme"}


def test_top_traces_by_inclusive_cost(cat: Catalog) -> None:
    truth = _sum((e.event.trace_id, e.cost_usd) for e in EVENTS)
    best = sorted(truth.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    rows = q.top_traces(cat, limit=5)
    assert [(r["trace_id"], r["cost_usd"]) for r in rows] == best


def test_cost_per_successful_task(cat: Catalog) -> None:
    cost = _sum(((e.event.agent, e.event.agent_version, e.event.tenant), e.cost_usd) for e in EVENTS)
    failed = {e.event.trace_id for e in EVENTS if e.event.type == "span" and e.event.status.value == "error"}
    tasks: dict = defaultdict(set)
    for e in EVENTS:
        tasks[(e.event.agent, e.event.agent_version, e.event.tenant)].add(e.event.trace_id)
    rows = q.cost_per_successful_task(cat)
    assert len(rows) == len(cost)
    for r in rows:
        key = (r["agent"], r["agent_version"], r["tenant"])
        ok = len(tasks[key] - failed)
        assert (r["tasks"], r["successful"], r["cost_usd"]) == (len(tasks[key]), ok, cost[key])
        assert abs(r["cost_per_success_usd"] - cost[key] / ok) < Decimal("1e-11")
    assert any(r["successful"] < r["tasks"] for r in rows)


def test_token_efficiency(cat: Catalog) -> None:
    usage = [e.event for e in EVENTS if e.event.type == "usage" and e.event.agent == "coder"]
    rows = [r for r in q.token_efficiency(cat) if r["agent"] == "coder"]
    inp = sum(u.input_tokens for u in usage)
    assert sum(r["input_tokens"] for r in rows) == inp
    assert sum(r["cache_read_tokens"] for r in rows) == sum(u.cache_read_tokens for u in usage)
    for r in rows:
        assert r["output_per_input"] == pytest.approx(r["output_tokens"] / r["input_tokens"])
        assert 0 <= r["cache_hit_ratio"] <= 0.5


def test_unpriced_usage_is_listed_not_zeroed(cat: Catalog) -> None:
    unpriced = [e for e in EVENTS if e.event.type == "usage" and not e.priced]
    rows = q.unpriced_usage(cat)
    assert unpriced and sum(r["calls"] for r in rows) == len(unpriced)
    assert {r["model"] for r in rows} == {"mystery-1"}


def test_costs_grouping_buckets_and_window(cat: Catalog) -> None:
    start, end = T0 + timedelta(hours=5), T0 + timedelta(hours=29)
    inside = [e for e in EVENTS if start <= e.event.ts < end and e.event.tenant == "globex"]
    truth = _sum(
        ((e.event.agent, e.event.ts.replace(minute=0, second=0, microsecond=0)), e.cost_usd) for e in inside
    )
    rows = q.costs(cat, group_by=["agent"], start=start, end=end, tenant="globex", bucket="hour")
    assert {(r["agent"], r["bucket"].astimezone(UTC)): r["cost_usd"] for r in rows} == truth
    per_day = _sum(
        (datetime.combine(e.event.ts.date(), datetime.min.time(), UTC), e.cost_usd) for e in EVENTS
    )
    days = q.costs(cat, group_by=[], bucket="day")
    assert {r["bucket"].astimezone(UTC): r["cost_usd"] for r in days} == per_day
    minutes = q.costs(cat, group_by=["tenant"], bucket="minute", tenant="acme")
    assert sum(r["cost_usd"] for r in minutes) == sum(e.cost_usd for e in EVENTS if e.event.tenant == "acme")
    assert all(r["bucket"].second == 0 for r in minutes)
    by_model = q.costs(cat, group_by=["provider", "model"])
    assert sum(r["cost_usd"] for r in by_model) == sum(e.cost_usd for e in EVENTS)
    with pytest.raises(ConfigError):
        q.costs(cat, group_by=["cost_usd; DROP TABLE x"])
    with pytest.raises(ConfigError):
        q.costs(cat, bucket="fortnight")


def test_trace_tree_direct_and_inclusive_cost(cat: Catalog) -> None:
    trace = max(
        {e.event.trace_id for e in EVENTS}, key=lambda t: sum(1 for e in EVENTS if e.event.trace_id == t)
    )
    mine = [e for e in EVENTS if e.event.trace_id == trace]
    tenant = mine[0].event.tenant
    rows = q.trace_tree(cat, trace, tenant=tenant)
    assert rows[0]["depth"] == 0 and rows[0]["kind"] == "agent"
    assert rows[0]["inclusive_cost_usd"] == sum(e.cost_usd for e in mine)
    direct = _sum((e.event.span_id, e.cost_usd) for e in mine)
    assert {r["span_id"]: r["direct_cost_usd"] for r in rows} == direct
    assert q.trace_tree(cat, trace, tenant="someone-else") == []


def test_agents_quality_and_tenant_isolation(cat: Catalog) -> None:
    rows = q.agents(cat, tenant="acme")
    truth = _sum((e.event.agent, e.cost_usd) for e in EVENTS if e.event.tenant == "acme")
    assert {r["agent"]: r["cost_usd"] for r in rows} == truth
    assert all(set(r["versions"]) <= {"v1", "v2"} for r in rows)
    series = q.quality_series(cat, agent="planner", metric="faithfulness", tenant="acme", bucket="day")
    scores = [e.event.score for e in EVENTS if e.event.type == "quality" and e.event.agent == "planner"
              and e.event.tenant == "acme"]  # fmt: skip
    assert sum(r["n"] for r in series) == len(scores)


def test_commands_alerts_and_budget_utilisation(cat: Catalog) -> None:
    assert [c["command_id"] for c in q.commands(cat, tenant="acme")] == ["cmd-0000001"]
    assert {c["command_id"] for c in q.commands(cat)} == {"cmd-0000001", "cmd-0000002"}
    assert q.commands(cat, tenant="acme", action="kill") == []
    assert [a["alert_id"] for a in q.alerts(cat, tenant="acme", state="alert")] == ["alert-0001"]
    assert q.alerts(cat, tenant="globex") == []
    rows = q.budget_utilisation(cat, daily_limit_usd=Decimal(10), tenant="acme")
    day = (T0 + timedelta(hours=3)).date()
    planner = next(r for r in rows if r["agent"] == "planner" and r["day"] == day)
    first = datetime.fromisoformat("2026-11-21T01:00:00+00:00")
    after = sum(e.cost_usd for e in EVENTS if e.event.tenant == "acme" and e.event.agent == "planner"
                and e.event.ts.date() == day and e.event.ts >= first)  # fmt: skip
    assert (planner["commands"], planner["actions"]) == (1, ["throttle"])
    assert planner["cost_after_first_command_usd"] == after
    assert planner["utilisation"] == pytest.approx(float(planner["cost_usd"]) / 10)
    coder = next(r for r in rows if r["agent"] == "coder" and r["day"] == day)
    assert coder["commands"] == 0 and coder["cost_after_first_command_usd"] is None


def test_provider_health(cat: Catalog) -> None:
    rows = {(r["provider"], r["model"]): r for r in q.provider_health(cat)}
    spans = [e.event for e in EVENTS if e.event.type == "span" and e.event.kind.value == "llm"]
    for model in ("gpt-4o", "mystery-1"):
        mine = [s for s in spans if s.model == model]
        r = rows[("openai", model)]
        assert r["spans"] == len(mine) and r["errors"] == 0 and r["error_rate"] == 0
        assert r["calls"] == sum(1 for e in EVENTS if e.event.type == "usage" and e.event.model == model)
        durations = sorted(s.duration_ms for s in mine)
        assert durations[0] <= r["p50_ms"] <= r["p95_ms"] <= durations[-1]


def test_trace_tree_survives_cycles_and_missing_spans() -> None:
    from agentledger.warehouse.queries import _tree

    def row(sid: str | None, parent: str | None, cost: str) -> dict:  # type: ignore[type-arg]
        return {"span_id": sid, "parent_span_id": parent, "direct_cost_usd": Decimal(cost)}

    rows = [row("a", None, "1"), row("b", "a", "2"), row("c", "b", "4"), row("x", "y", "8"),
            row("y", "x", "16"), row("s", "s", "32"), row(None, "a", "64")]  # fmt: skip
    out = {r["span_id"]: r for r in _tree(rows)}
    assert set(out) == {"a", "b", "c", "x", "y", "s"}
    assert (out["a"]["inclusive_cost_usd"], out["b"]["depth"], out["c"]["depth"]) == (7, 1, 2)
    assert out["s"]["inclusive_cost_usd"] == 32 and out["s"]["depth"] == 0
    # a cycle: the first of it met becomes the root, nothing counted twice
    assert (out["x"]["inclusive_cost_usd"], out["y"]["inclusive_cost_usd"], out["y"]["depth"]) == (24, 16, 1)


def _llm_spans(tenant: str | None = None) -> list:  # type: ignore[type-arg]
    return [
        e.event
        for e in EVENTS
        if e.event.type == "span" and e.event.kind.value == "llm" and e.event.provider
        and (tenant is None or e.event.tenant == tenant)
    ]  # fmt: skip


def test_slo_attainment_per_agent_and_day_matches_the_spans(cat: Catalog) -> None:
    spans = _llm_spans()
    threshold = sorted(s.duration_ms for s in spans)[len(spans) // 2]  # about half within it
    truth: dict = defaultdict(lambda: [0, 0])
    for s in spans:
        if s.status.value != "error":
            cell = truth[(s.tenant, s.agent, s.ts.date())]
            cell[1] += 1
            cell[0] += s.duration_ms <= threshold
    rows = q.slo_attainment(cat, target=0.95, threshold_ms=threshold)
    assert {(r["tenant"], r["agent"], r["day"]): [r["good"], r["calls"]] for r in rows} == dict(truth)
    for r in rows:
        assert r["attainment"] == pytest.approx(r["good"] / r["calls"])
        assert r["budget_left"] == pytest.approx(1 - (r["calls"] - r["good"]) / (r["calls"] * 0.05))
    assert any(r["budget_left"] < 0 for r in rows)  # half the calls slow: budget overspent
    avail = q.slo_attainment(cat, target=0.99, tenant="acme")
    assert {r["tenant"] for r in avail} == {"acme"}
    assert sum(r["calls"] for r in avail) == len(_llm_spans("acme"))
    with pytest.raises(ConfigError):
        q.slo_attainment(cat, target=1.5)


def test_latency_percentiles_per_provider_model(cat: Catalog) -> None:
    rows = q.latency_percentiles(cat, bucket=None)
    for r in rows:
        mine = sorted(
            s.duration_ms for s in _llm_spans() if (s.provider, s.model) == (r["provider"], r["model"])
        )
        assert r["calls"] == len(mine) and r["errors"] == 0
        assert mine[0] <= r["p50_ms"] <= r["p90_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"] == mine[-1]
        # nearest rank from the latency sketch: within 1 % of the exact latency at that rank
        for p in (50, 90, 95, 99):
            exact = mine[math.ceil(len(mine) * p / 100) - 1]
            assert abs(r[f"p{p}_ms"] - exact) <= rollup.SKETCH_ERROR * exact
    assert {(r["provider"], r["model"]) for r in rows} == {(s.provider, s.model) for s in _llm_spans()}
    daily = q.latency_percentiles(cat, bucket="day")
    assert sum(r["calls"] for r in daily) == sum(r["calls"] for r in rows)


def test_version_tasks_counts_each_trace_once_per_version(cat: Catalog) -> None:
    truth: dict[tuple[str, str, str | None], set[str]] = defaultdict(set)
    for e in EVENTS:
        if e.event.tenant == "acme":
            truth[(e.event.tenant, e.event.agent, e.event.agent_version)].add(e.event.trace_id)
    rows = q.version_tasks(cat, tenant="acme")
    got = {(r["tenant"], r["agent"], r["agent_version"]): r["tasks"] for r in rows}
    assert got == {k: len(v) for k, v in truth.items()}
    one = q.version_tasks(cat, tenant="acme", agent="planner")
    assert {r["agent"] for r in one} == {"planner"}
