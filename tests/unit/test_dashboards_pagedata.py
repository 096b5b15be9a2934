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
