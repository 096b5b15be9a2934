"""Pages under a view (time range and filters from the URL), the traces list and the trace
and decisions pages, on a demo warehouse plus one runaway trace the loop detector killed."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import pytest
from dashboard_data import (
    LOOP_CONVERSATION,
    LOOP_START,
    LOOP_TRACE,
    LOOP_USER,
    land_agent_chain,
    land_loop_trace,
)

from agentledger.api.testing import land_demo_warehouse
from agentledger.dashboards import pagedata
from agentledger.dashboards.pages import render_page, render_report
from agentledger.warehouse import queries
from agentledger.warehouse.reader import WarehouseReader
from agentledger.warehouse.synthetic import T0


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("views") / "wh")
    land_demo_warehouse(root)
    land_loop_trace(root)
    return root


def acme(wh: str, **view: object) -> pagedata.Sources:
    return pagedata.Sources(WarehouseReader(wh), "acme", view=pagedata.View(**view))  # type: ignore[arg-type]


def bar_total(page_figure: object) -> float:
    return sum(float(x) for trace in page_figure.data for x in trace.x)  # type: ignore[attr-defined]


def test_an_agent_filter_keeps_that_agent_only(wh: str) -> None:
    every = pagedata.overview(acme(wh)).figures[1]  # top agents: one bar per agent
    planner = pagedata.overview(acme(wh, agent="planner")).figures[1]
    assert set(every.data[0].y) == {"planner", "coder", "critic"}
    assert list(planner.data[0].y) == ["planner"]
    spent = {r["agent"]: float(r["cost_usd"]) for r in WarehouseReader(wh).rows(queries.costs, tenant="acme")}
    assert bar_total(planner) == pytest.approx(spent["planner"])


def test_a_custom_range_shows_its_slice_in_buckets_that_fit_it(wh: str) -> None:
    whole = pagedata.overview(acme(wh))
    slice_ = acme(wh, range="custom", start=T0, end=T0 + timedelta(hours=6))
    part = pagedata.overview(slice_)
    assert 0 < bar_total(part.figures[1]) < bar_total(whole.figures[1])
    assert pagedata.bucket_of(acme(wh)) == "hour"  # two days of data
    around_loop = acme(wh, range="custom", start=LOOP_START, end=LOOP_START + timedelta(seconds=100))
    assert pagedata.bucket_of(around_loop) == "second"  # a 100-second slice: seconds
    assert part.notes[0] == "from 2026-11-20T22:00:00 to 2026-11-21T04:00:00 UTC"


def test_relative_ranges_count_back_from_now(wh: str) -> None:
    src = acme(wh, range="1h")
    src.now = LOOP_START + timedelta(minutes=30)
    assert src.scope()["start"] == LOOP_START - timedelta(minutes=30)
    rows = src.rows(queries.traces, **src.scope())
    assert LOOP_TRACE in {r["trace_id"] for r in rows}
    src.now = LOOP_START - timedelta(hours=2)  # an hour that ends before the loop
    assert LOOP_TRACE not in {r["trace_id"] for r in src.rows(queries.traces, **src.scope())}


def test_the_view_rides_in_the_url_of_every_link_and_form(wh: str) -> None:
    view = pagedata.View(range="custom", start=T0, end=T0 + timedelta(hours=6), agent="coder", model="gpt-4o")
    page = pagedata.traces(pagedata.Sources(WarehouseReader(wh), "acme", view=view))
    html = render_page(page)
    query = "range=custom&amp;start=2026-11-20T22%3A00%3A00&amp;end=2026-11-21T04%3A00%3A00&amp;agent=coder&amp;model=gpt-4o"
    assert f'href="/ui/overview?{query}"' in html  # the nav keeps the view
    assert '<form class="view" method="get" action="/ui/traces">' in html
    assert '<option value="coder" selected>coder</option>' in html
    assert '<option value="custom" selected>' in html
    rows = page.tables[0].rows
    assert rows and all(r[2].text == "coder" for r in rows)
    assert all(r[0].href and "trace_id=" in r[0].href and "agent=coder" in r[0].href for r in rows)


def test_trace_search_finds_the_loop_killed_trace_by_status_or_cost(wh: str) -> None:
    by_status = pagedata.traces(acme(wh), search="killed").tables[0].rows
    assert [r[0].href for r in by_status] == [f"trace?trace_id={LOOP_TRACE}"]
    assert by_status[0][9].text == "killed (loop)"
    assert [r[0].href for r in pagedata.traces(acme(wh), search="loop").tables[0].rows] == [
        f"trace?trace_id={LOOP_TRACE}"
    ]
    by_cost = pagedata.traces(acme(wh), min_cost_usd=Decimal("7")).tables[0].rows
    assert [r[0].href for r in by_cost] == [f"trace?trace_id={LOOP_TRACE}"]
    assert by_cost[0][4].text == "$7.25000"
    assert pagedata.traces(acme(wh), sort="cost").tables[0].rows[0][0].href == f"trace?trace_id={LOOP_TRACE}"
    longest = pagedata.traces(acme(wh), sort="duration").tables[0].rows
    durations = [float(r[5].text.split()[0]) for r in longest]
    assert durations == sorted(durations, reverse=True)
    errors = pagedata.traces(acme(wh), status="error").tables[0].rows
    assert errors and all(r[9].text == "error" for r in errors)  # the killed one is "killed"


def test_trace_page_shows_tokens_inclusive_cost_and_the_kill(wh: str) -> None:
    page = pagedata.trace(acme(wh), LOOP_TRACE)
    spans, commands = page.tables
    root, llm = spans.rows[0], spans.rows[1]
    assert root[0].text == "coder" and root[0].indent == 0 and root[7].text == "error AgentKilled"
    assert root[4].text == "$0.00000" and root[5].text == "$7.25000"  # direct, inclusive
    assert llm[0].indent == 1 and llm[2].text == "openai/gpt-4o"
    assert llm[3].text == "90000 in (30000 cached) · 4000 out (1500 reasoning)"
    assert llm[6].text == "2000 ms"
    assert commands.rows[0][1].text == "kill" and commands.rows[0][2].full == f"trace/acme/{LOOP_TRACE}"
    assert commands.rows[0][4].text == "web_search called 6 times with the same arguments"
    assert 0 in spans.bad
    html = render_page(page)
    assert 'href="/ui/agent?name=coder"' in html


def test_decisions_join_commands_and_alerts_with_cause_latency_and_trace(wh: str) -> None:
    page = pagedata.timeline(acme(wh))
    table = page.tables[0]
    kill = next(r for r in table.rows if r[7].text.startswith("web_search called"))
    assert [c.text for c in kill[1:3]] == ["command", "kill"]
    assert kill[4].text == "120 ms"  # the sixth call at +8 s, the kill at +8.12 s
    assert kill[5].href == f"trace?trace_id={LOOP_TRACE}"
    kinds = {r[1].text for r in table.rows}
    assert kinds == {"command", "alert"}
    assert len(table.rows) == 8  # 5 alerts and 2 commands of the demo, and the kill
    only_coder = pagedata.timeline(acme(wh, agent="coder")).tables[0].rows
    assert {r[3].full or r[3].text for r in only_coder} == {"agent/acme/coder", f"trace/acme/{LOOP_TRACE}"}
    assert len(only_coder) == 4  # the loop kill, the budget kill, its alert, the resume


def test_agent_chain_weighs_calls_by_inclusive_cost(tmp_path: Path) -> None:
    root = str(tmp_path / "wh")
    land_demo_warehouse(root)  # single-agent traces: no edges of their own
    land_agent_chain(root)
    page = pagedata.agent_chain(acme(root))
    sankey = page.figures[0].data[0]
    names = list(sankey.node.customdata)
    edges = {
        (names[s], names[t]): v
        for s, t, v in zip(sankey.link.source, sankey.link.target, sankey.link.value, strict=True)
    }
    assert edges == {("planner", "coder"): 5.5, ("coder", "critic"): 0.5}
    rows = [[c.text for c in r] for r in page.tables[0].rows]
    assert rows == [["planner", "coder", "2", "2", "$5.50000"], ["coder", "critic", "1", "1", "$0.50000"]]
    html = render_page(page, nonce="n0nce")
    assert 'href="/ui/agent?name=critic"' in html  # an agent opens its page
    # a click on a node opens that agent's page: the urls in the Sankey's node order
    assert (
        '<script nonce="n0nce">(function(){var urls=["/ui/agent?name=coder", "/ui/agent?name=critic", '
        in html
    )
    assert "(function(){var urls=" not in render_report([page])  # no server behind a static file
    only_critic = pagedata.agent_chain(acme(root, agent="critic")).tables[0].rows
    assert [[c.text for c in r][:2] for r in only_critic] == [["coder", "critic"]]
    assert (
        pagedata.agent_chain(acme(root, range="custom", start=T0, end=T0 + timedelta(hours=1))).tables[0].rows
        == []
    )


def test_report_command_takes_a_range_and_an_agent(wh: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    def report(*args: str) -> str:
        out = tmp_path / "report.html"
        done = subprocess.run(
            [sys.executable, "-m", "agentledger", "report", "--out", str(out), "--warehouse", wh, *args],
            capture_output=True, text=True, timeout=120, check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AGENTLEDGER_HOME": str(tmp_path)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return out.read_text()

    whole = report()
    five = {"start": LOOP_START, "end": LOOP_START + timedelta(minutes=5)}
    narrow = report("--start", five["start"].isoformat(), "--end", five["end"].isoformat())
    assert f"{LOOP_TRACE[:12]}" in whole and f"{LOOP_TRACE[:12]}" in narrow
    in_five = WarehouseReader(wh).rows(queries.traces, limit=200, **five)
    listed = re.search(r"(\d+) traces, by cost", narrow)
    assert listed is not None and listed.group(1) == str(len(in_five))
    assert len(in_five) < len(WarehouseReader(wh).rows(queries.traces, limit=200))
    assert "from 2026-11-22T14:00:00 to 2026-11-22T14:05:00 UTC" in narrow
    only_critic = report("--agent", "critic")
    assert re.search(r"(\d+) traces, by cost", only_critic).group(1) == str(  # type: ignore[union-attr]
        len(WarehouseReader(wh).rows(queries.traces, tenant=None, agent="critic", limit=200))
    )


def test_new_queries_keep_to_the_callers_tenant(tmp_path: Path) -> None:
    root = str(tmp_path / "wh")
    land_demo_warehouse(root)
    land_loop_trace(root)
    land_agent_chain(root)
    reader = WarehouseReader(root)
    globex = reader.rows(queries.traces, tenant="globex", limit=500)
    assert globex and {r["tenant"] for r in globex} == {"globex"}
    assert LOOP_TRACE not in {r["trace_id"] for r in globex}
    assert reader.rows(queries.traces, tenant="globex", search="killed") == []
    assert reader.rows(queries.trace_spans, trace_id=LOOP_TRACE, tenant="globex") == []
    assert reader.rows(queries.agent_calls, tenant="globex") == []  # the chain is acme's
    assert reader.rows(queries.decisions, tenant="globex") == []  # every demo alert and command is acme's
    assert len(reader.rows(queries.decisions, tenant="acme")) == 8


def test_a_user_or_conversation_filter_keeps_that_users_traces_whole(wh: str) -> None:
    for view in ({"user": LOOP_USER}, {"conversation": LOOP_CONVERSATION}):
        rows = pagedata.traces(acme(wh, **view)).tables[0].rows
        assert [r[0].href for r in rows] == [f"trace?{urlencode(view)}&trace_id={LOOP_TRACE}"]
        assert (rows[0][4].text, rows[0][10].text, rows[0][11].text) == (
            "$7.25000",
            LOOP_USER,
            LOOP_CONVERSATION,
        )
        # the whole trace: its usage event carries no attributes, its cost still counts
        top = pagedata.overview(acme(wh, **view)).figures[1]
        assert list(top.data[0].y) == ["coder"] and bar_total(top) == pytest.approx(7.25)
    assert pagedata.traces(acme(wh, user="nobody")).tables[0].rows == []


def test_trace_search_finds_a_trace_by_its_user_or_conversation(wh: str) -> None:
    for term in (LOOP_USER, LOOP_CONVERSATION):
        rows = pagedata.traces(acme(wh), search=term).tables[0].rows
        assert [r[0].href for r in rows] == [f"trace?trace_id={LOOP_TRACE}"]


def test_user_and_conversation_ride_in_the_url_and_the_form(wh: str) -> None:
    page = pagedata.overview(acme(wh, user=LOOP_USER, conversation=LOOP_CONVERSATION))
    html = render_page(page)
    assert f'href="/ui/traces?user={LOOP_USER}&amp;conversation={LOOP_CONVERSATION}"' in html
    assert f'name="user" value="{LOOP_USER}"' in html
    assert f'name="conversation" value="{LOOP_CONVERSATION}"' in html


def test_agent_page_compares_versions_with_the_canary_verdict_and_when_it_came(wh: str) -> None:
    page = pagedata.agent(acme(wh), "planner")
    (table,) = page.tables
    assert table.title == "Canary comparison: planner"
    rows = {r[0].text: r for r in table.rows}
    assert set(rows) == {"v1", "v2"}
    reader = WarehouseReader(wh)
    spend = reader.rows(queries.costs, group_by=["agent_version"], agent="planner", tenant="acme")
    for version, row in rows.items():
        traces = reader.rows(
            queries.traces, agent="planner", agent_version=version, tenant="acme", limit=1000
        )
        cost = next(float(r["cost_usd"]) for r in spend if r["agent_version"] == version)
        assert int(row[1].text) == len(traces)
        assert float(row[2].text.lstrip("$")) == pytest.approx(cost / len(traces), abs=1e-5)
        scores = reader.rows(queries.quality_series, agent="planner", metric="faithfulness", tenant="acme")
        mine = [r for r in scores if r["agent_version"] == version]
        mean = sum(r["score"] * r["n"] for r in mine) / sum(r["n"] for r in mine)
        assert float(row[4].text) == pytest.approx(mean, abs=1e-3)
    canary = reader.rows(queries.alerts, rule="canary.verdict", tenant="acme")[0]
    assert (rows["v2"][5].text, rows["v2"][6].text) == ("rollback", canary["ts"][:19])
    assert rows["v2"][7].text == canary["summary"]
    assert rows["v1"][5].text == ""  # the baseline got no verdict of its own
    assert "Canary comparison: planner" in render_report([page])  # the report carries it too


def test_a_rollback_verdict_shows_the_command_it_issued(tmp_path: Path) -> None:
    from agentledger.events import (
        Action,
        AlertEvent,
        AlertState,
        CommandParams,
        ControlCommand,
        Scope,
        ScopeKind,
        Severity,
    )
    from agentledger.warehouse.rows import ModelBuffer
    from agentledger.warehouse.storage import Store, split_by_day
    from agentledger.wire import dump

    root = str(tmp_path / "wh")
    land_demo_warehouse(root)
    at = T0 + timedelta(hours=40)
    why = "canary coder@v2 vs v1: rollback (cost per task 0.0300 vs 0.0100 USD (p=0.001))"
    cmd = ControlCommand(command_id="canary-cmd", ts=at, scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent="coder"),
                         action=Action.ROLLBACK, reason=why, params=CommandParams(target_version="v1"))  # fmt: skip
    alert = AlertEvent(alert_id="canary-alert", dedup_key="canary.verdict:acme/coder@v2", ts=at, rule="canary.verdict",
                       entity="acme/coder@v2", tenant="acme", state=AlertState.ALERT, severity=Severity.ERROR,
                       summary=why, figures={"verdict": "rollback"}, command_id="canary-cmd")  # fmt: skip
    for dataset, model in (("commands", cmd), ("alerts", alert)):
        buffer = ModelBuffer(dataset)
        buffer.add_record(dump(model), 0, 0)
        for day, part in split_by_day(buffer.to_table()):
            Store(root).write(dataset, day, f"canary-{dataset}", part)
    (table,) = pagedata.agent(acme(root), "coder").tables
    v2 = next(r for r in table.rows if r[0].text == "v2")
    assert (v2[5].text, v2[6].text) == ("rollback", at.isoformat()[:19])
    assert v2[7].text == f"{why} · rollback issued {at.isoformat()[:19]}"
    assert table.bad == {table.rows.index(v2)}  # the rolled-back version is flagged
