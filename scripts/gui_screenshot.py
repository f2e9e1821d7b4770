"""Regenerate docs/gui.png: start the digit recogniser on the study's checkpoints, draw a 7, screenshot.

Usage: .venv/bin/python scripts/gui_screenshot.py [--results results] [--out docs/gui.png]
Needs the test extra (Playwright) and Debian's chromium.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", default="docs/gui.png")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "nnstudy.gui.app", "--results", args.results, "--port", str(port)])
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 900, "height": 640})
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            box = page.get_by_test_id("pad").bounding_box()
            points = [(70, 60), (210, 60), (150, 150), (120, 235)]  # a 7: the bar, then the stem
            page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
            page.mouse.down()
            for (x0, y0), (x1, y1) in zip(points, points[1:]):
                for step in range(1, 11):
                    page.mouse.move(box["x"] + x0 + (x1 - x0) * step / 10, box["y"] + y0 + (y1 - y0) * step / 10)
            page.mouse.up()
            expect(page.get_by_test_id("prediction")).not_to_be_empty()
            page.screenshot(path=args.out)
            print("prediction:", page.get_by_test_id("prediction").text_content(), "->", args.out)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
