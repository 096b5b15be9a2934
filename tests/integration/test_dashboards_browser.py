"""Headless Chromium (Debian's ``chromium``) loads every dashboard page with data: charts
drawn, no console message at all (errors included), screenshots kept in artifacts/."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from _hostile import land_hostile_names
from aiokafka import AIOKafkaProducer
from dashboard_data import (
    LOOP_CONVERSATION,
    LOOP_TRACE,
    LOOP_USER,
    land_agent_chain,
    land_loop_trace,
    land_recent_spend,
)

from agentledger.admin import create_topics
from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.keys import split_token
from agentledger.api.sessions import DashboardSignIn
from agentledger.api.testing import ApiServer, land_demo_warehouse, standard_keys
from agentledger.dashboards.pagedata import Sources, all_pages
from agentledger.dashboards.pages import render_report
from agentledger.events import BudgetState, BudgetStatus, LimitUnit, Window
from agentledger.settings import Settings
from agentledger.warehouse import queries
from agentledger.warehouse.reader import WarehouseReader
from agentledger.wire import dump

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    # a developer without Chromium skips; CI (CI=true) must run them: `make setup` installs it
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium: apt-get install -y chromium",
    ),
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=4000"]  # fmt: skip
PAGES = {"overview": 3, "agent": 4, "trace": 1, "traces": 0, "agents": 1, "providers": 2, "timeline": 1}


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@dataclass
class Running:
    url: str
    key: str
    sign_in: DashboardSignIn
    warehouse: str

    def link(self, target: str) -> str:
        """A one-time sign-in link to ``target`` (Chromium cannot fill in the form)."""
        parts = split_token(self.key)
        assert parts is not None
        token = self.sign_in.store.issue_link(parts[0], ttl_s=120)
        return f"{self.url}/ui/link?token={token}&next={target}"

    def view(self, page: str, **query: str) -> str:
        """A sign-in link that lands on ``page`` with ``query`` in its URL."""
        return self.link(quote(f"/ui/{page}?{urlencode(query)}", safe=""))


async def _budgets(bootstrap: str, topic: str) -> None:
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for agent, spend, state in (("planner", "4", BudgetState.OK), ("coder", "9.5", BudgetState.WARN)):
            status = BudgetStatus(policy_id="daily", scope_key=f"agent/acme/{agent}", window=Window.DAY,
                                  window_start=now, spend=Decimal(spend), limit=Decimal(10), unit=LimitUnit.USD,
                                  state=state, updated_at=now, projected_exhaustion=now + timedelta(hours=3))  # fmt: skip
            await producer.send_and_wait(topic, dump(status), key=f"daily|{status.scope_key}".encode())
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("ui")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    asyncio.run(_budgets(kafka_bootstrap, prefix + "agentledger.budgets.v1"))
    land_demo_warehouse(str(home / "wh"))
    land_hostile_names(str(home / "wh"))
    land_loop_trace(str(home / "wh"))
    land_agent_chain(str(home / "wh"))
    land_recent_spend(str(home / "wh"), datetime.now(UTC))  # coder: $1 in the last hour
    keys = standard_keys(home / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, home=home),
        ApiSettings(keys_path=home / "keys.sqlite"),
        warehouse=WarehouseReader(str(home / "wh")),
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with ApiServer(app) as url:
        yield Running(url, keys["acme_read"], app.state.sign_in, str(home / "wh"))


@pytest.mark.parametrize("page", list(PAGES))
def test_page_draws_its_charts_without_console_messages(api: Running, page: str, tmp_path: Path) -> None:
    target = "/ui/agent%3Fname%3Dplanner" if page == "agent" else f"/ui/{page}"  # the demo's drifting agent
    dom = chromium(api.link(target), tmp_path / "p1", "--dump-dom", "--window-size=1280,1600")
    assert dom.returncode == 0, dom.stderr[-2000:]
    drawn = len(re.findall(r'<div[^>]*class="[^"]*js-plotly-plot', dom.stdout))
    assert drawn == PAGES[page], dom.stdout[:2000]
    assert dom.stdout.count('class="main-svg"') >= PAGES[page]
    assert "no spend" not in dom.stdout and "no spans" not in dom.stdout  # the data reached the charts
    assert console_lines(dom.stderr) == []
    if PAGES[page] > 1:  # two columns at 1280 px: no chart drawn wider than its card (then cut)
        widths = [float(w) for w in re.findall(r'<svg class="main-svg"[^>]*width="([\d.]+)"', dom.stdout)]
        assert widths and max(widths) < 1280 / 2, widths
    shot = SCREENSHOTS / f"{page}.png"
    result = chromium(api.link(target), tmp_path / "p2", f"--screenshot={shot}", "--window-size=1280,1600")
    assert result.returncode == 0 and shot.stat().st_size > 10_000


def test_a_name_holding_a_link_is_drawn_as_text(api: Running, tmp_path: Path) -> None:
    # plotly.js draws <a href> in a label as a live link: the name must arrive escaped
    dom = chromium(api.link("/ui/providers"), tmp_path / "p", "--dump-dom")
    assert dom.returncode == 0 and dom.stdout.count('class="main-svg"') >= 1
    assert '&lt;a href="https://evi' in dom.stdout  # the name is on the page, as text (shortened)
    assert re.findall(r"<a\b[^>]*evil\.example", dom.stdout) == []


def test_overview_stacks_into_one_column_on_a_narrow_screen(api: Running, tmp_path: Path) -> None:
    # Headless Chromium will not make a window narrower than about 500 px; 560 px is enough to
    # show the layout switching to one column of full-width, resized charts.
    shot = SCREENSHOTS / "overview-narrow.png"
    result = chromium(
        api.link("/ui/overview"), tmp_path / "p", f"--screenshot={shot}", "--window-size=560,1600"
    )
    assert result.returncode == 0 and shot.stat().st_size > 10_000
    dom = chromium(api.link("/ui/overview"), tmp_path / "p2", "--dump-dom", "--window-size=560,1600")
    widths = {float(w) for w in re.findall(r'<svg class="main-svg"[^>]*width="([\d.]+)"', dom.stdout)}
    assert len(widths) == 1 and 400 < widths.pop() <= 560  # one column, no sideways scrolling


def test_static_report_opens_from_a_file_with_no_server(tmp_path: Path) -> None:
    land_demo_warehouse(str(tmp_path / "wh"))
    report = tmp_path / "report.html"
    report.write_text(render_report(all_pages(Sources(WarehouseReader(str(tmp_path / "wh")), "acme"))))
    dom = chromium(report.as_uri(), tmp_path / "p", "--dump-dom")
    assert len(re.findall(r'<div[^>]*class="[^"]*js-plotly-plot', dom.stdout)) == sum(PAGES.values())
    assert console_lines(dom.stderr) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    chromium(
        report.as_uri(),
        tmp_path / "p2",
        f"--screenshot={SCREENSHOTS / 'report.png'}",
        "--window-size=1280,4000",
    )


def test_the_range_and_filters_in_the_url_change_what_is_shown(api: Running, tmp_path: Path) -> None:
    reader = WarehouseReader(api.warehouse)
    first = min(datetime.fromisoformat(r["first_ts"]) for r in reader.rows(queries.agents, tenant="acme"))
    start, end = first.replace(minute=0, second=0, microsecond=0), first + timedelta(hours=12)
    views = {
        "all": {},
        "range": {"range": "custom", "start": start.strftime("%Y-%m-%dT%H:%M:%S"),
                  "end": end.strftime("%Y-%m-%dT%H:%M:%S")},
        "agent": {"agent": "planner"},
        "search": {"q": "killed"},
        "user": {"user": LOOP_USER},
        "conversation": {"conversation": LOOP_CONVERSATION},
        "search-conversation": {"q": LOOP_CONVERSATION},
    }  # fmt: skip
    expected = {
        "all": reader.rows(queries.traces, tenant="acme", limit=200),
        "range": reader.rows(queries.traces, tenant="acme", start=start, end=end, limit=200),
        "agent": reader.rows(queries.traces, tenant="acme", agent="planner", limit=200),
        "search": reader.rows(queries.traces, tenant="acme", search="killed", limit=200),
        "user": reader.rows(queries.traces, tenant="acme", user=LOOP_USER, limit=200),
        "conversation": reader.rows(queries.traces, tenant="acme", conversation=LOOP_CONVERSATION, limit=200),
        "search-conversation": reader.rows(
            queries.traces, tenant="acme", search=LOOP_CONVERSATION, limit=200
        ),
    }
    for name in ("search", "user", "conversation", "search-conversation"):
        assert [r["trace_id"] for r in expected[name]] == [LOOP_TRACE], name
    assert len(expected["all"]) > len(expected["range"]) > 0 and len(expected["agent"]) > 0
    for name, query in views.items():
        dom = chromium(api.view("traces", **query), tmp_path / name, "--dump-dom")
        assert dom.returncode == 0 and console_lines(dom.stderr) == []
        listed = re.findall(r'href="/ui/trace\?[^"]*trace_id=([0-9a-f]{32})', dom.stdout)
        assert listed == [r["trace_id"] for r in expected[name]], name  # costliest first
        assert f"{len(expected[name])} traces, by cost" in dom.stdout
        for key, value in query.items():  # the form shows the view it came from
            assert f'name="{key}" value="{value}"' in dom.stdout or f'value="{value}" selected' in dom.stdout


def test_screenshots_of_every_page_at_1400_px(
    api: Running, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)
    for page in PAGES:
        shot = shots / f"{page}-1400.png"
        result = chromium(
            api.link(f"/ui/{page}"), tmp_path / page, f"--screenshot={shot}", "--window-size=1400,1800"
        )
        assert result.returncode == 0 and shot.stat().st_size > 10_000, result.stderr[-1000:]
    print(f"screenshots: {shots}")


def test_every_page_at_390_px_fits_the_phone_width(
    api: Running, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    # Headless Chromium lays a window out no narrower than 500 px, and the served pages refuse
    # to be framed (X-Frame-Options DENY), so each page is built from the same data and
    # framed at 390 px from a file; a script then reads how wide each page's content is.
    from agentledger.dashboards import pagedata
    from agentledger.dashboards.pages import plotly_js, render_page

    site = tmp_path / "site"
    site.mkdir()
    (site / "plotly.min.js").write_text(plotly_js())
    src = Sources(WarehouseReader(api.warehouse), "acme")
    builds = {"overview": pagedata.overview, "agent": pagedata.agent, "trace": pagedata.trace,
              "traces": pagedata.traces, "agents": pagedata.agent_chain, "providers": pagedata.providers,
              "timeline": pagedata.timeline}  # fmt: skip
    assert set(builds) == set(PAGES)
    for name, build in builds.items():
        (site / f"{name}.html").write_text(render_page(build(src), base=site.as_uri()))
    frames = "".join(
        f'<iframe id="{name}" src="{name}.html" style="width:390px;height:1800px;border:0;display:block"></iframe>'
        for name in PAGES
    )
    # ... and how many titles and legends a chart's mode bar (its zoom/download buttons) covers
    # while shown: compared as bounding boxes, inside each chart
    measure = (
        "<script>function hit(a,b){return a.width>0&&a.height>0&&b.width>0&&b.height>0&&"
        "a.left<b.right&&b.left<a.right&&a.top<b.bottom&&b.top<a.bottom;}"
        # every frame's charts drawn first (seven copies of plotly.js take seconds on a busy machine)
        f"var want={json.dumps(PAGES)},t0=Date.now();function drawn(f){{return f.contentDocument&&"
        "f.contentDocument.querySelectorAll('.main-svg').length>=want[f.id];}"
        "function go(){var fs=[].slice.call(document.querySelectorAll('iframe'));"
        "if(!fs.every(drawn)&&Date.now()-t0<30000){setTimeout(go,200);return;}"
        "fs.forEach(function(f){"
        "var doc=f.contentDocument,d=doc.documentElement,covered=0,bars=0;"
        "doc.querySelectorAll('.js-plotly-plot').forEach(function(p){"
        "p.querySelectorAll('.modebar-container').forEach(function(m){"
        "if(f.contentWindow.getComputedStyle(m).display==='none')return;bars++;"
        "var mb=m.querySelector('.modebar')||m;mb.style.opacity='1';var r=mb.getBoundingClientRect();"
        "p.querySelectorAll('.gtitle,.legend').forEach(function(t){if(hit(r,t.getBoundingClientRect()))covered++;});"
        "});});"
        "document.body.setAttribute('data-'+f.id,"
        "d.scrollWidth+'/'+doc.querySelectorAll('.main-svg').length+'/'+bars+'/'+covered);});}"
        "setTimeout(go,500);</script>"
    )
    (site / "phone.html").write_text(f'<!doctype html><body style="margin:0">{frames}{measure}</body>')
    flags = ("--allow-file-access-from-files", "--window-size=500,1800")
    dom = chromium(
        (site / "phone.html").as_uri(), tmp_path / "p", "--dump-dom", "--virtual-time-budget=40000", *flags
    )
    assert dom.returncode == 0, dom.stderr[-1000:]
    for name in PAGES:
        found = re.search(rf'data-{name}="(\d+)/(\d+)/(\d+)/(\d+)"', dom.stdout)
        width, drawn, bars, covered = map(int, found.groups())  # type: ignore[union-attr]
        assert width <= 390, (name, width)  # nothing wider than the phone: no sideways scrolling
        assert drawn >= PAGES[name], name  # the charts were drawn at that width
        assert covered == 0, (name, bars, covered)  # no mode bar over a title or a legend
    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)
    for name in PAGES:
        one = site / f"phone-{name}.html"
        one.write_text(f'<!doctype html><body style="margin:0"><iframe src="{name}.html" '
                       'style="width:390px;height:1800px;border:0"></iframe></body>')  # fmt: skip
        shot = shots / f"{name}-390.png"
        result = chromium(one.as_uri(), tmp_path / name, f"--screenshot={shot}", *flags)
        assert result.returncode == 0 and shot.stat().st_size > 10_000, result.stderr[-1000:]
    print(f"screenshots: {shots}")


def test_report_at_phone_width(
    api: Running, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    # A page in a 390 px frame is laid out at 390 px (the API's pages refuse to be framed:
    # X-Frame-Options DENY; the static report has the same layout and opens from a file).
    report = tmp_path / "report.html"
    report.write_text(render_report(all_pages(Sources(WarehouseReader(api.warehouse), "acme"))))
    frame = tmp_path / "phone.html"
    frame.write_text(
        '<!doctype html><body style="margin:0"><iframe src="report.html" '
        'style="width:390px;height:6000px;border:0"></iframe></body>'
    )
    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)
    shot = shots / "report-390.png"
    result = chromium(frame.as_uri(), tmp_path / "p", f"--screenshot={shot}", "--window-size=500,6000")
    assert result.returncode == 0 and shot.stat().st_size > 10_000, result.stderr[-1000:]
    print(f"screenshots: {shots}")


def test_a_click_on_an_agent_in_the_chain_opens_its_page(tmp_path: Path) -> None:
    # The page as a file (no CSP there), plotly.js beside it, and a stand-in agent page (a
    # file, so the query is not shown: which url each node opens is a unit test); a script
    # clicks the first node of the Sankey.
    from dashboard_data import land_agent_chain

    from agentledger.dashboards import pagedata
    from agentledger.dashboards.pages import plotly_js, render_page

    land_demo_warehouse(str(tmp_path / "wh"))
    land_agent_chain(str(tmp_path / "wh"))
    site = tmp_path / "site"
    site.mkdir()
    (site / "plotly.min.js").write_text(plotly_js())
    (site / "agent").write_text("the agent page stand-in")
    page = pagedata.agent_chain(Sources(WarehouseReader(str(tmp_path / "wh")), "acme"))
    click = (
        "<script>setTimeout(function(){var n=document.querySelector('.sankey-node');"
        "n.dispatchEvent(new MouseEvent('click',{bubbles:true}));},1000)</script>"
    )
    (site / "agents.html").write_text(
        render_page(page, base=site.as_uri()).replace("</body>", click + "</body>")
    )
    dom = chromium(
        (site / "agents.html").as_uri(), tmp_path / "p", "--dump-dom", "--allow-file-access-from-files"
    )
    assert "the agent page stand-in" in dom.stdout, dom.stdout[:1500]


def test_overview_forecasts_when_a_budget_runs_out_at_the_last_hours_rate(
    api: Running, tmp_path: Path
) -> None:
    # coder: $9.50 of a $10 daily budget, $1 spent in the last hour: out in about 30 minutes;
    # planner: $4 of $10 and nothing spent lately: no forecast
    dom = chromium(api.link("/ui/overview"), tmp_path / "p", "--dump-dom", "--window-size=1280,1600")
    assert dom.returncode == 0 and console_lines(dom.stderr) == []
    found = re.findall(
        r"at the last hour's rate, ([\w/]+)'s daily budget runs out at (\d\d:\d\d) UTC", dom.stdout
    )
    assert [scope for scope, _ in found] == ["acme/coder"], dom.stdout[-3000:]
    hour, minute = map(int, found[0][1].split(":"))
    soon = datetime.now(UTC) + timedelta(minutes=30)
    assert abs((hour * 60 + minute) - (soon.hour * 60 + soon.minute)) % (24 * 60) <= 5
    assert "$9.50 of $10.00" in dom.stdout and "$1.00/h" in dom.stdout


def test_the_waterfall_marks_each_instant_tool_call_on_its_own_row(api: Running, tmp_path: Path) -> None:
    # the loop-killed trace: an agent span, an LLM call and six tool calls of no duration
    dom = chromium(
        api.view("trace", trace_id=LOOP_TRACE), tmp_path / "p", "--dump-dom", "--window-size=1280,1600"
    )
    assert dom.returncode == 0 and console_lines(dom.stderr) == []
    diamonds = re.findall(r'<path class="point"[^>]*fill: rgb\(239, 108, 0\)', dom.stdout)
    assert len(diamonds) == 6, diamonds  # one diamond per tool call (the legend's is no "point")
    rows = re.findall(r'data-unformatted="(· tool web_search \[[0-9a-f]{6}\])"', dom.stdout)
    assert len(rows) == len(set(rows)) == 6  # each on its own row, so no two labels share one
    costs = re.findall(r'data-unformatted="([\d.]+ · [\d.]+)"', dom.stdout)
    assert len(costs) == 8 and costs[:2] == ["0 · 7.25", "7.25 · 7.25"]  # root, then the LLM call


async def _consume_events(bootstrap: str, topic: str, idle_s: float = 3.0) -> list[Any]:
    """Every event on ``topic`` (from the start), until nothing new came for ``idle_s``."""
    from aiokafka import AIOKafkaConsumer

    from agentledger.wire import decode_envelope

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    events: list[Any] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                return events
            for records in batch.values():
                for record in records:
                    assert record.value is not None
                    events.extend(decode_envelope(record.value).events)
    finally:
        await consumer.stop()


def test_the_demos_tasks_name_their_user_and_the_user_filter_narrows_the_pages(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The demo's own task code records through the client to a real broker; its events are
    # priced and landed, then the traces page is drawn for all users and for one.
    import time

    from agentledger.dashboards import pagedata
    from agentledger.dashboards.pages import plotly_js, render_page
    from agentledger.demo.config import DemoTiming
    from agentledger.demo.workload import DemoWorkload
    from agentledger.pricing import PriceBook
    from agentledger.topics import CONTROL, EVENTS
    from agentledger.warehouse.landing import land_priced
    from agentledger.warehouse.storage import Store

    prefix = f"t{uuid.uuid4().hex[:10]}."
    asyncio.run(create_topics(kafka_bootstrap, prefix=prefix))
    work = DemoWorkload(
        kafka_bootstrap, prefix + EVENTS.name, prefix + CONTROL.name, DemoTiming.for_mode(True), say=print
    )
    work._t0 = time.monotonic()  # the clock the stories run on (before any of them starts)
    for _ in range(15):
        work.task("acme")
    result = work.finish()
    assert result.sent > 0 and result.dropped == result.failed == 0
    events = asyncio.run(_consume_events(kafka_bootstrap, prefix + EVENTS.name))
    book = PriceBook.load()
    land_priced(Store(str(tmp_path / "wh")), [book.price_event(e) for e in events], "demo-run")

    site = tmp_path / "site"
    site.mkdir()
    (site / "plotly.min.js").write_text(plotly_js())
    reader = WarehouseReader(str(tmp_path / "wh"))
    listed: dict[str, list[str]] = {}
    for who in ("", "acme-user-1"):
        view = pagedata.View(user=who or None)
        page = pagedata.traces(Sources(reader, "acme", view=view))
        (site / f"traces-{who or 'all'}.html").write_text(render_page(page, base=site.as_uri()))
        dom = chromium((site / f"traces-{who or 'all'}.html").as_uri(), tmp_path / f"t{who}", "--dump-dom",
                       "--allow-file-access-from-files")  # fmt: skip
        assert dom.returncode == 0 and console_lines(dom.stderr) == []
        listed[who] = re.findall(r'href="[^"]*trace\?[^"]*trace_id=([0-9a-f]{32})', dom.stdout)
        users = set(re.findall(r">(acme-user-\d)<", dom.stdout))  # the list's user column
        assert users == ({"acme-user-1"} if who else {f"acme-user-{i}" for i in range(5)}), users
    assert 0 < len(listed["acme-user-1"]) < len(listed[""]) == 15  # 3 of the 15 tasks are user 1's
    assert set(listed["acme-user-1"]) < set(listed[""])
