"""Page assembly: figures -> one HTML page (served by the API) or one static report file.

plotly.js comes from the installed plotly package (never a CDN: dashboards must work with no
internet): the API serves it at ``/ui/plotly.min.js``; the report inlines it once.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import plotly.graph_objects as go
import plotly.io as pio

NAV: list[tuple[str, str]] = [
    ("overview", "Overview"),
    ("agent", "Agent"),
    ("trace", "Trace"),
    ("traces", "Traces"),
    ("agents", "Agent chain"),
    ("providers", "Providers"),
    ("timeline", "Decisions"),
]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{background:#1d2430;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.8rem;align-items:center}
header a{color:#cfd8dc;text-decoration:none;font-size:.95rem}header a.on{color:#fff;font-weight:600}
header b{margin-right:.6rem}main{padding:.6rem;display:grid;gap:.6rem;grid-template-columns:repeat(auto-fill,minmax(min(100%,520px),1fr))}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:.3rem;min-width:0}
.note{grid-column:1/-1;color:#455a64;font-size:.9rem;margin:.2rem .4rem}
section>h2{margin:1rem .8rem 0;font-size:1.1rem}
header form{margin-left:auto}.login{padding:1rem;max-width:28rem}.err{color:#c62828}
form.view{grid-column:1/-1;display:flex;flex-wrap:wrap;gap:.4rem .8rem;align-items:end;font-size:.85rem;
background:#fff;border-radius:8px;padding:.5rem .7rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
form.view label{display:flex;flex-direction:column;color:#455a64}form.view select,form.view input{font-size:.9rem;max-width:12rem}
.tbl{grid-column:1/-1;overflow-x:auto}.tbl h3{margin:.3rem .5rem;font-size:1rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}th,td{padding:.25rem .5rem;text-align:left;border-bottom:1px solid #eceff1;white-space:nowrap}
th a{color:#1d2430}td.n{text-align:right;font-variant-numeric:tabular-nums}tr.bad td{background:#fff3f0}
td a{color:#1565c0}
@media (max-width:520px){.js-plotly-plot .modebar-container{display:none!important}}
"""


@dataclass
class Control:
    """One field of the view form at the top of a page (sent with GET, so the URL carries
    it): a ``select`` when ``options`` (value, label) are given, else an input of ``kind``."""

    name: str
    label: str
    value: str = ""
    options: list[tuple[str, str]] | None = None
    kind: str = "text"


@dataclass
class Cell:
    """A table cell: text, an optional link (``page?query`` under the dashboards' base),
    an indent (tree depth), numbers right-aligned."""

    text: str
    href: str | None = None
    indent: int = 0
    number: bool = False
    full: str | None = None  # the whole text when ``text`` is shortened (shown on hover)
    wrap: bool = False  # long prose (reasons) may wrap


@dataclass
class Table:
    """An HTML table (readable, searchable with the browser, links that work). ``sort_links``
    maps a column to the ``page?query`` that sorts by it; ``bad`` marks rows (errors, kills)."""

    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    sort_links: dict[str, str] = field(default_factory=dict)
    bad: set[int] = field(default_factory=set)
    empty: str = "nothing in this view"  # shown when there are no rows


