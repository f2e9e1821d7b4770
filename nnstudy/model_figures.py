"""The study's best checkpoints on the test set: confusion matrices, misclassified digits, first-layer weights.

``summarise_models`` picks the checkpoints the GUI and the recogniser use (``find_models``: the best BP
network and the best CNN by validation accuracy), classifies the test split with each and writes
``results/model_figures.json``; ``draw_model_figures`` draws ``confusion``, ``misclassified`` and
``first_layer_weights`` from that file and the dataset, in any language of ``LABELS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnlib import Network

from .figures import FORMATS, note_figure, plt, print_rc, save_figure, use_language
from .gui.models import find_models
from .io import atomic_write_json, read_json
from .mnist import load_dataset

CLASSES = 10
MISCLASSIFIED = 40  # misclassified test digits listed per model in the json (the first ones)
GALLERY = {"mlp": 24, "cnn": 16}  # of them, shown in the gallery
GALLERY_COLUMNS = 8


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(classes, classes)


def misclassified(y_true: np.ndarray, y_pred: np.ndarray, limit: int = MISCLASSIFIED) -> list[dict[str, int]]:
    """The first ``limit`` errors: index into the split, true and predicted label."""
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))[:limit]
    return [{"index": int(i), "true": int(y_true[i]), "predicted": int(y_pred[i])} for i in wrong]


def summarise_models(
    results_dir: str | Path, dataset_path: str | Path, out_json: str | Path, limit: int = MISCLASSIFIED
) -> dict[str, Any]:
    """Classify the test split with the GUI's checkpoints (``find_models``) and write the summary json:
    per model its checkpoint, test accuracy, confusion matrix and first ``limit`` misclassified digits.
    With no checkpoint (every run diverged) the file says so and lists no model."""
    choices = sorted(find_models(results_dir), key=lambda c: c.key != "mlp")  # the BP network first
    summary: dict[str, Any] = {"split": "test", "rows": "true class", "columns": "predicted class", "models": []}
    if not choices:
        summary["note"] = f"no finished run with a checkpoint under {results_dir}: no model to show"
        atomic_write_json(out_json, summary)
        return summary
    data = load_dataset(dataset_path, "float32")
    x, y = data["x_test"], data["y_test"]
    summary["n_test"] = int(len(y))
    for choice in choices:
        predictions = Network.load(str(choice.path)).predict(x)
        errors = misclassified(y, predictions, limit)
        summary["models"].append({
            "model": choice.key, "label": choice.label, "checkpoint": str(choice.path), "val_acc": choice.val_acc,
            "test_acc": float(np.mean(predictions == y)), "n_misclassified": int(np.sum(predictions != y)),
            "confusion": confusion_matrix(y, predictions).tolist(), "misclassified": errors,
        })  # fmt: skip
    atomic_write_json(out_json, summary)
    return summary


def resolve_checkpoint(checkpoint: str, summary_json: str | Path) -> Path:
    """A checkpoint path as the json holds it (relative to the project folder, where the jobs run); from
    elsewhere, relative to the folder holding ``results/``."""
    path = Path(checkpoint)
    if path.is_absolute() or path.exists():
        return path
    return Path(summary_json).resolve().parent.parent / path


def draw_confusion(
    summary: dict, out_dir: str | Path, t: dict[str, str], formats: tuple[str, ...], names: list[str] | None = None
) -> list[Path]:
    """``confusion``: the models' matrices side by side, labelled with the class ``names``; colour: each row's
    errors as a % of the true class's test images (the diagonal, the correct ones, in grey), numbers: the
    counts of errors."""
    names = names or [str(k) for k in range(CLASSES)]
    words = any(len(n) > 2 for n in names)
    stem = Path(out_dir) / "confusion"
    models = summary["models"]
    if not models:
        return note_figure(t["no_model"], stem, formats)
    width = (6.2 if words else 5.2) * len(models) + 1.2
    with plt.rc_context(print_rc(width)):
        fig, axes = plt.subplots(1, len(models), figsize=(width, 6.4 if words else 5.4), squeeze=False)
        rates = []
        for m in models:
            counts = np.asarray(m["confusion"], dtype=float)
            rates.append(100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1))
        off = [np.where(np.eye(CLASSES, dtype=bool), np.nan, r) for r in rates]
        vmax = max(1.0, max(float(np.nanmax(r)) for r in off))
        for ax, m, errors in zip(axes[0], models, off, strict=True):
            counts = np.asarray(m["confusion"], dtype=int)
            ax.imshow(np.where(np.eye(CLASSES, dtype=bool), 1.0, np.nan), cmap="Greys", vmin=0, vmax=4)
            image = ax.imshow(errors, cmap="Reds", vmin=0, vmax=vmax)
            for i in range(CLASSES):
                for j in range(CLASSES):
                    if i != j and counts[i, j]:
                        dark = errors[i, j] > 0.55 * vmax
                        ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                                color="white" if dark else "black")  # fmt: skip
            ax.set_xticks(range(CLASSES), names, rotation=45 if words else 0, ha="right" if words else "center")
            ax.set_yticks(range(CLASSES), names)
            ax.grid(False)
            ax.set(xlabel=t["pred_digit"], ylabel=t["true_digit"],
                   title=t["confusion_panel"].format(model=t[m["model"]], acc=100 * m["test_acc"]))  # fmt: skip
        fig.suptitle(t["confusion_title"])
        fig.tight_layout()
        colourbar = fig.colorbar(image, ax=list(axes[0]), shrink=0.85, pad=0.02)
        colourbar.set_label(t["error_share"])
        return save_figure(fig, stem, formats)


def draw_misclassified(
    summary: dict,
    x_test: np.ndarray | None,
    out_dir: str | Path,
    t: dict[str, str],
    formats: tuple[str, ...],
    names: list[str] | None = None,
) -> list[Path]:
    """``misclassified``: a gallery of each model's first misclassified test images, "true → predicted" by
    class ``names`` (on two lines when they are words)."""
    names = names or [str(k) for k in range(CLASSES)]
    joiner = "\n→ " if any(len(n) > 2 for n in names) else " → "
    stem = Path(out_dir) / "misclassified"
    models = summary["models"]
    if not models or x_test is None:
        return note_figure(t["no_model"], stem, formats)
    shown = {m["model"]: m["misclassified"][: GALLERY.get(m["model"], 16)] for m in models}
    rows = {key: max(1, -(-len(errors) // GALLERY_COLUMNS)) for key, errors in shown.items()}
    width = 6.6
    with plt.rc_context(print_rc(width)):
        tall = 0.25 if "\n" in joiner else 0.0
        fig = plt.figure(figsize=(width, sum((0.95 + tall) * r + 0.45 for r in rows.values())))
        subfigs = fig.subfigures(len(models), 1, height_ratios=[0.95 * rows[m["model"]] + 0.45 for m in models],
                                 squeeze=False)  # fmt: skip
        for sub, m in zip(subfigs[:, 0], models, strict=True):
            errors = shown[m["model"]]
            if not errors:
                sub.text(0.5, 0.5, t["no_errors"].format(model=t[m["model"]]), ha="center", va="center")
                continue
            sub.suptitle(t["misclassified_title"].format(model=t[m["model"]], n=len(errors),
                                                         total=m["n_misclassified"]))  # fmt: skip
            axes = sub.subplots(rows[m["model"]], GALLERY_COLUMNS, squeeze=False)
            for ax in axes.flat:
                ax.axis("off")
            for ax, error in zip(axes.flat, errors, strict=False):
                ax.imshow(x_test[error["index"]].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
                ax.set_title(names[error["true"]] + joiner + names[error["predicted"]], pad=2,
                             fontsize="small" if "\n" in joiner else None)  # fmt: skip
        return save_figure(fig, stem, formats)


def weight_grid(weights: np.ndarray, columns: int | None = None) -> np.ndarray:
    """First-layer weights ``(784, hidden)`` as one image: each unit's 28x28 weights scaled to its own
    min–max (0..1), in a grid of ``columns`` (about square), separated by 1-pixel gaps (NaN)."""
    w = np.asarray(weights, dtype=float)
    hidden = w.shape[1]
    columns = columns or int(np.ceil(np.sqrt(hidden)))
    rows = -(-hidden // columns)
    low, high = w.min(axis=0), w.max(axis=0)
    scaled = (w - low) / np.where(high > low, high - low, 1.0)
    grid = np.full((rows * 29 + 1, columns * 29 + 1), np.nan)
    for k in range(hidden):
        r, c = divmod(k, columns)
        grid[1 + 29 * r : 29 * (r + 1), 1 + 29 * c : 29 * (c + 1)] = scaled[:, k].reshape(28, 28)
    return grid


def draw_first_layer_weights(
    summary: dict, summary_json: str | Path, out_dir: str | Path, t: dict[str, str], formats: tuple[str, ...]
) -> list[Path]:
    """``first_layer_weights``: the BP network's first-layer weight vectors as 28x28 images (CS231n)."""
    stem = Path(out_dir) / "first_layer_weights"
    mlp = next((m for m in summary["models"] if m["model"] == "mlp"), None)
    if mlp is None:
        return note_figure(t["no_mlp"] if summary["models"] else t["no_model"], stem, formats)
    net = Network.load(str(resolve_checkpoint(mlp["checkpoint"], summary_json)))
    weights = net.params[net.weight_names[0]]
    width = 6.6
    with plt.rc_context(print_rc(width)):
        fig, ax = plt.subplots(figsize=(width, width + 0.6))
        cmap = plt.get_cmap("gray").with_extremes(bad="white")
        ax.imshow(weight_grid(weights), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.axis("off")
        ax.set_title(t["weights_title"].format(n=weights.shape[1]))
        return save_figure(fig, stem, formats)


def draw_model_figures(
    summary_json: str | Path, dataset_path: str | Path | None, out_dir: str | Path, *, lang: str = "en",
    formats: tuple[str, ...] = FORMATS, names: list[str] | None = None,
) -> list[Path]:  # fmt: skip
    """``confusion``, ``misclassified`` and ``first_layer_weights`` (each in ``formats``) in ``out_dir``,
    labelled in ``lang``, from ``summarise_models``' json and the prepared dataset (its test digits); a
    figure with a note when the study has no model."""
    t = use_language(lang)
    summary = read_json(summary_json)
    x_test = None
    if summary["models"] and dataset_path is not None:
        x_test = load_dataset(dataset_path, "float32")["x_test"]
    return [*draw_confusion(summary, out_dir, t, formats, names),
            *draw_misclassified(summary, x_test, out_dir, t, formats, names),
            *draw_first_layer_weights(summary, summary_json, out_dir, t, formats)]  # fmt: skip
