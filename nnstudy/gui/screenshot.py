"""A screenshot of the recogniser (task 4) answering a real test image, drawn on its pad (digits) or
uploaded (any other dataset), with the study's own checkpoints: the app is served on 127.0.0.1 (a free
port, in this process) and driven by headless Chromium through Playwright."""

from __future__ import annotations

import base64
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import MNIST_CARD, class_names
from ..io import atomic_write_bytes
from ..mnist import load_dataset
from ..recogniser import as_drawn_png, note_png
from .app import LOOPBACK, create_app
from .models import find_models

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
#: puts a PNG (a data URL) on the pad as if drawn there, then asks for an answer as the "Recognise" button does
DRAW_ON_PAD = """async (url) => {
  const image = new Image();
  await new Promise((done, fail) => { image.onload = done; image.onerror = fail; image.src = url; });
  pad.getContext("2d").drawImage(image, 0, 0, pad.width, pad.height);
  dirty = true;
  document.getElementById("predict").click();
}"""


def chromium() -> str:
    """The system's Chromium (Debian's package; Playwright never downloads a browser here)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise RuntimeError("no Chromium on PATH for the recogniser's screenshot: install Debian's chromium "
                       "(scripts/bootstrap.sh does), or set report.gui_screenshot: false")  # fmt: skip


def screenshot_recogniser(results: str | Path, dataset: str | Path, out_png: str | Path, *, digit_index: int = 0,
                          timeout_s: float = 60.0, card: dict | None = None) -> dict[str, Any]:  # fmt: skip
    """Give test image ``digit_index`` to the page the study's checkpoints serve (drawn on its pad for a digit
    dataset, else uploaded as a PNG), wait for the answer, and save the page as ``out_png``. Returns what the
    page answered (and the true class)."""
    card = card or MNIST_CARD
    choices = find_models(results)
    if not choices:
        atomic_write_bytes(out_png, note_png("no model: every run diverged or collapsed"))
        return {"digit": None, "answer": None, "model": None}
    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server

    data = load_dataset(dataset)
    digit, label = np.asarray(data["x_test"][digit_index]), int(data["y_test"][digit_index])
    url_png = "data:image/png;base64," + base64.b64encode(as_drawn_png(digit)).decode()
    app = create_app(choices, trusted_hosts=LOOPBACK, card=card)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 980, "height": 700}, device_scale_factor=1.5)
            page.set_default_timeout(timeout_s * 1000)
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            page.wait_for_selector("body[data-ready=true]")
            if card["preprocess"] == "digits":
                page.evaluate(DRAW_ON_PAD, url_png)
            else:
                upload = {"name": f"test-{digit_index}.png", "mimeType": "image/png", "buffer": as_drawn_png(digit)}
                page.get_by_test_id("file").set_input_files(upload)
            prediction = page.get_by_test_id("prediction")
            expect(prediction).to_have_text(re.compile(r"\S"), timeout=timeout_s * 1000)
            answer = class_names(card, "en").index(prediction.text_content())
            shot = page.screenshot(full_page=True)
            browser.close()
    finally:
        server.shutdown()
        thread.join()
    atomic_write_bytes(out_png, shot)
    return {"digit": label, "answer": answer, "model": choices[0].key}
