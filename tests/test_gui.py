"""The digit recogniser: MNIST-style preprocessing, bad uploads, and the page in real headless Chromium."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

import numpy as np
import pytest
from conftest import REPO, launch_chromium, require_shared_mnist, synthetic_digits
from PIL import Image

from nnlib import Adam, CNNSpec, MLPSpec, Network, Trainer
from nnstudy.digits import MAX_SIDE, DigitImageError, load_image, mnist_style
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
    # MNIST's own digits have their centre of mass at pixel (14.0, 14.0) (mean of the training set)
    assert abs((ys * digit).sum() / digit.sum() - 14) <= 0.6 and abs((xs * digit).sum() / digit.sum() - 14) <= 0.6
    dark_on_white = 1.0 - canvas  # uploads with dark ink on white paper give the same digit
    np.testing.assert_allclose(mnist_style(dark_on_white), digit, atol=1e-5)


def test_a_rendered_mnist_digit_is_recognised_like_the_original():
    images, labels = synthetic_digits(1500, 3)
    x = images.astype(np.float32) / 255
    net = Network(MLPSpec(hidden=(64,)), seed=0)
    Trainer(net, Adam(2e-3), max_epochs=6, patience=None).fit(x[:1200], labels[:1200], x[1200:], labels[1200:])
    digit = np.zeros((28, 28), np.float32)
    digit[5:25, 12:17] = 1.0  # a clean bar, 20 pixels tall as in MNIST, centre of mass (14.5, 14)
    big = np.kron(digit, np.ones((10, 10)))  # as drawn on a 280x280 canvas
    again = mnist_style(load_image(png_bytes(255 * (1 - big))))
    assert abs(again.sum() - digit.sum()) / digit.sum() < 0.25
    assert np.argmax(net.predict_proba(again[None])) == np.argmax(net.predict_proba(digit[None]))


def test_a_bold_digit_that_covers_a_third_of_the_pad_is_read():
    """A thick 0 drawn on the 280x280 pad (white on black, 34 % of the pad is ink): most 8x8 tiles are ink,
    and the paper fitted to their median erased it ("no digit found"); 5 of the first 500 MNIST test digits
    drawn on the pad failed so in the default study."""
    from PIL import ImageDraw

    pad = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(pad).ellipse([50, 20, 230, 260], outline=255, width=55)
    assert 0.30 < np.asarray(pad).mean() / 255 < 0.40
    buffer = io.BytesIO()
    pad.save(buffer, format="PNG")
    digit = mnist_style(load_image(buffer.getvalue()))
    assert digit[14, 14] < 0.2 and digit[14, 5:9].max() > 0.5  # a ring: ink on the left, a hole in the middle


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


def huge_ink_png(side: int = 4000) -> bytes:
    """A small PNG (about 70 KB) of side x side opaque pixels: a white frame, black ink everywhere inside."""
    img = np.zeros((side, side, 4), np.uint8)
    img[..., 3] = 255
    img[[0, -1], :, :3] = img[:, [0, -1], :3] = 255
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_huge_image_is_downscaled_while_decoding_and_a_huger_header_is_refused_unread():
    data = huge_ink_png()
    assert len(data) < 200_000
    assert max(load_image(data).shape) <= MAX_SIDE  # reduced in its 8-bit mode before any float array
    buffer = io.BytesIO()
    Image.fromarray(np.full((3000, 4000), 255, np.uint8)).save(buffer, format="JPEG")
    with Image.open(io.BytesIO(buffer.getvalue())) as img:
        img.draft("L", (MAX_SIDE, MAX_SIDE))
        assert img.size == (2000, 1500)  # the decoder itself downscales a JPEG
    assert max(load_image(buffer.getvalue()).shape) <= MAX_SIDE
    # a valid 1x1 PNG whose header then claims a giant size: refused from the header alone
    tiny = png_bytes(np.zeros((1, 1)))
    for side, message in ((10_000, "too large .10000x10000 pixels"), (100_000, "too large")):
        ihdr = struct.pack(">II", side, side) + tiny[24:29]
        forged = tiny[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + tiny[33:]
        with pytest.raises(DigitImageError, match=message):
            load_image(forged)


def a_bar() -> np.ndarray:
    digit = np.zeros((60, 60))
    digit[10:50, 26:34] = 1.0
    return digit


def test_a_16_bit_png_is_read_with_its_full_range(client):
    digit = a_bar()
    sixteen = (60000 - 52000 * digit).astype(np.uint16)  # dark ink on white paper, 16 bits per pixel
    buffer = io.BytesIO()
    Image.fromarray(sixteen).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "I;16"
    np.testing.assert_allclose(mnist_style(load_image(buffer.getvalue())), mnist_style(digit), atol=0.02)
    r = client.post("/api/predict", data={"image": (io.BytesIO(buffer.getvalue()), "digit16.png")})
    assert r.status_code == 200, r.get_json()


def test_white_ink_on_a_transparent_background_is_read(client):
    digit = a_bar()
    white_ink = np.zeros((60, 60, 4), np.uint8)  # white strokes on a fully transparent background
    white_ink[digit > 0] = 255
    np.testing.assert_allclose(mnist_style(load_image(png_bytes(white_ink))), mnist_style(digit), atol=0.02)
    dark_ink = white_ink.copy()  # and dark ink on transparency still reads as before
    dark_ink[..., :3] = 0
    np.testing.assert_allclose(mnist_style(load_image(png_bytes(dark_ink))), mnist_style(digit), atol=0.02)
    r = client.post("/api/predict", data={"image": (io.BytesIO(png_bytes(white_ink)), "white.png")})
    assert r.status_code == 200, r.get_json()


def test_a_photo_stored_sideways_is_turned_upright_by_its_exif_orientation():
    upright = np.full((80, 60), 255, np.uint8)
    upright[10:70, 20:26] = upright[10:16, 20:50] = 0  # a "Γ": a bar with a flag to the right at the top
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": the camera stored the picture turned anticlockwise
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(buffer, format="JPEG", exif=exif)
    grey = load_image(buffer.getvalue())
    assert grey.shape == upright.shape
    assert np.abs(grey - upright / 255).mean() < 0.03


def test_cross_origin_requests_are_refused(client):
    body = {"image": "data:image/png;base64," + base64.b64encode(png_bytes(255 * np.eye(40))).decode()}
    r = client.post("/api/predict", json=body, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert "cross-origin request refused (Origin: http://evil.example)" in r.get_json()["error"]
    r = client.post("/api/predict", json=body, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "Sec-Fetch-Site: cross-site" in r.get_json()["error"]
    r = client.post("/api/predict", json=body, headers={"Origin": "null"})
    assert r.status_code == 403
    r = client.get("/api/models", headers={"Host": "rebound.example:8050"})  # DNS rebinding
    assert r.status_code == 400 and "not trusted" in r.get_json()["error"]
    same = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}  # what the page itself sends
    assert client.post("/api/predict", json=body, headers=same).status_code == 200


def test_concurrent_predictions_are_bounded(tmp_path):
    net = Network(MLPSpec(hidden=(16,)), seed=0)
    net.save(tmp_path / "m.npz")
    app = create_app([Choice("mlp", "test net", tmp_path / "m.npz", 0.5, None)], max_concurrent=2, queue_seconds=0)
    client = app.test_client()
    upload = png_bytes(255 * np.eye(40))
    slots = app.extensions["nnstudy_gui_slots"]
    assert slots.acquire(blocking=False) and slots.acquire(blocking=False)  # two predictions in progress
    try:
        r = client.post("/api/predict", data={"image": (io.BytesIO(upload), "d.png")})
        assert r.status_code == 429 and "busy" in r.get_json()["error"]
    finally:
        slots.release()
        slots.release()
    assert client.post("/api/predict", data={"image": (io.BytesIO(upload), "d.png")}).status_code == 200
    assert slots.acquire(blocking=False) and slots.acquire(blocking=False)  # every slot came back
    slots.release()
    slots.release()


def test_a_waiting_prediction_runs_when_a_slot_frees(tmp_path):
    net = Network(MLPSpec(hidden=(16,)), seed=0)
    net.save(tmp_path / "m.npz")
    app = create_app([Choice("mlp", "test net", tmp_path / "m.npz", 0.5, None)], max_concurrent=1, queue_seconds=600)
    slots = app.extensions["nnstudy_gui_slots"]
    slots.acquire()
    answers = []
    waiter = threading.Thread(target=lambda: answers.append(app.test_client().post(
        "/api/predict", data={"image": (io.BytesIO(png_bytes(255 * np.eye(40))), "d.png")}).status_code))  # fmt: skip
    waiter.start()
    while not slots._cond._waiters:  # the request is queued on the semaphore (CPython's Condition), not refused
        assert waiter.is_alive() and not answers, answers
        time.sleep(0.01)
    assert answers == []
    slots.release()
    waiter.join()
    assert answers == [200]


def test_non_finite_probabilities_are_an_error_not_nan_in_the_json(tmp_path):
    net = Network(MLPSpec(hidden=(16,)), seed=0)
    for value in net.params.values():
        value.fill(np.nan)  # a damaged checkpoint, already loaded
    app = create_app([Choice("mlp", "test net", tmp_path / "unused.npz", 0.5, None)], {"mlp": net})
    r = app.test_client().post("/api/predict", data={"image": (io.BytesIO(png_bytes(255 * np.eye(40))), "d.png")})
    assert r.status_code == 500 and "non-finite probabilities" in r.get_json()["error"]
    assert "NaN" not in r.get_data(as_text=True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"image": 3}', 'JSON field "image" must be a data URL string (data:image/png;base64,...), not a number'),
        ('{"image": [1, 2]}', '"image" must be a data URL string (data:image/png;base64,...), not a list'),
        ('{"image": {"a": 1}}', '"image" must be a data URL string (data:image/png;base64,...), not an object'),
        ("[1, 2]", 'the JSON body must be an object with an "image" field, not a list'),
        ('{"image": "data:,", "model": ["cnn"]}', 'JSON field "model" must be a string, not a list'),
        ('{"image": "data:image/png;base64,', "malformed JSON in the request body"),
    ],
)
def test_json_of_the_wrong_shape_gets_a_4xx_naming_the_field(client, body, message):
    r = client.post("/api/predict", data=body, content_type="application/json")
    assert r.status_code == 400 and message in r.get_json()["error"], r.get_json()
    assert "draw a digit" not in r.get_json()["error"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def trained_results(tmp_path_factory):
    """A results folder with a BP network and a CNN trained briefly on real MNIST (seeded; 4 and 2 epochs on
    20,000 digits: about 2 minutes of CPU)."""
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


@contextlib.contextmanager
def serve(results):
    """``nnstudy-gui`` on a free port of 127.0.0.1, as a real server process: (its URL, the process)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "nnstudy.gui.app", "--results", str(results), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):  # waits for the server to answer (a condition), at most a minute
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_page_in_headless_chromium(trained_results):
    from playwright.sync_api import expect, sync_playwright

    from nnstudy.mnist import read_idx

    results, mnist = trained_results
    assert [c.key for c in find_models(results)] in (["mlp", "cnn"], ["cnn", "mlp"])
    with serve(results) as (url, server):
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
    assert "127.0.0.1" in server.stdout.read()


