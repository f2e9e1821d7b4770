"""The generated lab report: numbers match the tables, conclusions follow the tests, HTML renders in Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, launch_chromium

from nnstudy.report import claim_rows, claims_markdown, comparison_rows
from nnstudy.stats import welch

MEAN_SD = re.compile(r"\d+\.\d+ ± \d+\.\d+")
STATEMENT = re.compile(  # the en and zh wordings of macros.j2's stat()
    r"(?P<b>[\w+]+) (?P<mb>-?\d+\.\d+) (?:vs|对比) (?P<a>[\w+]+) (?P<ma>-?\d+\.\d+)(?:; |；)B − A = "
    r"(?P<diff>[+-]\d+\.\d+)(?:, |，)95% (?:CI|置信区间) (?P<ci>\[[^\]]+\])(?:, |，)p (?:= )?(?P<p>[<\d. ]+?)(?:, |，)"
    r"n = (?P<nb>\d+)/(?P<na>\d+)"
)


def test_welch_verdicts():
    rng = np.random.default_rng(0)
    a = 97 + 0.05 * rng.standard_normal(5)
    assert welch("k", "m", "A", a, "B", a + 1.0).verdict == "higher"
    assert welch("k", "m", "A", a, "B", a - 1.0).verdict == "lower"
    assert welch("k", "m", "A", a, "B", a + 0.001 * rng.standard_normal(5)).verdict == "no significant difference"
    assert welch("k", "m", "A", a[:1], "B", a).verdict == "not enough runs"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_number_in_the_text_is_in_a_table(study, lang):
    workdir, _ = study
    text = (workdir / f"report/lab_report.{lang}.md").read_text()
    tables = "".join((workdir / f"results/tables/table{i}.md").read_text() for i in (1, 2, 3))
    found = MEAN_SD.findall(text)
    assert len(found) > 20
    for value in found:
        assert value in tables, value
    comparisons = pd.read_csv(workdir / "results/tables/comparisons.csv")
    rows = comparison_rows(comparisons[comparisons["arm"] == "tuned"], lang)  # the arm the text describes
    formatted = {(f["b"], f["mean_b"], f["a"], f["mean_a"], f["diff"], f["ci"], f["p"]) for r in rows.values()
                 for f in r.values()}  # fmt: skip
    statements = list(STATEMENT.finditer(text))
    assert len(statements) >= 3  # the exploratory statements of sections 3.1 (two) and 3.4 (one)
    for s in statements:
        key = (s["b"], s["mb"], s["a"], s["ma"], s["diff"], s["ci"], s["p"].strip())
        assert key in formatted, key


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_conclusions_state_the_confirmatory_claims_only(study, lang):
    """The conclusions are the claims of claims.csv, each with its verdict and numbers as the claims table
    formats them; nothing exploratory is worded as a finding there."""
    workdir, _ = study
    text = (workdir / f"report/lab_report.{lang}.md").read_text()
    heading = ("## 4 Conclusions", "## References") if lang == "en" else ("## 四、结论", "## 参考文献")
    conclusions = text.split(heading[0])[1].split(heading[1])[0]
    claims = pd.read_csv(workdir / "results/tables/claims.csv")
    rows = claim_rows(claims, lang)
    bullets = [line for line in conclusions.splitlines() if line.startswith("- ")]
    assert len(bullets) == len(rows) == 16
    for row, line in zip(rows, bullets, strict=True):
        assert f"*{row['text']}*" in line and f"**{row['verdict_text']}**" in line, line
        for field in ("estimate", "ci", "p_holm", "n", "mde"):
            assert row[field] in line, (field, line)
    assert "significant" not in conclusions and "显著" not in conclusions
    assert claims_markdown(rows, lang) in text  # the claims table, as the tables job computed it


def test_pdfs_are_made_with_cjk_fonts(study):
    workdir, _ = study
    for lang in ("en", "zh"):
        pdf = workdir / f"report/lab_report.{lang}.pdf"
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
        assert int(re.search(r"Pages:\s+(\d+)", info)[1]) >= 5
        fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
        if lang == "zh":
            assert "CJK" in fonts, fonts
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert ("结论" if lang == "zh" else "Conclusions") in text


def pdf_pages(pdf: Path) -> list[str]:
    """The text of each page (pdftotext separates pages by form feeds)."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1]


def image_pages(pdf: Path) -> list[int]:
    """The page of each image, in document order (their soft masks left out)."""
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines()[2:] if line.split()[2] == "image"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_pdf_pages_are_numbered_and_no_figure_is_parted_from_its_caption(study, lang):
    """Every page shows "k / n" in its footer; each figure's image is on the page of its caption."""
    pages = pdf_pages(study[0] / f"report/lab_report.{lang}.pdf")
    for k, text in enumerate(pages, start=1):
        assert re.search(rf"^\s*{k} / {len(pages)}\s*$", text, re.M), f"page {k} has no page number"
    caption = re.compile(r"^\s*(?:Figure (\d+)\.|图 (\d+) )", re.M)
    captions = [(int(m[1] or m[2]), k) for k, text in enumerate(pages, start=1) for m in caption.finditer(text)]
    assert [n for n, _ in captions] == list(range(1, len(captions) + 1)) and len(captions) >= 5, captions
    assert image_pages(study[0] / f"report/lab_report.{lang}.pdf") == [k for _, k in captions]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_reference_is_cited_and_every_citation_listed(study, lang):
    text = (study[0] / f"report/lab_report.{lang}.md").read_text()
    heading = "## References" if lang == "en" else "## 参考文献"
    body, references = text.split(heading)[0], text.split(heading)[1].split("\n## ")[0]
    listed = [int(n) for n in re.findall(r"^- \[(\d+)\]", references, re.M)]
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", re.sub(r"```.*?```", "", body, flags=re.S))}  # not code
    assert listed == list(range(1, len(listed) + 1)) and len(listed) >= 5
    assert cited == set(listed), f"listed, never cited: {set(listed) - cited}; cited, not listed: {cited - set(listed)}"


def test_the_chinese_report_states_its_statistics_in_chinese(study):
    text = re.sub(r"```.*?```", "", (study[0] / "report/lab_report.zh.md").read_text(), flags=re.S)  # not code
    leaks = [w for w in (" vs ", "95% CI", "p (Welch)", "mean A", "mean B", "*反向", " adam ", " sgd ") if w in text]
    assert not leaks, leaks


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_numeric_columns_are_right_aligned(study, lang):
    html = (study[0] / f"report/lab_report.{lang}.html").read_text()
    cells = re.findall(r'<td style="text-align:(left|right)">([^<]*)</td>', html)
    number = re.compile(r"^[−+-]?\d+(?:\.\d+)?(?: ± \d+(?:\.\d+)?)?$")
    assert any(align == "right" for align, _ in cells)
    assert not [text for align, text in cells if align == "left" and number.match(text)]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_html_renders_in_headless_chromium(study, lang):
    from playwright.sync_api import sync_playwright

    workdir, _ = study
    html = workdir / f"report/lab_report.{lang}.html"
    assert "http://" not in html.read_text() and "https://" not in html.read_text().replace(
        "https://json-schema.org", ""
    )
    errors: list[str] = []
    requests: list[str] = []
    shots = REPO / "results" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda req: requests.append(req.url))
        page.goto(html.as_uri(), wait_until="load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        title = page.title()
        page.screenshot(path=str(shots / f"report.{lang}.png"), full_page=False)
        browser.close()
    assert len(images) >= 5 and all(done and width > 100 for done, width in images), images
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert ("BP" in title) and Path(shots / f"report.{lang}.png").stat().st_size > 10_000
