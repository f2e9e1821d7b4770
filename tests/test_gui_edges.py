"""The recogniser's web app at its edges: deeply nested JSON, chunked bodies over the limit, undecodable
or unoffered image formats, and a damaged result.json at start."""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from werkzeug.serving import make_server

from nnlib import MLPSpec, Network
from nnstudy.gui.app import MAX_UPLOAD_BYTES, create_app, main
from nnstudy.gui.models import Choice


def image_bytes(fmt: str) -> bytes:
    """A clear upright stroke (a 'one') on black, in the given format."""
    digit = np.zeros((60, 60), dtype=np.uint8)
    digit[10:50, 28:33] = 255
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture
def app(tmp_path):
    path = tmp_path / "m.npz"
    Network(MLPSpec(hidden=(16,)), seed=0).save(path)
    return create_app([Choice("mlp", "test net", path, 0.5, None)])


@pytest.fixture
def server(app) -> Iterator[int]:
    """The app on a free port of 127.0.0.1 (Werkzeug's server, which decodes chunked bodies); yields the port."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_port
    finally:
        httpd.shutdown()
        thread.join()


def post_chunked(port: int, body: bytes) -> tuple[int, dict]:
    """POST ``body`` as JSON with ``Transfer-Encoding: chunked`` (no Content-Length)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.putrequest("POST", "/api/predict")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for start in range(0, len(body), 64 * 1024):
            part = body[start : start + 64 * 1024]
            connection.send(b"%x\r\n%s\r\n" % (len(part), part))
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_json_nested_100000_deep_gets_400_not_500(app):
    client = app.test_client()
    for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        r = client.post("/api/predict", data=body, content_type="application/json")
        assert r.status_code == 400, r.get_data()[:300]
        assert "nested too deeply" in r.get_json()["error"]


def test_a_chunked_body_over_the_limit_gets_413_like_one_with_content_length(app, server):
    over = json.dumps({"image": "data:image/png;base64," + "A" * MAX_UPLOAD_BYTES}).encode()
    status, body = post_chunked(server, over)
    assert status == 413 and "too large" in body["error"]
    r = app.test_client().post("/api/predict", data=over, content_type="application/json")  # Content-Length
    assert r.status_code == 413 and r.get_json() == body
    status, body = post_chunked(server, json.dumps({"image": data_url(image_bytes("PNG"))}).encode())
    assert status == 200 and len(body["probabilities"]) == 10  # within the limit, chunked still works


def test_error_messages_hold_no_python_object_reprs(app):
    client = app.test_client()
    for junk in (b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"GIF89a" + b"\xff" * 30):
        r = client.post("/api/predict", data={"image": (io.BytesIO(junk), "x.png")})
        message = r.get_json()["error"]
        assert r.status_code == 422 and "not a readable image" in message
        assert " at 0x" not in message and "<_io." not in message and "object" not in message, message


@pytest.mark.parametrize("fmt", ["TIFF", "PPM", "TGA"])
def test_only_the_formats_the_messages_name_are_decoded(app, fmt):
    client = app.test_client()
    r = client.post("/api/predict", data={"image": (io.BytesIO(image_bytes(fmt)), f"one.{fmt.lower()}")})
    assert r.status_code == 422
    assert r.get_json()["error"] == "not a readable image: the upload is not PNG, JPEG, GIF, BMP or WebP"
    for offered in ("PNG", "JPEG", "GIF", "BMP", "WEBP"):
        r = client.post("/api/predict", data={"image": (io.BytesIO(image_bytes(offered)), "one")})
        assert r.status_code == 200, (offered, r.get_json())


def test_a_damaged_result_json_is_named_at_start(tmp_path, capsys):
    seed = tmp_path / "results" / "grid" / "sgd" / "seed1"
    seed.mkdir(parents=True)
    Network(MLPSpec(hidden=(8,)), seed=0).save(seed / "model.npz")
    (seed / "result.json").write_text('{"status": "ok", "best_val_')  # cut short by a full disk
    with pytest.raises(SystemExit):
        main(["--results", str(tmp_path / "results"), "--port", "0"])
    error = capsys.readouterr().err
    assert str(seed / "result.json") in error and "rm '" in error