WIDEST_OPTION = """() => {
  const select = document.getElementById("model"), style = getComputedStyle(select);
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = style.font;
  const widest = Math.max(...[...select.options].map(o => ctx.measureText(o.textContent).width));
  const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return { widest, room, right: select.getBoundingClientRect().right, viewport: window.innerWidth };
}"""


def test_model_menu_shows_full_labels_and_a_change_predicts_again(trained_results):
    from playwright.sync_api import expect, sync_playwright

    from nnstudy.mnist import read_idx

    results, mnist = trained_results
    digit = read_idx(mnist / "t10k-images-idx3-ubyte.gz")[0]
    upload = results.parent / "upload.png"
    upload.write_bytes(png_bytes(255 - np.kron(digit, np.ones((8, 8), np.uint8))))
    label = {c.key: c.label for c in find_models(results)}
    with serve(results) as (url, _), sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1000, "height": 760})
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        menu = page.get_by_test_id("model")
        assert [o.strip() for o in menu.locator("option").all_text_contents()] == list(label.values())
        size = page.evaluate(WIDEST_OPTION)
        assert size["widest"] + 10 <= size["room"], size  # the longest label fits, beside the arrow
        assert size["right"] <= size["viewport"], size
        prediction = page.get_by_test_id("prediction")
        menu.select_option("mlp")
        page.get_by_test_id("file").set_input_files(str(upload))
        expect(prediction).to_have_attribute("data-model", "mlp")
        for model in ("cnn", "mlp"):  # after an upload, each change of model asks the new model
            with page.expect_request(lambda r: r.url.endswith("/api/predict") and r.method == "POST") as request:
                menu.select_option(model)
            assert request.value  # a new request (Chromium does not show a multipart body with a file)
            expect(prediction).to_have_attribute("data-model", model)
            expect(page.get_by_test_id("answered-by")).to_have_text(f"by {label[model]}")
        page.locator("#clear").click()
        pad = page.get_by_test_id("pad").bounding_box()
        page.mouse.move(pad["x"] + 140, pad["y"] + 40)  # then a drawing: a change of model asks again too
        page.mouse.down()
        for step in range(1, 21):
            page.mouse.move(pad["x"] + 140, pad["y"] + 40 + step * 10)
        page.mouse.up()
        expect(prediction).to_have_attribute("data-model", "mlp")
        with page.expect_request(lambda r: r.url.endswith("/api/predict") and r.method == "POST") as request:
            menu.select_option("cnn")
        assert '"model":"cnn"' in request.value.post_data
        expect(prediction).to_have_attribute("data-model", "cnn")
        browser.close()


