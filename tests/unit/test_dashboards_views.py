"""Pages under a view (time range and filters from the URL), the traces list and the trace
and decisions pages, on a demo warehouse plus one runaway trace the loop detector killed."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from agentledger.api import pagedata
from agentledger.api.testing import land_demo_warehouse
from agentledger.api.warehouse import WarehouseReader
from agentledger.dashboards.pages import render_page
from agentledger.events import (
    Action,
    CommandParams,
    ControlCommand,
    PricedEvent,
    Scope,
    ScopeKind,
    SpanEvent,
    SpanKind,
    SpanStatus,
    ToolCallEvent,
    UsageEvent,
)
from agentledger.warehouse.synthetic import T0

LOOP_TRACE = "7" * 31 + "a"
ROOT, LLM = "1" * 15 + "a", "2" * 15 + "b"
LOOP_START = T0 + timedelta(hours=40)
CAUSE = "loop-call-5"


def land_loop_trace(root: str) -> None:
    """A ``coder`` trace that called the same tool six times and was killed 120 ms after the
    sixth call: one costly LLM call (cached and reasoning tokens) and the kill command."""
    from agentledger.warehouse.landing import land_priced
    from agentledger.warehouse.rows import ModelBuffer
    from agentledger.warehouse.storage import Store, split_by_day
    from agentledger.wire import dump

    common = {"tenant": "acme", "agent": "coder", "agent_version": "v2", "trace_id": LOOP_TRACE}
    t = LOOP_START
    events = [
        PricedEvent(event=e, cost_usd=c, priced=True, price_source="test")
        for e, c in [
            (
                SpanEvent(
                    event_id="loop-llm",
                    ts=t + timedelta(seconds=2),
                    span_id=LLM,
                    parent_span_id=ROOT,
                    name="chat gpt-4o",
                    kind=SpanKind.LLM,
                    start=t,
                    end=t + timedelta(seconds=2),
                    provider="openai",
                    model="gpt-4o",
                    **common,
                ),
                Decimal(0),
            ),
            (
                UsageEvent(
                    event_id="loop-usage",
                    ts=t + timedelta(seconds=2),
                    span_id=LLM,
                    parent_span_id=ROOT,
                    provider="openai",
                    model="gpt-4o",
                    input_tokens=90_000,
                    output_tokens=4_000,
                    cache_read_tokens=30_000,
                    reasoning_tokens=1_500,
                    **common,
                ),
                Decimal("7.25"),
            ),
            *[
                (
                    ToolCallEvent(
                        event_id=f"loop-call-{i}",
                        ts=t + timedelta(seconds=3 + i),
                        span_id=f"{i + 3:016x}",
                        parent_span_id=ROOT,
                        tool="web_search",
                        args_hash="ab" * 8,
                        **common,
                    ),
                    Decimal(0),
                )
                for i in range(6)
            ],
            (
                SpanEvent(
                    event_id="loop-root",
                    ts=t + timedelta(seconds=9),
                    span_id=ROOT,
                    name="coder",
                    kind=SpanKind.AGENT,
                    start=t,
                    end=t + timedelta(seconds=9),
                    status=SpanStatus.ERROR,
                    error_type="AgentKilled",
                    **common,
                ),
                Decimal(0),
            ),
        ]
    ]
    store = Store(root)
    land_priced(store, events, "loop-events")
    kill = ControlCommand(
        command_id="loop-kill-0",
        ts=t + timedelta(seconds=8, milliseconds=120),
        scope=Scope(kind=ScopeKind.TRACE, tenant="acme", agent="coder", trace_id=LOOP_TRACE),
        action=Action.KILL,
        reason="web_search called 6 times with the same arguments",
        params=CommandParams(kill_reason="loop"),
        cause_event_id=CAUSE,
    )
    buffer = ModelBuffer("commands")
    buffer.add_record(dump(kill), 0, 100)
    for day, part in split_by_day(buffer.to_table()):
        store.write("commands", day, "loop-commands", part)


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
    spent = {r["agent"]: float(r["cost_usd"]) for r in WarehouseReader(wh).rows("costs", tenant="acme")}
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
    rows = src.rows("traces", **src.scope())
    assert LOOP_TRACE in {r["trace_id"] for r in rows}
    src.now = LOOP_START - timedelta(hours=2)  # an hour that ends before the loop
    assert LOOP_TRACE not in {r["trace_id"] for r in src.rows("traces", **src.scope())}


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
    assert [c.text for c in commands.rows[0][1:3]] == ["kill", f"trace/acme/{LOOP_TRACE}"]
    assert 0 in spans.bad
    html = render_page(page)
    assert 'href="/ui/agent?name=coder"' in html


def test_decisions_join_commands_and_alerts_with_cause_latency_and_trace(wh: str) -> None:
    page = pagedata.timeline(acme(wh))
    table = page.tables[0]
    kill = next(r for r in table.rows if r[4].text.startswith("web_search called"))
    assert [c.text for c in kill[1:3]] == ["command", "kill"]
    assert kill[5].text == "120 ms"  # the sixth call at +8 s, the kill at +8.12 s
    assert kill[7].href == f"trace?trace_id={LOOP_TRACE}"
    kinds = {r[1].text for r in table.rows}
    assert kinds == {"command", "alert"}
    assert len(table.rows) == 8  # 5 alerts and 2 commands of the demo, and the kill
    only_coder = pagedata.timeline(acme(wh, agent="coder")).tables[0].rows
    assert {r[3].text for r in only_coder} == {"agent/acme/coder", f"trace/acme/{LOOP_TRACE}"}
    assert len(only_coder) == 4  # the loop kill, the budget kill, its alert, the resume
