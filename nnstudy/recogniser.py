"""Task 4 measured: the recogniser's own path on the dataset's real test images.

Each of the first ``n`` test images is drawn as the web page's pad would send it (a 280x280 PNG, white ink
on black), then read exactly as the GUI reads an upload (``load_image``, then the dataset's ``preprocess``:
MNIST's recipe for digits, Fashion-MNIST's for photos) and classified by
the checkpoints the GUI offers (``find_models``: the best BP network and the best CNN by validation
accuracy).  The same digits fed straight to the network give the reference, so the difference is what
the GUI's preprocessing costs.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nnlib import Network

from .datasets import MNIST_CARD, text
from .digits import DigitImageError, load_image, preprocess
from .gui.models import find_models
from .io import atomic_write_bytes, atomic_write_json
from .mnist import load_dataset

PAD_SIDE = 280  # the web page's drawing pad
GALLERY = 30  # digits shown in the figure: the first FIRST, then the first misreadings
FIRST = 20


def as_drawn_png(digit: np.ndarray) -> bytes:
    """A 28x28 digit in [0, 1] as the drawing pad's PNG: scaled to 280x280, white ink on black."""
    pixels = Image.fromarray(np.round(np.clip(digit.reshape(28, 28), 0.0, 1.0) * 255).astype(np.uint8))
    buffer = io.BytesIO()
    pixels.resize((PAD_SIDE, PAD_SIDE), Image.Resampling.BILINEAR).save(buffer, format="PNG")
    return buffer.getvalue()


def gui_inputs(digits: np.ndarray, kind: str = "digits", item: str = "digit") -> tuple[np.ndarray, np.ndarray]:
    """What the network sees when each image comes through the GUI (preprocessed by ``kind``), and which
    images the GUI could read at all (it answers "no digit found" for the others; their input is left blank)."""
    seen, readable = np.zeros((len(digits), 28, 28), dtype=np.float32), np.ones(len(digits), dtype=bool)
    for i, digit in enumerate(digits):
        try:
            seen[i] = preprocess(load_image(as_drawn_png(digit)), kind, item)
        except DigitImageError:
            readable[i] = False
    return seen, readable


def evaluate_recogniser(
    results_dir: str | Path,
    dataset_path: str | Path,
    out_json: str | Path,
    out_figure: str | Path,
    n: int = 500,
    card: dict | None = None,
) -> dict[str, Any]:
    """Accuracy of each GUI model on ``n`` test digits through the GUI's path and fed directly; a figure of
    the first digits as the GUI reads them, with the best model's answers."""
    choices = find_models(results_dir)
    if not choices:  # every run diverged or collapsed: said so, and the report is still built
        note = f"no finished run with a checkpoint under {results_dir}: the recogniser has no model"
        summary = {"n_digits": 0, "models": [], "unreadable": [], "mean_ink": None, "mean_ink_unreadable": None,
                   "note": note}  # fmt: skip
        atomic_write_bytes(out_figure, note_png(summary["note"]))
        atomic_write_json(out_json, summary)
        return summary
    data = load_dataset(dataset_path, "float32")
    x, y = data["x_test"][:n], data["y_test"][:n]
    card = card or MNIST_CARD
    seen, readable = gui_inputs(x, card["preprocess"], text(card, "item", "en"))
    models = []
    for choice in choices:
        net = Network.load(choice.path)
        direct = net.predict_proba(x).argmax(axis=1)
        via_gui = np.where(readable, net.predict_proba(seen).argmax(axis=1), -1)  # -1: "no digit found"
        models.append({"model": choice.key, "label": choice.label, "checkpoint": str(choice.path),
                       "accuracy_gui": float(np.mean(via_gui == y)), "accuracy_direct": float(np.mean(direct == y)),
                       "agreement": float(np.mean(via_gui == direct)), "predictions": via_gui.tolist()})  # fmt: skip
    summary = {"n_digits": int(len(y)), "pad": f"{PAD_SIDE}x{PAD_SIDE} PNG, white ink on black",
               "preprocess": card["preprocess"],
               "unreadable": np.flatnonzero(~readable).tolist(), "mean_ink": float(x.mean()),
               "mean_ink_unreadable": float(x[~readable].mean()) if (~readable).any() else None,
               "models": models}  # fmt: skip
    best = np.array(models[0]["predictions"])
    shown = list(range(min(FIRST, len(y))))
    shown += [i for i in np.flatnonzero(best != y) if i not in shown][: GALLERY - len(shown)]
    atomic_write_bytes(out_figure, gallery_png(seen[shown], y[shown], best[shown]))
    atomic_write_json(out_json, summary)
    return summary


def note_png(text: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def gallery_png(seen: np.ndarray, labels: np.ndarray, predictions: np.ndarray) -> bytes:
    """The digits as the GUI reads them, each titled "true → read" (∅: no digit found), misreadings in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 10
    rows = max(1, -(-len(seen) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 1.05))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, image, label, read in zip(np.ravel(axes), seen, labels, predictions[: len(seen)], strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(
            f"{label} → {read if read >= 0 else '∅'}", fontsize=9, color="black" if label == read else "#c0392b"
        )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
