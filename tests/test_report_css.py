"""The lab report's HTML on a phone, in real headless Chromium: the committed report/lab_report.en.html with the
current report/templates/style.css in its <style> block (as nnstudy.report.markdown_to_html embeds it)."""

from __future__ import annotations

import re

import pytest
from conftest import REPO, launch_chromium

STYLE_BLOCK = re.compile(r"<style>\n.*?\n</style>", re.S)

#: what sticks out sideways: the page's width, each table's own scrolling, any element past the right edge
MEASURE = """() => {
  const width = window.innerWidth;
  const tables = [...document.querySelectorAll("table")];
  const past = [...document.querySelectorAll("main *")].filter(e => !e.closest("table"))
    .filter(e => e.getBoundingClientRect().right > width + 1).map(e => e.tagName);
  return {
    scrollWidth: document.scrollingElement.scrollWidth, innerWidth: width, past,
    tables: tables.length, display: tables.map(t => getComputedStyle(t).display),
    scrollable: tables.filter(t => t.scrollWidth > t.clientWidth + 1
                                   && ["auto", "scroll"].includes(getComputedStyle(t).overflowX)).length,
    tablesPastEdge: tables.filter(t => t.getBoundingClientRect().right > width + 1).length,
  };
}"""


@pytest.fixture
def report_page(tmp_path):
    """The committed English report, its CSS replaced by the current style.css."""
    html = (REPO / "report" / "lab_report.en.html").read_text(encoding="utf-8")
    css = (REPO / "report" / "templates" / "style.css").read_text(encoding="utf-8")
    assert len(STYLE_BLOCK.findall(html)) == 1, "the report embeds its CSS in one <style> block"
    page = tmp_path / "lab_report.en.html"
    page.write_text(STYLE_BLOCK.sub(lambda _: f"<style>\n{css}\n</style>", html), encoding="utf-8")
    return page


def test_the_report_does_not_scroll_sideways_on_a_phone(report_page):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(report_page.as_uri())
        size = page.evaluate(MEASURE)
        assert size["tables"] >= 1, size
        assert size["scrollWidth"] <= size["innerWidth"] + 1, size  # no sideways scrolling of the page
        assert size["past"] == [] and size["tablesPastEdge"] == 0, size
        assert size["scrollable"] >= 1, size  # a wide table scrolls in its own box
        page.close()
        desk = browser.new_page(viewport={"width": 1280, "height": 800})
        desk.goto(report_page.as_uri())
        size = desk.evaluate(MEASURE)
        assert size["scrollWidth"] <= size["innerWidth"] + 1 and size["scrollable"] == 0, size  # tables fit
        desk.emulate_media(media="print")  # what WeasyPrint lays out: tables stay tables, none scrolls
        size = desk.evaluate(MEASURE)
        assert set(size["display"]) == {"table"} and size["scrollable"] == 0, size
        browser.close()