def photo_of_paper(digit: np.ndarray, rng: np.random.Generator, side: int = 320) -> bytes:
    """A simulated phone photo of an MNIST digit written on paper: dark ink on grey-white paper under uneven
    light (a gradient in a random direction and a vignette, from about 45 % to 90 % of full light), sensor
    noise of 6 grey levels, a warm colour cast, saved as a JPEG of quality 80."""
    height = int(rng.integers(150, 230))
    ink = np.asarray(Image.fromarray(digit).resize((height, height), Image.Resampling.BICUBIC), np.float32) / 255
    page = np.zeros((side, side), np.float32)
    top, left = rng.integers(10, side - height - 10, 2)
    page[top : top + height, left : left + height] = np.clip(ink, 0, 1)
    yy, xx = np.mgrid[-1 : 1 : side * 1j, -1 : 1 : side * 1j]
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.72 + 0.14 * (np.cos(angle) * xx + np.sin(angle) * yy) - 0.1 * (xx**2 + yy**2)
    grey = 255 * light * (0.95 - 0.8 * page) + rng.normal(0, 6, page.shape)
    rgb = np.clip(np.stack([grey, 0.97 * grey, 0.9 * grey], axis=-1), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def test_photos_of_digits_on_paper_are_read(trained_results, record_property):
    from nnstudy.mnist import read_idx

    results, mnist = trained_results
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz")[:200]
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz")[:200]
    rng = np.random.default_rng(0)
    photos = [photo_of_paper(digit, rng) for digit in images]
    client = create_app(find_models(results)).test_client()
    accuracy = {}
    for model in ("cnn", "mlp"):
        right = 0
        for photo, label in zip(photos, labels, strict=True):
            r = client.post("/api/predict", data={"image": (io.BytesIO(photo), "photo.jpg"), "model": model})
            assert r.status_code == 200, r.get_json()
            right += r.get_json()["digit"] == label
        accuracy[model] = right / len(labels)
        record_property(f"photo_accuracy_{model}", float(accuracy[model]))  # plain float: xdist sends it
    print(f"photos of paper digits read right: CNN {accuracy['cnn']:.1%}, MLP {accuracy['mlp']:.1%}")
    assert accuracy["cnn"] >= 0.95, accuracy
