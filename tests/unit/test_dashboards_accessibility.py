"""Accessibility basics of every page: a language, a title, a viewport; every visible form
field has a label; tables have header cells; text colours meet WCAG AA contrast (4.5:1)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from dashboard_data import land_loop_trace

from agentledger.api.testing import land_demo_warehouse
from agentledger.dashboards import pages
from agentledger.dashboards.pagedata import Sources, all_pages
from agentledger.warehouse.reader import WarehouseReader

# (what, text colour, background) for every text the stylesheet colours
TEXT_ON = [
    ("body text", "#1d2430", "#f6f7f9"),
    ("text in a card", "#1d2430", "#fff"),
    ("notes", "#455a64", "#f6f7f9"),
    ("form labels", "#455a64", "#fff"),
    ("nav links", "#cfd8dc", "#1d2430"),
    ("current nav link", "#fff", "#1d2430"),
    ("table links", "#1565c0", "#fff"),
    ("a flagged row", "#1d2430", "#fff3f0"),
    ("sign-in error", "#c62828", "#fff"),
]


def _luminance(colour: str) -> float:
    h = colour.lstrip("#")
    h = "".join(c * 2 for c in h) if len(h) == 3 else h
    channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: str, bg: str) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_arithmetic() -> None:
    assert contrast("#000", "#fff") == pytest.approx(21.0)
    assert contrast("#777", "#fff") == pytest.approx(4.48, abs=0.01)  # the classic just-failing grey


@pytest.mark.parametrize(("what", "fg", "bg"), TEXT_ON)
def test_text_colours_meet_aa_contrast(what: str, fg: str, bg: str) -> None:
    css = pages._CSS.lower()
    assert fg in css and bg in css, what  # the pair is still the stylesheet's
    assert contrast(fg, bg) >= 4.5, (what, round(contrast(fg, bg), 2))


class _Fields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # inside how many <label>
        self.text: list[str] = []
        self.unlabelled: list[str] = []
        self.labels: list[str] = []
        self.th = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self.depth += 1
            self.text = []
        elif tag in ("input", "select") and a.get("type") != "hidden":
            if not self.depth:
                self.unlabelled.append(str(a.get("name")))
            else:
                self.labels.append("".join(self.text).strip())
        elif tag == "th":
            self.th += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text.append(data)


def test_every_page_has_a_language_title_viewport_and_labelled_fields(tmp_path: Path) -> None:
    root = str(tmp_path / "wh")
    land_demo_warehouse(root)
    land_loop_trace(root)
    for page in all_pages(Sources(WarehouseReader(root), "acme")):
        html = pages.render_page(page)
        assert '<html lang="en">' in html and re.search(r"<title>agentledger · [^<]+</title>", html)
        assert 'name="viewport" content="width=device-width, initial-scale=1"' in html
        fields = _Fields()
        fields.feed(html)
        assert fields.unlabelled == [], page.slug
        assert len(fields.labels) >= 8 and all(fields.labels), (
            page.slug,
            fields.labels,
        )  # range...conversation
        assert fields.th >= sum(len(t.columns) for t in page.tables), page.slug
