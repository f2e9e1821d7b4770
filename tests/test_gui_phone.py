"""The recogniser's page in real headless Chromium, at a desktop's and a phone's width: an old answer never
outlives a Clear or an error, and on a phone the page fits the screen with the model's name in full."""

from __future__ import annotations

import io
import logging
import re
import threading

import numpy as np
import pytest
from conftest import launch_chromium
from PIL import Image

from nnlib import MLPSpec, Network
from nnstudy.gui.app import create_app
from nnstudy.gui.models import Choice

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: labels as long as find_models writes them for a real study
LABELS = {"mlp": "BP network (MLP): adam-bn1-dp0.2, seed 10, val 98.12%, test 97.95%",
          "cnn": "CNN: cnn-adam-bn1-dp0.2, seed 5, val 99.21%, test 99.14%"}  # fmt: skip
DIGIT = re.compile(r"^\d$")


class Gate:
    """WSGI middleware that holds each /api/predict request while closed (tells when one arrives)."""

    def __init__(self, app):
        self.app, self.open, self.arrived = app, threading.Event(), threading.Event()
        self.open.set()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/api/predict":
            self.arrived.set()
            assert self.open.wait(60), "the test never opened the gate"
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The recogniser on a free port of 127.0.0.1 (in this process) with two real, untrained checkpoints:
    (its URL, its gate)."""
    from werkzeug.serving import make_server

    folder = tmp_path_factory.mktemp("gui_phone")
    choices = []
    for seed, (key, label) in enumerate(LABELS.items()):
        Network(MLPSpec(hidden=(16,)), seed=seed).save(folder / f"{key}.npz")
        choices.append(Choice(key, label, folder / f"{key}.npz", 0.9 - seed / 10, None))
    gate = Gate(create_app(choices))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    httpd = make_server("127.0.0.1", 0, gate, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/", gate
    gate.open.set()
    httpd.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


def open_page(browser, url: str, viewport: dict):
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


def draw_a_one(page) -> None:
    """A "1", stroked with the mouse as a user would; lifting the pen asks for an answer."""
    pad = page.get_by_test_id("pad").bounding_box()
    x, y, side = pad["x"], pad["y"], pad["width"]  # the pad is square at every width
    page.mouse.move(x + 0.52 * side, y + 0.16 * side)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x + (0.52 - step * 0.003) * side, y + (0.16 + step * 0.034) * side)
    page.mouse.up()


def answered(page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_test_id("prediction")).to_have_text(DIGIT)
    expect(page.get_by_test_id("confidence")).to_contain_text("confidence")
    expect(page.locator("#bars .bar")).to_have_count(10)


def no_answer(page) -> None:
    """Nothing of an answer shows: no digit, no confidence, no model, no bars."""
    from playwright.sync_api import expect

    for part in ("prediction", "confidence", "answered-by"):
        expect(page.get_by_test_id(part)).to_have_text("")
    expect(page.locator("#bars > *")).to_have_count(0)
    assert not page.get_by_text(re.compile(r"confidence \d")).is_visible()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_clear_removes_the_answer(server, browser, viewport):
    url, _ = server
    page = open_page(browser, url, viewport)
    draw_a_one(page)
    answered(page)
    page.get_by_role("button", name="Clear").click()
    no_answer(page)
    assert page.get_by_test_id("error").text_content() == ""
    page.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_an_error_replaces_the_answer(server, browser, viewport, tmp_path):
    from playwright.sync_api import expect

    url, _ = server
    page = open_page(browser, url, viewport)
    error = page.get_by_test_id("error")
    draw_a_one(page)
    answered(page)
    # an empty canvas sent for recognition (blanked without Clear, as DRAW_ON_PAD in screenshot.py draws)
    page.evaluate('() => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); dirty = true; }')
    page.get_by_role("button", name="Recognise").click()
    expect(error).to_contain_text("the image is empty: no digit found")
    no_answer(page)
    draw_a_one(page)  # an answer again, then a blank upload
    answered(page)
    expect(error).to_have_text("")
    blank = tmp_path / "blank.png"
    blank.write_bytes(png(np.zeros((60, 60))))
    page.get_by_test_id("file").set_input_files(str(blank))
    expect(error).to_contain_text("no digit found")
    no_answer(page)
    page.close()


#: counts answers the page has read (a wrapper of fetch's Response.json), to wait until a late one is handled
COUNT_ANSWERS = """() => {
  window.answersRead = 0;
  const fetch0 = window.fetch;
  window.fetch = (...args) => fetch0(...args).then(res => {
    const json = res.json.bind(res);
    res.json = () => json().finally(() => queueMicrotask(() => { window.answersRead += 1; }));
    return res;
  });
}"""


def test_an_answer_that_arrives_after_clear_is_not_shown(server, browser):
    url, gate = server
    page = open_page(browser, url, DESKTOP)
    page.evaluate(COUNT_ANSWERS)
    gate.open.clear()
    gate.arrived.clear()
    try:
        draw_a_one(page)
        assert gate.arrived.wait(30), "the drawing was not sent"
        page.get_by_role("button", name="Clear").click()
    finally:
        gate.open.set()
    page.wait_for_function("() => window.answersRead >= 1")  # the late answer came back and was handled
    no_answer(page)
    page.close()


#: the model menu: its box, and whether the chosen model's name shows in full inside it
MENU = """() => {
  const select = document.getElementById("model"), style = getComputedStyle(select);
  const box = select.getBoundingClientRect();
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = style.font;
  const text = select.selectedOptions[0].textContent;
  const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const oneLine = ["pre", "nowrap"].includes(style.whiteSpace);
  return {
    text, oneLine, textWidth: ctx.measureText(text).width, room, left: box.left, right: box.right,
    scrollWidth: select.scrollWidth, clientWidth: select.clientWidth,
    scrollHeight: select.scrollHeight, clientHeight: select.clientHeight,
    pageWidth: document.scrollingElement.scrollWidth, viewport: window.innerWidth, viewportHeight: window.innerHeight,
  };
}"""


def assert_menu_shows_the_full_name(page, key: str) -> dict:
    menu = page.evaluate(MENU)
    assert menu["text"] == LABELS[key], menu
    assert menu["pageWidth"] <= menu["viewport"], menu  # no sideways scrolling
    assert 0 <= menu["left"] and menu["right"] <= menu["viewport"], menu
    assert menu["scrollWidth"] <= menu["clientWidth"] and menu["scrollHeight"] <= menu["clientHeight"] + 1, menu
    if menu["oneLine"]:  # one line: the whole name fits beside the arrow
        assert menu["textWidth"] + 10 <= menu["room"], menu
    return menu


def test_on_a_phone_the_page_fits_and_the_model_name_shows_in_full(server, browser):
    from playwright.sync_api import expect

    url, _ = server
    page = open_page(browser, url, PHONE)
    assert_menu_shows_the_full_name(page, "mlp")
    page.get_by_test_id("model").select_option("cnn")
    assert_menu_shows_the_full_name(page, "cnn")
    page.get_by_test_id("model").select_option("mlp")
    draw_a_one(page)
    answered(page)
    expect(page.get_by_test_id("answered-by")).to_have_text(f"by {LABELS['mlp']}")
    menu = assert_menu_shows_the_full_name(page, "mlp")
    parts = page.evaluate("""() => ["prediction", "answered-by", "bars"].map(id => {
      const box = document.getElementById(id).getBoundingClientRect();
      return { id, left: box.left, right: box.right, bottom: box.bottom };
    })""")
    for part in parts:
        assert 0 <= part["left"] and part["right"] <= menu["viewport"], part
    assert parts[0]["bottom"] <= menu["viewportHeight"], parts[0]  # the answer is on the first screen
    page.close()


def test_on_a_desktop_the_page_fits_and_the_model_name_shows_in_full(server, browser):
    page = open_page(browser, server[0], DESKTOP)
    menu = assert_menu_shows_the_full_name(page, "mlp")
    assert menu["oneLine"], menu  # a desktop keeps the native one-line menu
    page.close()
