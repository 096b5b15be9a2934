"""Page data: which alerts feed which panel (formats as the health worker writes them)."""

from __future__ import annotations

from pathlib import Path

from agentledger.api.testing import land_demo_warehouse
from agentledger.dashboards import pagedata
from agentledger.warehouse.reader import WarehouseReader


def test_entity_agent_and_alert_figures() -> None:
    assert pagedata.entity_agent("acme/planner@v2:faithfulness") == "planner"
    assert pagedata.entity_agent("acme/planner@v2") == "planner"
    assert pagedata.entity_agent("openai") is None
    assert pagedata.alert_figures({"figures": '{"verdict": "promote"}'}) == {"verdict": "promote"}
    assert pagedata.alert_figures({"figures": {"a": 1}}) == {"a": 1}
    assert pagedata.alert_figures({"figures": "not json"}) == {} and pagedata.alert_figures({}) == {}


def test_pages_from_a_demo_warehouse(tmp_path: Path) -> None:
    land_demo_warehouse(str(tmp_path))
    src = pagedata.Sources(WarehouseReader(str(tmp_path)), "acme")
    agent = pagedata.agent(src, "planner")
    assert list(agent.figures[2].data[0].cells.values[3]) == ["-", "rollback"]  # v2's canary verdict
    assert len(agent.figures[1].layout.shapes) == 1  # one drift alarm (the resolve is not one)
    providers = pagedata.providers(src).figures[0].data[0]
    assert list(providers.x) == ["openai/gpt-4o", "openai/mystery-1"]
    # Error rate and latency measured on the LLM spans (warehouse); circuit from the health alert.
    assert providers.text[1].startswith("circuit open · 0.0% errors · p95 ")
    other = pagedata.Sources(WarehouseReader(str(tmp_path)), "globex")
    assert pagedata.timeline(other).figures[0].data[0].x == ()  # acme's alerts stay acme's
    assert [p.slug for p in pagedata.all_pages(src)] == [
        "overview",
        "agent",
        "trace",
        "traces",
        "agents",
        "providers",
        "timeline",
    ]


def test_agent_and_trace_pages_link_to_the_others(tmp_path: Path) -> None:
    from agentledger.dashboards.pages import render_page, render_report

    land_demo_warehouse(str(tmp_path))
    src = pagedata.Sources(WarehouseReader(str(tmp_path)), "acme")
    agent = pagedata.agent(src)
    assert {label for label, _ in agent.links} == {"planner", "coder", "critic"}
    assert agent.notes == [f"agent: {agent.links[0][0]}"]  # the costliest is shown first
    html = render_page(agent)
    assert 'href="/ui/agent?name=planner"' in html
    trace = pagedata.trace(src)
    assert len(trace.links) == 10 and trace.links[0][1] == f"trace_id={trace.notes[0].split(': ')[1]}"
    assert "/ui/agent?name=" not in render_report([agent])  # no server behind a static file


def test_a_tenants_own_failover_opens_the_circuit_in_its_view_only() -> None:
    from datetime import UTC, datetime, timedelta

    from agentledger.events import ControlCommand

    t0 = datetime(2026, 11, 29, 12, tzinfo=UTC)

    def cmd(action: str, tenant: str | None, minutes: int) -> ControlCommand:
        scope = {"kind": "provider", "provider": "openai", **({"tenant": tenant} if tenant else {})}
        params = {"fallback_provider": "anthropic"} if action == "failover" else {}
        return ControlCommand.model_validate(
            {"command_id": f"c-{action}-{tenant}-{minutes}", "ts": t0 + timedelta(minutes=minutes),
             "scope": scope, "action": action, "reason": "test", "params": params}
        )  # fmt: skip

    acme_failover = [cmd("failover", "acme", 0)]
    assert pagedata._circuits(acme_failover, None) == {}  # an all-tenant view: global circuits only
    assert pagedata._circuits(acme_failover, "acme") == {"openai/*": "open"}
    assert pagedata._circuits(acme_failover, "globex") == {}
    # a global resume does not end acme's own failover; acme's resume does
    later = [*acme_failover, cmd("failover", None, 1), cmd("resume", None, 2)]
    assert pagedata._circuits(later, "acme") == {"openai/*": "open"}
    assert pagedata._circuits(later, "globex") == {"openai/*": "closed"}
    assert pagedata._circuits([*later, cmd("resume", "acme", 3)], "acme") == {"openai/*": "closed"}


