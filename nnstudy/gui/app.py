"""The recogniser web app (Flask) for the study's dataset (digits by default), bound to 127.0.0.1 unless told
otherwise."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from flask import Flask, abort, jsonify, request
from werkzeug.exceptions import HTTPException

from nnlib import Network

from ..datasets import MNIST_CARD, class_names, read_card, text
from ..digits import DigitImageError, load_image, preprocess
from ..io import DamagedFileError, NotRegularFileError
from .models import Choice, find_models, load_models

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_CONCURRENT = 2  # predictions decoding and running at once; more wait (up to QUEUE_SECONDS), then get 429
QUEUE_SECONDS = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}


def create_app(
    choices: list[Choice],
    networks: dict[str, Network] | None = None,
    *,
    max_concurrent: int = MAX_CONCURRENT,
    queue_seconds: float = QUEUE_SECONDS,
    trusted_hosts: tuple[str, ...] | None = LOOPBACK,
    card: dict | None = None,
) -> Flask:
    """The app for the given checkpoints (the first is the default) and the dataset's ``card``
    (nnstudy.datasets: its class names, what one image shows and its preprocessing; MNIST's by default).

    Requests from other web sites are refused (``Origin`` or ``Sec-Fetch-Site``), and so is a ``Host`` that is
    not in ``trusted_hosts`` (DNS rebinding; None accepts any, for a server bound to another address). At most
    ``max_concurrent`` predictions run at once; the slots are ``app.extensions["nnstudy_gui_slots"]``."""
    if not choices:
        raise ValueError("no trained model: run the study first (snakemake --cores N), or pass --model")
    networks = networks or load_models(choices)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    if trusted_hosts is not None:
        app.config["TRUSTED_HOSTS"] = list(trusted_hosts)
    slots = threading.BoundedSemaphore(max_concurrent)
    app.extensions["nnstudy_gui_slots"] = slots
    card = card or MNIST_CARD
    _refuse_other_sites_and_large_bodies(app)
    _serve_page_and_lists(app, choices, card)
    workers = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="nnstudy-gui-predict")
    _serve_predictions(app, choices, networks, card, Limits(slots, workers, max_concurrent, queue_seconds))
    return app


@dataclass(frozen=True)
class Limits:
    """How many predictions run at once (``slots``, on ``workers``' threads) and how long a request waits."""

    slots: threading.BoundedSemaphore
    workers: ThreadPoolExecutor
    max_concurrent: int
    queue_seconds: float


def _refuse_other_sites_and_large_bodies(app: Flask) -> None:
    """Refuse cross-site requests (Sec-Fetch-Site, Origin) and bodies over the limit, chunked ones too; every
    error is JSON."""

    @app.before_request
    def same_origin_only():
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            abort(403, f"cross-origin request refused (Sec-Fetch-Site: {site}): use the page this server serves")
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, request.host_url):
            abort(403, f"cross-origin request refused (Origin: {origin}): use the page this server serves")
        return None

    @app.before_request
    def body_within_limit():
        return _whole_body_within_limit()

    @app.errorhandler(413)
    def too_large(_):
        return jsonify(error=f"the upload is too large (limit {MAX_UPLOAD_BYTES // (1024 * 1024)} MB)"), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=exc.description), exc.code


def _serve_page_and_lists(app: Flask, choices: list[Choice], card: dict) -> None:
    """The page, the dataset's card (its name, what one image shows, its classes) and the models."""
    page = resources.files("nnstudy.gui").joinpath("index.html").read_text(encoding="utf-8")

    @app.get("/")
    def index():
        headers = {"Content-Type": "text/html; charset=utf-8",
                   "Content-Security-Policy": "default-src 'self' 'unsafe-inline' data:"}  # fmt: skip
        return page, 200, headers

    @app.get("/api/dataset")
    def dataset():
        return jsonify(name=text(card, "display_name", "en"), item=text(card, "item", "en"),
                       classes=class_names(card, "en"), preprocess=card["preprocess"])  # fmt: skip

    @app.get("/api/models")
    def models():
        return jsonify([{"key": c.key, "label": c.label} for c in choices])


