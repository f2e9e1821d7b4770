"""The digit recogniser: MNIST-style preprocessing, bad uploads, and the page in real headless Chromium."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import REPO, launch_chromium, require_shared_mnist, synthetic_digits
from PIL import Image

from nnlib import Adam, CNNSpec, MLPSpec, Network, Trainer
from nnstudy.digits import DigitImageError, load_image, mnist_style
from nnstudy.gui.app import create_app
from nnstudy.gui.models import Choice, find_models


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_preprocessing_crops_fits_and_centres():
    canvas = np.zeros((200, 300), dtype=np.float32)
    canvas[20:120, 200:240] = 1.0  # an off-centre bar: 100 tall, 40 wide
    digit = mnist_style(canvas)
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    rows, cols = np.nonzero(digit > 0.1)
    assert rows.max() - rows.min() + 1 <= 21 and cols.max() - cols.min() + 1 <= 10
    ys, xs = np.indices(digit.shape)
    assert abs((ys * digit).sum() / digit.sum() - 13.5) <= 0.6 and abs((xs * digit).sum() / digit.sum() - 13.5) <= 0.6
    dark_on_white = 1.0 - canvas  # uploads with dark ink on white paper give the same digit
    np.testing.assert_allclose(mnist_style(dark_on_white), digit, atol=1e-5)


def test_a_rendered_mnist_digit_is_recognised_like_the_original():
    images, labels = synthetic_digits(1500, 3)
    x = images.astype(np.float32) / 255
    net = Network(MLPSpec(hidden=(64,)), seed=0)
    Trainer(net, Adam(2e-3), max_epochs=6, patience=None).fit(x[:1200], labels[:1200], x[1200:], labels[1200:])
    digit = np.zeros((28, 28), np.float32)
    digit[4:24, 12:16] = 1.0  # a clean, centred vertical bar, already 20 pixels tall as in MNIST
    big = np.kron(digit, np.ones((10, 10)))  # as drawn on a 280x280 canvas
    again = mnist_style(load_image(png_bytes(255 * (1 - big))))
    assert abs(again.sum() - digit.sum()) / digit.sum() < 0.25
    assert np.argmax(net.predict_proba(again[None])) == np.argmax(net.predict_proba(digit[None]))


@pytest.fixture
def client(tmp_path):
    net = Network(MLPSpec(hidden=(16,)), seed=0)
    path = tmp_path / "m.npz"
    net.save(path)
    app = create_app([Choice("mlp", "test net", path, 0.5, None)])
    return app.test_client()


def test_bad_uploads_get_clear_messages_and_the_server_stays_up(client):
    r = client.post("/api/predict", data={"image": (io.BytesIO(b"%PDF-1.7 not an image"), "x.png")})
    assert r.status_code == 422 and "not a readable image" in r.get_json()["error"]
    r = client.post("/api/predict", data={"image": (io.BytesIO(b""), "empty.png")})
    assert r.status_code == 422 and "empty" in r.get_json()["error"]
    r = client.post("/api/predict", data={"image": (io.BytesIO(png_bytes(np.zeros((50, 50)))), "black.png")})
    assert r.status_code == 422 and "no digit found" in r.get_json()["error"]
    r = client.post("/api/predict", data={"image": (io.BytesIO(b"\0" * (9 * 1024 * 1024)), "huge.png")})
    assert r.status_code == 413 and "too large" in r.get_json()["error"]
    r = client.post("/api/predict", json={"image": "data:image/png;base64,@@@"})
    assert r.status_code == 422 and "could not be decoded" in r.get_json()["error"]
    r = client.post("/api/predict", json={"image": "data:,", "model": "resnet"})
    assert r.status_code == 400 and "unknown model" in r.get_json()["error"]
    digit = np.zeros((60, 60))
    digit[10:50, 28:33] = 255
    r = client.post("/api/predict", data={"image": (io.BytesIO(png_bytes(digit)), "one.png")})
    assert r.status_code == 200
    body = r.get_json()
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-4
    with pytest.raises(DigitImageError, match="too large"):
        load_image(png_bytes(np.zeros((5000, 4000))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained_results(tmp_path_factory):
    """A results folder with a BP network and a CNN trained briefly on real MNIST."""
    from nnstudy.mnist import read_idx

    folder = require_shared_mnist()
    x = read_idx(folder / "train-images-idx3-ubyte.gz")[:22000].astype(np.float32) / 255
    y = read_idx(folder / "train-labels-idx1-ubyte.gz")[:22000].astype(np.int64)
    results = tmp_path_factory.mktemp("gui") / "results"
    for cell, spec, epochs in (("adam-bn0-dp0", MLPSpec(), 4), ("cnn-adam-bn0-dp0", CNNSpec(), 2)):
        net = Network(spec, seed=0)
        h = Trainer(net, Adam(1e-3), max_epochs=epochs, patience=None).fit(x[:20000], y[:20000], x[20000:], y[20000:])
        run = results / "grid" / cell / "seed1"
        run.mkdir(parents=True)
        net.save(run / "model.npz")
        arch = "cnn" if cell.startswith("cnn") else "mlp"
        (run / "result.json").write_text(json.dumps(
            {"status": "ok", "arch": arch, "cell": cell, "seed": 1, "best_val_acc": h.best_val_acc, "test_acc": None}
        ))  # fmt: skip
    return results, folder


def test_page_in_headless_chromium(trained_results):
    from playwright.sync_api import expect, sync_playwright

    from nnstudy.mnist import read_idx

    results, mnist = trained_results
    assert [c.key for c in find_models(results)] in (["mlp", "cnn"], ["cnn", "mlp"])
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "nnstudy.gui.app", "--results", str(results), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        test_x = read_idx(mnist / "t10k-images-idx3-ubyte.gz")[:50]
        test_y = read_idx(mnist / "t10k-labels-idx1-ubyte.gz")[:50]
        index = 7
        upload = results.parent / f"digit_{test_y[index]}.png"
        upload.write_bytes(png_bytes(255 - np.kron(test_x[index], np.ones((8, 8), np.uint8))))  # dark ink on white
        errors: list[str] = []
        shots = REPO / "results" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            pad = page.get_by_test_id("pad").bounding_box()
            page.mouse.move(pad["x"] + 145, pad["y"] + 45)  # a "1", stroked as a user would
            page.mouse.down()
            for step in range(1, 21):
                page.mouse.move(pad["x"] + 145 - step * 0.8, pad["y"] + 45 + step * 9.5)
            page.mouse.up()
            prediction = page.get_by_test_id("prediction")
            expect(prediction).to_have_text("1")
            assert page.locator("#bars .bar").count() == 10
            page.screenshot(path=str(shots / "gui.png"))
            page.get_by_test_id("model").select_option("cnn")
            page.get_by_test_id("file").set_input_files(str(upload))
            expect(prediction).to_have_text(str(test_y[index]))
            bad = results.parent / "notes.txt"
            bad.write_text("not an image")
            page.get_by_test_id("file").set_input_files(str(bad))
            expect(page.get_by_test_id("error")).to_contain_text("not a readable image")
            browser.close()
        assert urllib.request.urlopen(url, timeout=2).status == 200  # still up after the bad upload
        assert not [e for e in errors if "422" not in e], errors
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "127.0.0.1" in server.stdout.read()
