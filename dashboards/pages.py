"""Page assembly: figures -> one HTML page (served by the API) or one static report file.

plotly.js comes from the installed plotly package (never a CDN: dashboards must work with no
internet): the API serves it at ``/ui/plotly.min.js``; the report inlines it once.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import plotly.graph_objects as go
import plotly.io as pio

NAV: list[tuple[str, str]] = [
    ("overview", "Overview"),
    ("agent", "Agent"),
    ("trace", "Trace"),
    ("providers", "Providers"),
    ("timeline", "Alerts & commands"),
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
"""


@dataclass
class Page:
    """One dashboard page: a slug (its URL), a title, figures, short notes, and ``links``
    (label, query string) to the same page for other items, e.g. other agents."""

    slug: str
    title: str
    figures: list[go.Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle shipped inside the plotly Python package."""
    return resources.files("plotly").joinpath("package_data/plotly.min.js").read_text(encoding="utf-8")


def _figures_html(page: Page, base: str | None = None, nonce: str | None = None) -> str:
    parts = [f'<p class="note">{html.escape(n)}</p>' for n in page.notes]
    if base is not None and page.links:
        items = " · ".join(
            f'<a href="{base}/{page.slug}?{html.escape(q)}">{html.escape(label)}</a>'
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
        if nonce is not None:  # the page's Content-Security-Policy admits inline scripts by nonce
            div = div.replace("<script>", f'<script nonce="{nonce}">')
        wide = ' style="grid-column:1/-1"' if len(page.figures) == 1 else ""  # a lone chart: full width
        parts.append(f'<div class="card"{wide}>{div}</div>')
    return "\n".join(parts)


def _head(title: str, script: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>{script}</head>"
    )


def render_page(page: Page, base: str = "/ui", query: str = "", nonce: str | None = None) -> str:
    """A full page for the API; plotly.js is loaded from ``{base}/plotly.min.js``; inline
    scripts carry ``nonce`` when given; the header has a sign-out button."""
    links = " ".join(
        f'<a href="{base}/{slug}{query}"{" class=on" if slug == page.slug else ""}>{html.escape(label)}</a>'
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
