"""Seaborn figures of the study, saved as PNG and SVG (atomically)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .tables import VARIANTS  # noqa: E402

sns.set_theme(context="notebook", style="whitegrid")
plt.rcParams["svg.hashsalt"] = "nnstudy"  # stable SVG ids, so unchanged figures are byte-identical
plt.rcParams["savefig.dpi"] = 120


def save_figure(fig: plt.Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``; each appears only when complete."""
    written = []
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg"):
        target = stem.with_suffix(f".{ext}")
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f".{ext}", dir=target.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else {})
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(target)
    plt.close(fig)
    return written


def load_histories(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-epoch and per-iteration histories of every grid run, long format."""
    epochs, iterations = [], []
    for path in paths:
        r = json.loads(Path(path).read_text())
        h = r["history"]
        ident = {k: r[k] for k in ("cell", "optimizer", "variant", "seed", "status")}
        for i, epoch in enumerate(h["epoch"]):
            for split, key in (("train", "train_acc"), ("validation", "val_acc")):
                epochs.append({**ident, "epoch": epoch, "split": split, "accuracy": h[key][i] * 100})
        losses = np.asarray([np.nan if v is None else v for v in h["iteration_loss"]], dtype=float)
        per_epoch = max(1, len(losses) // max(1, len(h["epoch"])))
        for j, value in enumerate(losses):
            iterations.append({**ident, "iteration": j + 1, "epoch": (j + 1) / per_epoch, "loss": value})
    return pd.DataFrame(epochs), pd.DataFrame(iterations)


def optimizer_curves(result_paths: Iterable[str | Path], out_dir: str | Path, smooth: int = 20) -> list[Path]:
    """For each optimiser on the plain network: training loss and train/validation accuracy (seed Figs 2, 3)."""
    epochs, iterations = load_histories(result_paths)
    written = []
    for optimizer in sorted(epochs["optimizer"].unique()):
        ep = epochs[(epochs["optimizer"] == optimizer) & (epochs["variant"] == "BPNN")]
        it = iterations[(iterations["optimizer"] == optimizer) & (iterations["variant"] == "BPNN")].copy()
        it["smoothed loss"] = it.groupby("seed")["loss"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
        sns.lineplot(it, x="epoch", y="smoothed loss", hue="seed", palette="crest", ax=ax_loss, legend="full")
        ax_loss.set(yscale="log", xlabel="epoch", ylabel=f"training loss (mean of {smooth} iterations)")
        ax_loss.set_title(f"{optimizer}: training loss")
        sns.lineplot(ep, x="epoch", y="accuracy", hue="split", style="split", errorbar="sd", marker="o", ax=ax_acc)
        ax_acc.set(ylabel="accuracy (%), mean ± sd over seeds")
        ax_acc.set_title(f"{optimizer}: train and validation accuracy")
        written += save_figure(fig, Path(out_dir) / f"curves_{optimizer}")
    return written


def grid_comparison(runs_csv: str | Path, out_dir: str | Path) -> list[Path]:
    """Validation and test accuracy of every cell, each seed a dot, mean ± sd as a bar."""
    runs = pd.read_csv(runs_csv)
    ok = runs[runs["status"] == "ok"].melt(
        id_vars=["optimizer", "variant", "seed"], value_vars=["best_val_acc", "test_acc"], var_name="split",
        value_name="accuracy",
    )  # fmt: skip
    ok["accuracy"] *= 100
    ok["split"] = ok["split"].map({"best_val_acc": "validation (best epoch)", "test_acc": "test"})
    order = [v for v in VARIANTS if v in set(ok["variant"])]
    grid = sns.catplot(
        ok, kind="point", x="variant", y="accuracy", hue="optimizer", col="split", order=order, errorbar="sd",
        dodge=0.3, linestyle="none", capsize=0.1, height=4, aspect=1.2,
    )  # fmt: skip
    for ax in grid.axes.flat:
        sns.stripplot(ok[ok["split"] == ax.get_title().split(" = ")[-1]], x="variant", y="accuracy",
                      hue="optimizer", order=order, dodge=True, alpha=0.4, ax=ax, legend=False)  # fmt: skip
        ax.set(xlabel="", ylabel="accuracy (%)")
    diverged = runs[runs["status"] == "diverged"]
    if len(diverged):
        grid.figure.suptitle(f"{len(diverged)} diverged run(s) not shown: " + ", ".join(diverged["cell"]), y=1.04)
    return save_figure(grid.figure, Path(out_dir) / "grid_comparison")


def search_figures(trials_csvs: dict[str, str | Path], out_dir: str | Path) -> list[Path]:
    """Optuna's optimisation history and learning rate against validation accuracy, one panel per study."""
    frames = []
    for study, path in trials_csvs.items():
        f = pd.read_csv(path)
        f["study"] = study
        frames.append(f)
    trials = pd.concat(frames, ignore_index=True)
    trials["val acc (%)"] = trials["value"] * 100
    trials["best so far (%)"] = trials["best_so_far"] * 100
    studies = list(trials_csvs)
    fig, axes = plt.subplots(1, len(studies), figsize=(5.5 * len(studies), 4), squeeze=False)
    for ax, study in zip(axes[0], studies):
        t = trials[trials["study"] == study]
        sns.scatterplot(t, x="number", y="val acc (%)", hue="state", ax=ax,
                        hue_order=["COMPLETE", "PRUNED", "FAIL"])  # fmt: skip
        ax.plot(t["number"], t["best so far (%)"], drawstyle="steps-post", color="black", label="best so far")
        ax.set(title=f"{study}: optimisation history", xlabel="trial", ylabel="validation accuracy (%)")
        ax.legend(loc="lower right")
    written = save_figure(fig, Path(out_dir) / "search_history")
    fig, axes = plt.subplots(1, len(studies), figsize=(5.5 * len(studies), 4), squeeze=False)
    for ax, study in zip(axes[0], studies):
        t = trials[trials["study"] == study]
        sns.scatterplot(t, x="lr", y="val acc (%)", hue="state", ax=ax, hue_order=["COMPLETE", "PRUNED", "FAIL"])
        ax.set(xscale="log", title=f"{study}: learning rate vs accuracy", xlabel="learning rate (log scale)",
               ylabel="validation accuracy (%)")  # fmt: skip
    return written + save_figure(fig, Path(out_dir) / "lr_vs_accuracy")