@dataclass
class Page:
    """One dashboard page: a slug (its URL), a title, figures, short notes, and ``links``
    (label, query string) to the same page for other items, e.g. other agents; ``controls``
    (the view form), ``tables``, and ``query``: the view's query string, kept by the nav."""

    slug: str
    title: str
    figures: list[go.Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    query: str = ""
    link_slug: str | None = None  # the page ``links`` open (default: this one)
    node_links: dict[int, list[str]] = field(default_factory=dict)
    """Figure index -> ``page?query`` per Sankey node: a click on a node opens it (served pages)."""


def _controls_html(page: Page, base: str) -> str:
    if not page.controls:
        return ""
    fields = []
    for c in page.controls:
        name, value = html.escape(c.name), html.escape(c.value)
        if c.kind == "hidden":
            fields.append(f'<input type="hidden" name="{name}" value="{value}">')
            continue
        if c.options is not None:
            opts = "".join(
                f'<option value="{html.escape(v)}"{" selected" if v == c.value else ""}>{html.escape(t)}</option>'
                for v, t in c.options
            )
            widget = f'<select name="{name}">{opts}</select>'
        else:
            widget = f'<input type="{html.escape(c.kind)}" name="{name}" value="{value}" step="1">'
        fields.append(f"<label>{html.escape(c.label)}{widget}</label>")
    action = f"{base}/{page.slug}"
    return f'<form class="view" method="get" action="{action}">{"".join(fields)}<button type="submit">Show</button></form>'


def _cell_html(c: Cell, base: str | None) -> str:
    text = html.escape(c.text)
    if c.href is not None and base is not None:
        text = f'<a href="{base}/{html.escape(c.href)}">{text}</a>'
    styles = [f"padding-left:{0.5 + 1.2 * c.indent:.1f}rem"] if c.indent else []
    styles += ["white-space:normal;min-width:14rem"] if c.wrap else []
    style = f' style="{";".join(styles)}"' if styles else ""
    title = f' title="{html.escape(c.full)}"' if c.full else ""
    return f"<td{' class=n' if c.number else ''}{style}{title}>{text}</td>"


def _table_html(t: Table, base: str | None) -> str:
    heads = []
    for col in t.columns:
        link = t.sort_links.get(col)
        label = html.escape(col)
        heads.append(
            f'<th><a href="{base}/{html.escape(link)}">{label} ▾</a></th>'
            if link and base
            else f"<th>{label}</th>"
        )
    body = "".join(
        f"<tr{' class=bad' if i in t.bad else ''}>{''.join(_cell_html(c, base) for c in row)}</tr>"
        for i, row in enumerate(t.rows)
    )
    if not t.rows:
        body = f'<tr><td colspan="{len(t.columns)}">{html.escape(t.empty)}</td></tr>'
    return (
        f'<div class="card tbl"><h3>{html.escape(t.title)}</h3>'
        f"<table><thead><tr>{''.join(heads)}</tr></thead><tbody>{body}</tbody></table></div>"
    )


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle shipped inside the plotly Python package."""
    return resources.files("plotly").joinpath("package_data/plotly.min.js").read_text(encoding="utf-8")


def _figures_html(page: Page, base: str | None = None, nonce: str | None = None) -> str:
    parts = [_controls_html(page, base)] if base is not None else []
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in page.notes]
    if base is not None and page.links:
        items = " · ".join(
            f'<a href="{base}/{page.link_slug or page.slug}?{html.escape(q)}">{html.escape(label)}</a>'
            for label, q in page.links
        )
        parts.append(f'<p class="note">{items}</p>')
    for i, fig in enumerate(page.figures):
        div = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=f"{page.slug}-{i}",
            config={"responsive": True, "displaylogo": False},
        )
        if base is not None and i in page.node_links:
            div += _node_click_script(f"{page.slug}-{i}", [f"{base}/{q}" for q in page.node_links[i]])
        if nonce is not None:  # the page's Content-Security-Policy admits inline scripts by nonce
            div = div.replace("<script>", f'<script nonce="{nonce}">')
        wide = ' style="grid-column:1/-1"' if len(page.figures) == 1 else ""  # a lone chart: full width
        parts.append(f'<div class="card"{wide}>{div}</div>')
    parts += [_table_html(t, base) for t in page.tables]
    return "\n".join(p for p in parts if p)


def _node_click_script(div_id: str, urls: list[str]) -> str:
    """Open ``urls[n]`` when Sankey node ``n`` is clicked (a link click does nothing)."""
    data = json.dumps(urls).replace("<", "\\u003c")  # no "</script>" can come from data
    return (
        f"<script>(function(){{var urls={data};var gd=document.getElementById({json.dumps(div_id)});"
        "if(!gd||!gd.on)return;gd.on('plotly_click',function(e){var p=e&&e.points&&e.points[0];"
        "if(p&&p.sourceLinks!==undefined&&urls[p.pointNumber]){window.location.href=urls[p.pointNumber];}});"
        "})();</script>"
    )


def _head(title: str, script: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>{script}</head>"
    )


def render_page(page: Page, base: str = "/ui", query: str = "", nonce: str | None = None) -> str:
    """A full page for the API; plotly.js is loaded from ``{base}/plotly.min.js``; inline
    scripts carry ``nonce`` when given; the header has a sign-out button."""
    query = query or (f"?{page.query}" if page.query else "")
    links = " ".join(
        f'<a href="{base}/{slug}{html.escape(query)}"{" class=on" if slug == page.slug else ""}>{html.escape(label)}</a>'
        for slug, label in NAV
    )
    out = f'<form method="post" action="{base}/logout"><button type="submit">Sign out</button></form>'
    return (
        _head(f"agentledger · {page.title}", f'<script src="{base}/plotly.min.js"></script>')
        + f"<body><header><b>agentledger</b>{links}{out}</header>"
        + f"<main>{_figures_html(page, base, nonce)}</main></body></html>"
    )


def render_login(csrf: str, next_path: str, base: str = "/ui", error: str | None = None) -> str:
    """The sign-in form: a read key, posted with the form's CSRF token (never in a URL)."""
    problem = f'<p class="err">{html.escape(error)}</p>' if error else ""
    return (
        _head("agentledger · sign in", "")
        + '<body><header><b>agentledger</b></header><main><div class="card login">'
        + f'<form method="post" action="{base}/login">{problem}'
        + '<label>API key with the read scope<br><input type="password" name="key" required '
        + 'autocomplete="off" size="40"></label>'
        + f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
        + f'<input type="hidden" name="next" value="{html.escape(next_path)}">'
        + '<p><button type="submit">Sign in</button></p></form></div></main></body></html>'
    )


def render_report(pages: list[Page], title: str = "agentledger report") -> str:
    """Every page in one static file, plotly.js inlined once (opens with no server)."""
    links = " ".join(f'<a href="#{p.slug}">{html.escape(p.title)}</a>' for p in pages)
    sections = "".join(
        f'<section id="{p.slug}"><h2>{html.escape(p.title)}</h2><main>{_figures_html(p)}</main></section>'
        for p in pages
    )
    script = f'<script type="text/javascript">{plotly_js()}</script>'
    return (
        _head(title, script)
        + f"<body><header><b>{html.escape(title)}</b>{links}</header>{sections}</body></html>"
    )
