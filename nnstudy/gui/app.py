"""The digit-recognition web app (Flask), bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import base64
import binascii
from importlib import resources
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from nnlib import Network

from ..digits import DigitImageError, load_image, mnist_style
from .models import Choice, find_models, load_models

MAX_UPLOAD_BYTES = 8 * 1024 * 1024


def create_app(choices: list[Choice], networks: dict[str, Network] | None = None) -> Flask:
    """The app for the given checkpoints (the first is the default)."""
    if not choices:
        raise ValueError("no trained model: run the study first (snakemake --cores N), or pass --model")
    networks = networks or load_models(choices)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    page = resources.files("nnstudy.gui").joinpath("index.html").read_text(encoding="utf-8")

    @app.get("/")
    def index():
        headers = {"Content-Type": "text/html; charset=utf-8",
                   "Content-Security-Policy": "default-src 'self' 'unsafe-inline' data:"}  # fmt: skip
        return page, 200, headers

    @app.get("/api/models")
    def models():
        return jsonify([{"key": c.key, "label": c.label} for c in choices])

    @app.post("/api/predict")
    def predict():
        key = request.form.get("model") or (request.get_json(silent=True) or {}).get("model") or choices[0].key
        if key not in networks:
            return jsonify(error=f"unknown model {key!r}; choose one of {sorted(networks)}"), 400
        try:
            data = _image_bytes()
            digit = mnist_style(load_image(data))
        except DigitImageError as exc:
            return jsonify(error=str(exc)), 422
        proba = networks[key].predict_proba(digit[None])[0]
        return jsonify(
            model=key,
            digit=int(np.argmax(proba)),
            probabilities=[round(float(p), 6) for p in proba],
            input=[[round(float(v), 3) for v in row] for row in digit],
        )

    @app.errorhandler(413)
    def too_large(_):
        return jsonify(error=f"the upload is too large (limit {MAX_UPLOAD_BYTES // (1024 * 1024)} MB)"), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=exc.description), exc.code

    return app


def _image_bytes() -> bytes:
    """The uploaded file, or a ``data:image/...;base64,`` URL from the drawing canvas."""
    if "image" in request.files:
        return request.files["image"].read()
    payload = request.get_json(silent=True) or {}
    url = payload.get("image") or request.form.get("image") or ""
    if not url:
        raise DigitImageError("no image: draw a digit or choose a file")
    _, _, encoded = url.partition(",")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise DigitImageError("the drawing could not be decoded (expected a base64 data URL)") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Recognise a drawn digit with the study's best checkpoints.")
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
        choices = find_models(args.results)
    try:
        app = create_app(choices)
    except ValueError as exc:
        parser.error(str(exc))
    names = ", ".join(c.key for c in choices)
    print(f"nnstudy digit recogniser on http://{args.host}:{args.port}/ (models: {names})", flush=True)
    from werkzeug.serving import run_simple

    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
