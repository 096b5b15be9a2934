"""Pure figure functions: the numbers drawn are the numbers given."""

from __future__ import annotations

from datetime import datetime

from agentledger.dashboards import figures
from agentledger.dashboards.pages import NAV, Page, render_page, render_report

COSTS = [
    {"bucket": "2026-11-24T10:00:00+00:00", "agent": "planner", "cost_usd": "1.250000000000"},
    {"bucket": "2026-11-24T11:00:00+00:00", "agent": "planner", "cost_usd": "0.500000000000"},
    {"bucket": "2026-11-24T10:00:00+00:00", "agent": "coder", "cost_usd": "3.000000000000"},
]


def test_spend_by_agent_over_time_stacks_one_trace_per_agent() -> None:
    fig = figures.spend_by_agent_over_time(COSTS)
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"planner", "coder"}
    assert list(by_name["planner"].y) == [1.25, 0.5]
    assert by_name["planner"].x[0] == datetime(2026, 11, 24, 10)  # naive UTC for plotly.js
    assert fig.layout.barmode == "stack"


def test_top_agents_orders_by_total_spend() -> None:
    fig = figures.top_agents(COSTS)
    assert list(fig.data[0].y) == ["planner", "coder"]  # drawn bottom-up: biggest last
    assert list(fig.data[0].x) == [1.75, 3.0]


def test_budget_burn_shows_percent_state_and_exhaustion() -> None:
    fig = figures.budget_burn(
        [
            {"policy_id": "daily", "scope_key": "agent/acme/planner", "spend": "80", "limit": "100",
             "state": "warn", "projected_exhaustion": "2026-11-24T18:00:00Z"},
        ]
    )  # fmt: skip
    bar = fig.data[0]
    assert list(bar.x) == [80.0]
    assert bar.marker.color[0] == figures.STATE_COLOURS["warn"]
    assert "exhausts Nov 24 18:00 UTC" in bar.text[0]


def test_trace_waterfall_offsets_widths_and_costs() -> None:
    spans = [
        {"span_id": "a" * 16, "parent_span_id": None, "name": "agent", "start": "2026-11-24T10:00:00+00:00",
         "end": "2026-11-24T10:00:02+00:00", "direct_cost_usd": "0", "inclusive_cost_usd": "0.3"},
        {"span_id": "b" * 16, "parent_span_id": "a" * 16, "name": "chat", "start": "2026-11-24T10:00:00.500+00:00",
         "end": "2026-11-24T10:00:01+00:00", "direct_cost_usd": "0.3", "inclusive_cost_usd": "0.3"},
    ]  # fmt: skip
    fig = figures.trace_waterfall(spans)
    bar = fig.data[0]
    assert list(bar.base) == [0.0, 500.0] and list(bar.x) == [2000.0, 500.0]
    assert bar.y[1].startswith("· chat")  # indented under its parent
    assert [(a.y, a.text) for a in fig.layout.annotations][1] == (bar.y[1], "0.3 · 0.3")
    assert len(fig.data) == 1  # no span too short to see: no marks


def test_waterfall_marks_zero_length_spans_and_keeps_cost_labels_off_the_bars() -> None:
    at = "2026-11-24T10:00:0{}+00:00"
    spans = [
        {"span_id": "a" * 16, "parent_span_id": None, "name": "agent", "start": at.format(0), "end": at.format(9),
         "direct_cost_usd": "0", "inclusive_cost_usd": "0.3"},
        *[{"span_id": f"{i:016x}", "parent_span_id": "a" * 16, "tool": "web_search", "start": at.format(i),
           "end": at.format(i), "direct_cost_usd": "0", "inclusive_cost_usd": "0"} for i in range(3, 6)],
        *[{"span_id": "c" * 16, "parent_span_id": "a" * 16, "name": "same", "start": at.format(6), "end": at.format(7),
           "direct_cost_usd": "0", "inclusive_cost_usd": "0"} for _ in range(2)],  # ids repeated: still two rows
        {"span_id": "b" * 16, "parent_span_id": "a" * 16, "name": "chat", "start": at.format(1),
         "end": at.format(3), "direct_cost_usd": "0.3", "inclusive_cost_usd": "0.3"},
    ]  # fmt: skip
    fig = figures.trace_waterfall(spans)
    bar, marks = fig.data
    assert marks.name == "zero-length span" and marks.mode == "markers"
    assert list(marks.x) == [3000.0, 4000.0, 5000.0]  # one mark at each instant, on its own row
    assert [y.split(" [")[0] for y in marks.y] == ["· tool web_search"] * 3 and len(set(marks.y)) == 3
    assert all(w > 0 for w in bar.x)  # a sliver on the axis as well
    assert bar.text is None  # no label inside or beside a bar...
    notes = fig.layout.annotations  # ...but one cost per row, in a column right of the time axis
    assert [a.y for a in notes] == list(bar.y) and len(set(bar.y)) == len(bar.y)
    assert all(a.xref == "paper" and a.xanchor == "left" and a.x > fig.layout.xaxis.domain[1] for a in notes)


def test_quality_provider_timeline_and_versions() -> None:
    q = figures.quality_with_drift(
        [{"bucket": "2026-11-24T10:00:00+00:00", "agent_version": "v1", "score": 0.9, "metric": "f"}],
        [{"ts": "2026-11-24T10:30:00+00:00", "summary": "drift"}],
    )
    assert q.data[0].name == "f v1" and list(q.data[0].y) == [0.9] and len(q.layout.shapes) == 1
    p = figures.provider_health(
        [
            {"provider": "openai", "model": "gpt-4o", "calls": 10, "errors": 5, "circuit": "open"},
            {"provider": None},
        ]
    )
    assert list(p.data[0].y) == [10.0] and "50.0% errors" in p.data[0].text[0]
    assert p.data[0].marker.color[0] == figures.STATE_COLOURS["open"]
    t = figures.alerts_commands_timeline(
        [{"ts": "2026-11-24T10:00:00Z", "rule": "budget", "state": "alert", "summary": "s", "entity": "e"}],
        [
            {
                "ts": "2026-11-24T10:00:01Z",
                "action": "kill",
                "scope_key": "agent/acme/x",
                "issued_by": "key:ops",
            }
        ],
    )
    assert list(t.data[0].y) == ["budget"] and list(t.data[1].y) == ["cmd:kill"]
    v = figures.versions_table(
        [{"agent_version": "v2", "cost_usd": "1.5", "events": 3, "verdict": "promote"}]
    )
    assert list(v.data[0].cells.values[3]) == ["promote"]


def test_empty_inputs_draw_a_message_not_an_error() -> None:
    for fig in (figures.top_agents([]), figures.trace_waterfall([]), figures.budget_burn([])):
        assert fig.layout.annotations and fig.layout.annotations[0].text


def test_pages_use_the_local_plotly_bundle_and_are_phone_friendly() -> None:
    page = Page("overview", "Overview", [figures.top_agents(COSTS)], ["note <b>"])
    html = render_page(page)
    assert '<script src="/ui/plotly.min.js">' in html and "cdn" not in html.lower()
    assert 'name="viewport"' in html and "note &lt;b&gt;" in html
    assert all(f"/ui/{slug}" in html for slug, _ in NAV)
    report = render_report([page])
    assert "<script src=" not in report and len(report) > 1_000_000  # plotly.js inlined, no fetch


def test_agent_chain_with_no_edges_draws_no_sankey() -> None:
    # plotly.js throws "Invalid array length" on a Sankey with no nodes: the empty chart has none
    fig = figures.agent_chain([])
    assert fig.data == () and fig.layout.annotations[0].text == "no agent called another in this view"
