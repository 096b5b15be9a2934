"""Names are data, never markup: a model or agent name holding HTML shows as text in every
figure, page and report (plotly.js would turn ``<a href>`` in a label into a live link)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from agentledger.dashboards import figures, pagedata
from agentledger.dashboards.pages import Page, render_page, render_report
from agentledger.events import SpanEvent, UsageEvent
from agentledger.warehouse.landing import land_priced
from agentledger.warehouse.reader import WarehouseReader
from agentledger.warehouse.storage import Store
from agentledger.warehouse.synthetic import priced_events

EVIL = '<a href="https://evil.example/phish">click</a>'
SHOWN = '&lt;a href="https://evil.example/phish"&gt;click&lt;/a&gt;'  # plotly draws it as plain text


def land_hostile_names(root: str) -> None:
    """A few traces whose model and agent names are HTML (as a hostile ingest key could send)."""
    out = []
    for p in priced_events(6, seed=3):
        update: dict[str, Any] = {"agent": EVIL}
        if isinstance(p.event, UsageEvent | SpanEvent) and p.event.model:
            update["model"] = EVIL
        out.append(p.model_copy(update={"event": p.event.model_copy(update=update)}))
    land_priced(Store(root), out, "hostile")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings(v)


def assert_inert(fig: go.Figure) -> None:
    texts = list(strings(fig.to_plotly_json()))
    assert any(SHOWN in t for t in texts), texts  # the name is still shown...
    assert not any("<a" in t or "</" in t for t in texts), texts  # ...but never as markup


def test_every_figure_escapes_the_text_it_is_given() -> None:
    ts = "2026-01-01T10:00:00+00:00"
    assert_inert(figures.spend_by_agent_over_time([{"bucket": ts, "agent": EVIL, "cost_usd": "1"}]))
    assert_inert(figures.top_agents([{"agent": EVIL, "cost_usd": "1"}]))
    assert_inert(figures.budget_burn([{"policy_id": EVIL, "scope_key": EVIL, "spend": 1, "limit": 2}]))
    assert_inert(
        figures.quality_with_drift([{"bucket": ts, "metric": EVIL, "agent_version": EVIL, "score": 1}])
    )
    assert_inert(
        figures.versions_table([{"agent_version": EVIL, "verdict": EVIL, "cost_usd": 1, "events": 1}])
    )
    span = {"span_id": "a" * 16, "name": EVIL, "start": ts, "end": "2026-01-01T10:00:01+00:00"}
    assert_inert(figures.trace_waterfall([span]))
    assert_inert(figures.provider_health([{"provider": EVIL, "model": EVIL, "calls": 3, "circuit": EVIL}]))
    alert = {"ts": ts, "rule": EVIL, "entity": EVIL, "state": EVIL, "summary": EVIL}
    command = {"ts": ts, "action": EVIL, "scope_key": EVIL, "issued_by": EVIL, "reason": EVIL}
    assert_inert(figures.alerts_commands_timeline([alert], [command]))


def test_label_escapes_markup_once_and_keeps_plain_names() -> None:
    assert figures.label("planner") == "planner"
    assert figures.label("a & b <i>") == "a &amp; b &lt;i&gt;"
    assert figures.label(None) == "?" and figures.label("", "-") == "-"
    assert figures.label('say "hi"') == 'say "hi"'  # plotly shows &quot; literally: quotes stay


def test_providers_page_and_report_from_a_hostile_warehouse(tmp_path: Path) -> None:
    land_hostile_names(str(tmp_path / "wh"))
    src = pagedata.Sources(WarehouseReader(str(tmp_path / "wh")), "acme")
    providers = pagedata.providers(src)
    assert_inert(providers.figures[0])
    page = render_page(providers)
    assert "evil.example" in page and '<a href="https://evil' not in page
    report = render_report(pagedata.all_pages(src))
    assert "evil.example" in report and '<a href="https://evil' not in report
    # Names shown as page text (notes and links) are escaped as HTML too.
    agent = pagedata.agent(src)
    assert agent.links and '<a href="https://evil' not in render_page(agent)
    assert '<a href="https://evil' not in render_page(Page("x", "x", notes=[EVIL]))


def test_report_command_writes_no_link_from_data(tmp_path: Path) -> None:
    land_hostile_names(str(tmp_path / "wh"))
    out = tmp_path / "report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentledger",
            "report",
            "--out",
            str(out),
            "--warehouse",
            str(tmp_path / "wh"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AGENTLEDGER_HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    # plotly writes "/" as \u002f inside its JSON
    assert '&lt;a href=\\"https:\\u002f\\u002fevil.example' in text
    assert '<a href="https://evil' not in text and '<a href=\\"https:' not in text


def test_table_cells_and_form_values_hold_names_as_text() -> None:
    from agentledger.dashboards.pages import Cell, Control, Page, Table, render_page

    evil = '<a href="https://evil.example">x</a>"'
    page = Page(
        "traces",
        "Traces",
        controls=[Control("agent", "agent", evil, [(evil, evil)]), Control("q", "search", evil)],
        tables=[Table("t", ["name"], [[Cell(evil, href=f"agent?name={evil}", full=evil)]])],
    )
    html = render_page(page)
    assert "evil.example" in html and re.findall(r"<a\b[^>]*href=\"https://evil", html) == []
    assert '"https://evil.example"' not in html  # no attribute can be closed early
