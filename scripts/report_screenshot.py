"""A screenshot of `snakemake --report`'s page with the lab report open in its pane, for the README.

    .venv/bin/snakemake --report /tmp/report.html          # in a finished study's folder
    .venv/bin/python scripts/report_screenshot.py /tmp/report.html docs/snakemake-report.png

Opens the report in headless Chromium (the recogniser screenshot's own lookup and flags), chooses
"Lab report", opens the English report and waits until its heading shows in the pane.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

from nnstudy.gui.screenshot import CHROMIUM_ARGS, chromium


def screenshot(report: Path, out: Path, width: int = 1400, height: int = 900) -> None:
    """Open the lab report's entry of ``report`` and save the window as ``out``."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(report.resolve().as_uri())
        page.get_by_text("Lab report", exact=True).click()
        page.locator("tr", has_text="The lab report (en)").locator("a").first.click()
        page.frame_locator("iframe").locator("h1").first.wait_for(timeout=120_000)
        page.screenshot(path=str(out))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="the HTML file snakemake --report wrote")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args()
    screenshot(args.report, args.out)


if __name__ == "__main__":
    main()
