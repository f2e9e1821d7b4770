"""The generated lab report: numbers match the tables, conclusions follow the tests, HTML renders in Chromium."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, launch_chromium

from nnstudy.claims_text import claim_rows, claims_markdown, verdict_counts
from nnstudy.report import comparison_rows
from nnstudy.stats import welch

MEAN_SD = re.compile(r"\d+\.\d+ ± \d+\.\d+")
STATEMENT = re.compile(  # the en and zh wordings of macros.j2's stat()
    r"(?P<b>[\w+]+) (?P<mb>−?\d+\.\d+) (?:vs|对比) (?P<a>[\w+]+) (?P<ma>−?\d+\.\d+)(?:; |；)B − A = "
    r"(?P<diff>[+−]\d+\.\d+)(?:, |，)95 % (?:CI|置信区间) (?P<ci>\[[^\]]+\])(?:, |，)p (?:= )?(?P<p>[<\d. ]+?)(?:, |，)"
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
    assert len(statements) >= 1  # the exploratory statement of section 3.4 (the CNN against the BP network)
    for s in statements:
        key = (s["b"], s["mb"], s["a"], s["ma"], s["diff"], s["ci"], s["p"].strip())
        assert key in formatted, key


def declared_rows(workdir: Path, config: dict, lang: str) -> list[dict]:
    return claim_rows(pd.read_csv(workdir / "results/tables/claims.csv"), config["protocol"], lang)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_conclusions_state_the_declared_claims_only(study, lang):
    """The conclusions count each family's verdicts as claims.csv has them, without repeating the verdict grid
    claim by claim; each family's claims table is in the text (appendix A) as the tables job computed it."""
    workdir, config = study
    text = (workdir / f"report/lab_report.{lang}.md").read_text()
    heading = ("## 5 Conclusions", "## References") if lang == "en" else ("## 五、结论", "## 参考文献")
    conclusions = text.split(heading[0])[1].split(heading[1])[0]
    rows = declared_rows(workdir, config, lang)
    for family, counts in verdict_counts(rows).items():
        n = sum(counts.values())
        said = (f"{counts['supported']} of {n} rows supported" if lang == "en"
                else f"{n} 行中 {counts['supported']} 行得到支持")  # fmt: skip
        assert said in conclusions, (family, said)
        assert claims_markdown(rows, family, lang) in text
    # the verdict grid names every claim once: the conclusions do not repeat it claim by claim
    assert not [line for line in conclusions.splitlines() if line.startswith("- *")]
    assert "significant" not in conclusions and "显著" not in conclusions


def test_a_small_test_split_is_warned_of_in_the_console_and_the_report(study):
    """The test study's 500 test and validation images: one image is 0.2 pp, which the console warns of at
    the start and the report's limitations state (the default study's 10,000 images get neither)."""
    workdir, config = study
    assert config["data"]["test_size"] == 500
    console = (workdir / "console.txt").read_text()
    assert "data.test_size is 500: one image moves the test accuracy by 0.2 pp" in console
    assert "data.val_size is 500: one image moves the validation accuracy by 0.2 pp" in console
    english = (workdir / "report/lab_report.en.md").read_text()
    assert "With 500 test images, one image moves the test accuracy by 0.2 pp" in english
    chinese = (workdir / "report/lab_report.zh.md").read_text()
    assert "测试集只有 500 张图像，一张图像就使测试准确率变化 0.2 个百分点" in chinese
    assert "one image moves" not in (REPO / "report/lab_report.en.md").read_text()


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


#: Latin words the Chinese report may keep: names, units, code, statistics symbols and formulae
ZH_ALLOWED = {"Adam", "SGD", "BN", "DP", "BP", "BPNN", "CNN", "ReLU", "MNIST", "NumPy", "Optuna", "MLflow", "Snakemake",
              "TPE", "BCa", "Holm", "Wilcoxon", "Welch", "LeNet", "CS231n", "softmax", "float", "Dropout", "He",
              "Kingma", "Ba", "RMSprop", "Srivastava", "Dodge", "Li", "Wilson", "PNG", "px", "MDE", "d_z", "B", "A",
              "k", "n", "p", "t", "pp", "Python", "GUI", "CI", "Git", "Linux", "AMD", "EPYC", "Intel", "Xeon", "x86_64",
              "logical", "cores", "nnstudy", "N", "X", "g", "z", "sqrt", "_B", "m", "C", "D", "CPU"}  # fmt: skip