def test_slo_panel_draws_each_agent_objective_from_the_named_query(tmp_path: Path) -> None:
    from agentledger.events import ObjectivePolicy
    from agentledger.warehouse import queries as q

    land_demo_warehouse(str(tmp_path))
    reader = WarehouseReader(str(tmp_path))

    def objective(oid: str, **kw: object) -> ObjectivePolicy:
        return ObjectivePolicy.model_validate({"objective_id": oid, "target": 0.95, **kw})

    objectives = [
        objective("planner-latency", kind="latency", threshold_ms=800, selector={"tenant": "acme", "agent": "planner"}),
        objective("all-avail", kind="availability"),  # every tenant, every agent
        objective("coder-only", kind="availability", selector={"agent": "coder"}),
        objective("by-provider", kind="availability", selector={"per": "provider"}),
        objective("planner-gpt", kind="availability", selector={"agent": "planner", "model": "gpt-4o"}),
    ]  # fmt: skip
    src = pagedata.Sources(reader, "acme", objectives=objectives)
    page = pagedata.agent(src, "planner")
    fig = page.figures[3]
    drawn = sorted({t.name.rsplit(" ", 1)[0] for t in fig.data if t.name})
    assert drawn == ["all-avail", "all-avail budget", "planner-latency", "planner-latency budget"]
    # the daily attainment drawn is the named query's, in percent
    truth = reader.rows(q.slo_attainment, 0.95, 800, tenant="acme", agent="planner")
    line = next(t for t in fig.data if t.name == "planner-latency attainment")
    assert truth and list(line.y) == [100 * r["attainment"] for r in truth]
    bars = next(t for t in fig.data if t.name == "planner-latency budget left")
    assert list(bars.y) == [100 * r["budget_left"] for r in truth]
    # a note with the whole range's figures; the one selecting by model is named, not drawn
    calls, good = sum(r["calls"] for r in truth), sum(r["good"] for r in truth)
    note = next(n for n in page.notes if n.startswith("objective planner-latency"))
    assert f"{good / calls:.2%} good over {calls} calls" in note
    assert any("planner-gpt" in n and "not drawn" in n for n in page.notes)
    # another tenant's view does not see an acme objective; no objective: an empty panel
    globex = pagedata.agent(pagedata.Sources(reader, "globex", objectives=objectives[:1]), "planner")
    assert globex.figures[3].data == ()
    assert "no objective applies" in globex.figures[3].layout.annotations[0].text


def test_providers_page_draws_latency_percentiles_per_provider_model(tmp_path: Path) -> None:
    from agentledger.warehouse import queries as q

    land_demo_warehouse(str(tmp_path))
    reader = WarehouseReader(str(tmp_path))
    src = pagedata.Sources(reader, "acme")
    fig = pagedata.providers(src).figures[1]
    bucket = pagedata.bucket_of(src)
    truth = [
        r for r in reader.rows(q.latency_percentiles, tenant="acme", bucket=bucket) if r["p50_ms"] is not None
    ]
    assert truth
    for col in ("p50", "p95", "p99"):
        for pm in {f"{r['provider']}/{r['model']}" for r in truth}:
            trace = next(t for t in fig.data if t.name == f"{pm} {col}")
            want = [r[f"{col}_ms"] for r in truth if f"{r['provider']}/{r['model']}" == pm]
            assert list(trace.y) == want