def _serve_predictions(
    app: Flask, choices: list[Choice], networks: dict[str, Network], card: dict, limits: Limits
) -> None:
    """POST /api/predict: an image (JSON data URL or a form upload) and a model key -> the class, its name,
    the probabilities and the 28x28 input the network saw."""
    item, names = text(card, "item", "en"), class_names(card, "en")

    @app.post("/api/predict")
    def predict():
        payload = _json_payload()
        key = request.form.get("model") or _field(payload, "model") or choices[0].key
        if key not in networks:
            return jsonify(error=f"unknown model {key!r}; choose one of {sorted(networks)}"), 400
        try:
            data = _image_bytes(payload)
        except DigitImageError as exc:
            return jsonify(error=str(exc)), 422
        if not limits.slots.acquire(timeout=limits.queue_seconds):
            busy = f"busy: {limits.max_concurrent} predictions are running; try again in a moment"
            return jsonify(error=busy), 429
        try:  # on the pool's own threads, so that only they ever hold a large decoded image (malloc arenas)
            seen, proba = limits.workers.submit(_recognise, data, networks[key], card["preprocess"], item).result()
        except DigitImageError as exc:
            return jsonify(error=str(exc)), 422
        finally:
            limits.slots.release()
        if not np.all(np.isfinite(proba)):
            return jsonify(error=f"the model {key!r} gave non-finite probabilities: its checkpoint is damaged"), 500
        answer = int(np.argmax(proba))
        return jsonify(model=key, digit=answer, label=names[answer],  # digit: the class's index (its label)
                       probabilities=[round(float(p), 6) for p in proba],
                       input=[[round(float(v), 3) for v in row] for row in seen])  # fmt: skip


def _recognise(data: bytes, network: Network, kind: str, item: str) -> tuple[np.ndarray, np.ndarray]:
    seen = preprocess(load_image(data), kind, item)
    return seen, network.predict_proba(seen[None])[0]


def _same_origin(origin: str, host_url: str) -> bool:
    a, b = urlsplit(origin), urlsplit(host_url)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _whole_body_within_limit() -> None:
    """A body sent without ``Content-Length`` (chunked) is read up to one byte over the limit and refused with
    413 when it is over, as one with a ``Content-Length`` is before it is read.  (Werkzeug's own limit on such
    a stream stops reading at the limit and returns what it has, so a JSON body was cut and called
    malformed.)  The body read is cached: the form parser and ``get_data`` use it."""
    if request.method != "POST" or request.content_length is not None:
        return None
    request.max_content_length = MAX_UPLOAD_BYTES + 1
    if len(request.get_data()) > MAX_UPLOAD_BYTES:
        abort(413)
    return None


def _json_payload() -> dict:
    """The JSON body as an object ({} for a form upload); 400 naming the fault for anything else."""
    if not request.is_json:
        return {}
    try:
        payload = json.loads(request.get_data())
    except RecursionError:
        abort(400, 'the JSON body is nested too deeply to decode: send an object with an "image" field')
    except ValueError as exc:
        abort(400, f"malformed JSON in the request body: {exc}")
    if not isinstance(payload, dict):
        abort(400, f'the JSON body must be an object with an "image" field, not {_json_type(payload)}')
    return payload


def _field(payload: dict, name: str) -> str | None:
    """A string field of the JSON body (None when absent); 400 naming the field when it is not a string."""
    value = payload.get(name)
    if value is not None and not isinstance(value, str):
        expected = "a data URL string (data:image/png;base64,...)" if name == "image" else "a string"
        abort(400, f'the JSON field "{name}" must be {expected}, not {_json_type(value)}')
    return value


def _json_type(value: object) -> str:
    return JSON_TYPES.get(type(value), "a string" if isinstance(value, str) else "null")


def _image_bytes(payload: dict) -> bytes:
    """The uploaded file, or a ``data:image/...;base64,`` URL from the drawing canvas."""
    if "image" in request.files:
        return request.files["image"].read()
    url = _field(payload, "image") or request.form.get("image") or ""
    if not url:
        raise DigitImageError("no image: draw one or choose a file")
    _, _, encoded = url.partition(",")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise DigitImageError("the drawing could not be decoded (expected a base64 data URL)") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Recognise a drawn or uploaded image with the study's best checkpoints (its dataset's classes)."
    )
    parser.add_argument("--results", default="results", help="the study's results folder (default: results)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH.npz",
                        help="use these checkpoints instead of the study's best ones (repeatable)")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8050)
    args = parser.parse_args(argv)
    if args.model:
        choices = []
        for item in args.model:
            name, sep, path = item.partition("=")
            if not sep or not name:
                parser.error(f"--model takes NAME=PATH.npz, got {item!r}")
            choices.append(Choice(name, f"{name} ({path})", Path(path), 0.0, None))
    else:
        try:
            choices = find_models(args.results)
        except (DamagedFileError, NotRegularFileError) as exc:  # a damaged result.json, named
            parser.error(str(exc))
    try:
        card = read_card(args.results)
        app = create_app(choices, trusted_hosts=LOOPBACK if args.host in LOOPBACK else None, card=card)
    except (ValueError, DamagedFileError, NotRegularFileError) as exc:
        parser.error(str(exc))
    names = ", ".join(c.key for c in choices)
    title = text(card, "display_name", "en")
    print(f"nnstudy {title} recogniser on http://{args.host}:{args.port}/ (models: {names})", flush=True)
    from werkzeug.serving import run_simple

    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