def zh_prose(markdown: str) -> str:
    """The Chinese report's running text: no code, no reference list, no appendix, no identifiers."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    text = text.split("## 参考文献")[0]
    text = re.sub(r"`[^`]*`", "", text)  # inline code: file names, keys, study names
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets and image paths
    return re.sub(r"[\w.+-]*\d[\w.+-]*", "", text)  # identifiers with digits: cells, seeds, versions, float32


def test_the_chinese_report_has_no_english_outside_names_code_and_units(study):
    text = zh_prose((study[0] / "report/lab_report.zh.md").read_text())
    words = set(re.findall(r"[A-Za-z_]+", text)) - ZH_ALLOWED
    assert not words, sorted(words)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_no_literal_asterisks_in_the_rendered_text(study, lang):
    page = (study[0] / f"report/lab_report.{lang}.html").read_text()
    body = re.sub(r"<(pre|style)[^>]*>.*?</\1>", "", page, flags=re.S)
    text = re.sub(r"<[^>]+>", "", body)
    assert "*" not in text, re.findall(r".{30}\*.{30}", text)[:5]


def markdown_rows(section: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``section``, cells stripped."""
    lines = section.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2 : end]]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_summary_comes_first_and_its_numbers_are_the_tables(study, lang):
    """The results summary follows the abstract, before the method; its accuracies are Table 2's and the
    CNN table's (the same formatted strings); its verdict grid has every declared claim of both families in
    every arm, with claims.csv's verdicts and estimates."""
    workdir, config = study
    text = (workdir / f"report/lab_report.{lang}.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    summary_title = "Summary of results" if lang == "en" else "结果摘要"
    assert headings.index(summary_title) == 1 and headings[0] in ("Abstract", "摘要")
    summary = text.split(f"## {summary_title}")[1].split("\n## ")[0]
    rows = markdown_rows(summary)
    assert len(rows) >= 5
    tables = "".join((workdir / f"results/tables/table{i}.md").read_text() for i in (2, 3))
    cells = [cell.strip("*") for row in rows for cell in (row[2], row[4]) if cell != "—"]
    assert len(cells) >= 10 and all(cell in tables for cell in cells), cells
    grid_caption = "**Table 2.**" if lang == "en" else "**表 2**"
    grid = markdown_rows(summary.split(grid_caption)[1])
    claims = [r for r in declared_rows(workdir, config, lang) if r["role"] == "claim"]
    expected = {(r["text"], f"{r['verdict_text']}, {r['estimate']} {r['unit']}") for r in claims}
    stated = {(row[1], cell) for row in grid for cell in row[2:]}
    assert stated == expected and {row[0] for row in grid} == {r["family_text"] for r in claims}
    assert f"figures/{lang}/claims_forest.png" in summary


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_task_has_its_section_and_task_4_its_screenshot(study, lang):
    workdir, _ = study
    text = (workdir / f"report/lab_report.{lang}.md").read_text()
    task = "Task {}" if lang == "en" else "第 {} 项"
    both = "Tasks 1 and 2" if lang == "en" else "第 1、2 项"
    assert re.search(rf"^### 2\.1 {both}", text, re.M)
    for k in (3, 4, 5):
        assert re.search(rf"^### 3\.\d {task.format(k)}", text, re.M), k
    section = text.split(f"### 3.7 {task.format(4)}")[1].split("\n## ")[0]
    appendix = text.split("## Appendix B" if lang == "en" else "## 附录 B")[1].split("\n## ")[0]
    assert f"figures/{lang}/recogniser.png" in appendix and f"figures/{lang}/gui.png" in appendix
    assert len(re.findall(r"(?:Figure|图) ?\d+", section)) >= 2  # the section refers to both figures by number
    shot = workdir / f"report/figures/{lang}/gui.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    answer = json.loads((workdir / "results/gui_screenshot.json").read_text())
    assert answer["answer"] in range(10) and answer["model"] in ("mlp", "cnn")
    for name in ("first_layer_weights", "confusion", "misclassified"):
        assert f"figures/{lang}/{name}.png" in text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_tables_and_figures_are_numbered_and_every_reference_points_at_one(study, lang):
    text = (study[0] / f"report/lab_report.{lang}.md").read_text()
    words = {"fig": ("Figure", "图"), "tab": ("Table", "表")}
    for kind, (en, zh) in words.items():
        word = en if lang == "en" else zh
        captions = [int(n) for n in re.findall(rf"^\*\*{word} (\d+)\.?\*\*", text, re.M)]
        assert captions == list(range(1, len(captions) + 1)) and len(captions) >= 5, (kind, captions)
        body = re.sub(rf"\*\*{word} \d+\.?\*\*", "", re.sub(r"```.*?```", "", text, flags=re.S))
        body = body.replace(f"{word} 1 (Adam)", "").replace(f"{word} 1", "") if kind == "tab" else body
        referred = {int(n) for n in re.findall(rf"{word} (\d+)", body)}
        assert referred and referred <= set(captions), (kind, referred, captions)
    assert not re.search(r"(Figure|Table|图|表) \?|\[\?\]", text)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_pdf_has_a_table_of_contents_with_pages_and_bookmarks(study, lang):
    workdir, _ = study
    pdf = workdir / f"report/lab_report.{lang}.pdf"
    text = (workdir / f"report/lab_report.{lang}.md").read_text()
    sections = re.findall(r"^## (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M)
    outline = subprocess.run(["pdftohtml", "-xml", "-i", "-q", "-stdout", str(pdf)], capture_output=True,
                             text=True, check=True).stdout.split("<outline>", 1)[1]  # fmt: skip
    bookmarks = [html.unescape(b) for b in re.findall(r'<item page="\d+">([^<]*)</item>', outline)]
    assert all(s in bookmarks for s in sections), set(sections) - set(bookmarks)
    first = pdf_pages(pdf)[0]
    listed = re.findall(r"^\s*(\S.*?)\s*\.{3,}\s*(\d+)\s*$", first, re.M)  # "Abstract ........ 2"
    assert len(listed) >= len(sections) - 2 and all(int(page) > 1 for _, page in listed), first[:800]
    page_html = (workdir / f"report/lab_report.{lang}.html").read_text()
    ids = set(re.findall(r'<h[23] id="([^"]+)"', page_html))
    links = re.findall(r'<a href="#([^"]+)"', page_html.split('<nav class="toc">')[1].split("</nav>")[0])
    assert len(links) >= len(sections) and set(links) <= ids


def test_one_template_and_a_complete_catalog():
    """One report template for both languages; every message in it, nnstudy/report.py and figures.py has a Chinese
    translation with the same placeholders, and the catalog holds no message the sources lost."""
    from babel.messages.extract import extract_from_file
    from babel.messages.pofile import read_po

    templates = REPO / "report" / "templates"
    assert [p.name for p in templates.glob("*.md.j2")] == ["lab_report.md.j2"]
    keywords = {"_": None, "N_": None}
    found = {m for source in ("report.py", "figures.py", "claims_text.py", "i18n.py", "dataset_text.py")
             for _, m, *_ in extract_from_file("python", REPO / "nnstudy" / source, keywords=keywords)}  # fmt: skip
    for name in ("lab_report.md.j2", "macros.j2"):
        found |= {m for _, m, *_ in extract_from_file("jinja2", templates / name, options={"trimmed": "true"})}
    with (templates / "locale/zh/LC_MESSAGES/report.po").open("rb") as handle:
        catalog = {m.id: m.string for m in read_po(handle) if m.id}
    assert found == set(catalog), (sorted(found - set(catalog))[:5], sorted(set(catalog) - found)[:5])
    placeholder = re.compile(r"%\(\w+\)s|\{\w+\}|%%")
    for msgid, msgstr in catalog.items():
        assert msgstr and sorted(set(placeholder.findall(msgid))) == sorted(set(placeholder.findall(msgstr))), msgid
