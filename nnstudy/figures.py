"""Seaborn figures of the study, saved as PNG and SVG (atomically)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.text  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .i18n import LANGS, N_, translator  # noqa: E402
from .io import atomic_write_bytes, read_json  # noqa: E402
from .tables import VARIANTS, budget_table, main_arm, optimizer_name  # noqa: E402

sns.set_theme(context="notebook", style="whitegrid")
plt.rcParams["svg.hashsalt"] = "nnstudy"  # stable SVG ids, so unchanged figures are byte-identical
plt.rcParams["savefig.dpi"] = 120

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei")

#: every label a figure shows, in English; other languages come from the message catalog (nnstudy.i18n)
LABELS = {
    "epoch": N_("epoch"),
    "seed": N_("seed"),
    "split": N_("split"),
    "train": N_("train"),
    "validation": N_("validation"),
    "loss_y": N_("training loss ({n}-iteration mean)"),
    "loss_title": N_("{opt}: training loss, one line per seed"),
    "acc_y": N_("accuracy (%)"),
    "acc_title": N_("{opt}: train and validation accuracy"),
    "per_seed": N_("{split}, one line per seed"),
    "mean_all_run": N_("{split}, mean ± sd over seeds (while all run)"),
    "best_marker": N_("each run's best epoch (the model kept)"),
    "val_best": N_("validation (best epoch)"),
    "test": N_("test"),
    "accuracy": N_("accuracy (%)"),
    "optimizer": N_("optimizer"),
    "diverged": N_("{n} diverged run(s) not shown: {cells}"),
    "trial": N_("trial"),
    "val_acc": N_("validation accuracy (%)"),
    "best_so_far": N_("best so far (complete trials)"),
    "history_title": N_("Learning-rate searches: validation accuracy of each trial"),
    "lr": N_("learning rate (log scale)"),
    "lr_title": N_("Learning-rate searches: learning rate vs validation accuracy"),
    "state": N_("state"),
    "seed_lr": N_("the seed report's rate"),
    "chosen_lr": N_("the chosen rate (best trial)"),
    "COMPLETE": N_("complete"),
    "PRUNED": N_("pruned (last reported value)"),
    "FAIL": N_("failed"),
    "no_epochs": N_("{opt}: no successful run to plot (every run diverged or collapsed)"),
    "params": N_("params"),
    "opt_suffix": N_(", {opt}"),
    "no_cnn": N_("no finished CNN run"),
    "test_acc": N_("test accuracy (%)"),
    "deep_title": N_("CNN vs BP network: test accuracy"),
    "time_epoch": N_("training time per epoch (s)"),
    "time_title": N_("cost per epoch (1 thread)"),
    "arm": N_("arm"),
    "replication": N_("replication (the seed's rates)"),
    "tuned": N_("tuned (searched rates)"),
    "budget_x": N_("search trials k"),
    "budget_y": N_("expected best validation accuracy (%)"),
    "budget_title": N_("Expected best of k trials (Dodge et al. 2019)"),
    "study": N_("search"),
    "claims_title": N_("Declared claims: mean paired difference, > 0 in the claimed direction"),
    "claims_acc": N_("accuracy (pp)"),
    "claims_epochs": N_("epochs to the best"),
    "ci_unadjusted": N_("95 % interval (unadjusted)"),
    "ci_adjusted": N_("interval at Holm's level (adjusted)"),
    "verdict": N_("verdict"),
    "supported": N_("supported"),
    "contradicted": N_("contradicted"),
    "inconclusive": N_("inconclusive"),
    "arm_replication": N_("replication arm"),
    "arm_tuned": N_("tuned arm"),
    "no_claims": N_("no declared claim could be tested"),
    "mlp": N_("BP network"),
    "cnn": N_("CNN"),
    "true_digit": N_("true class"),
    "pred_digit": N_("predicted class"),
    "confusion_title": N_("Test-set confusion matrices\n"
                          "(numbers: counts of errors; colour: errors as % of the true class's images)"),
    "confusion_panel": N_("{model}: test accuracy {acc:.2f} %"),
    "error_share": N_("errors (% of the row's images)"),
    "misclassified_title": N_("{model}: misclassified test images (true → predicted), {n} of {total}"),
    "weights_title": N_("BP network: first-layer weights of the {n} hidden units\n"
                        "(each 28 × 28, scaled to its own min–max)"),
    "no_model": N_("no finished run with a checkpoint: no model to show"),
    "no_mlp": N_("no finished BP network with a checkpoint: no weights to show"),
    "no_errors": N_("{model}: no misclassified test image"),
}  # fmt: skip


def use_language(lang: str) -> dict[str, str]:
    """Labels for ``lang``; for Chinese, a CJK font when one is installed (else a ValueError)."""
    if lang not in LANGS:
        raise ValueError(f"unknown figure language {lang!r}; choose one of {list(LANGS)}")
    if lang == "zh":
        from matplotlib import font_manager

        installed = {f.name for f in font_manager.fontManager.ttflist}
        if not any(f in installed for f in CJK_FONTS):  # installed after matplotlib cached its font list
            for path in font_manager.findSystemFonts():
                if any(tag in Path(path).name for tag in ("CJK", "wqy", "SourceHan")):
                    font_manager.fontManager.addfont(path)
            installed = {f.name for f in font_manager.fontManager.ttflist}
        found = [f for f in CJK_FONTS if f in installed]
        if not found:
            raise ValueError(f"no CJK font for Chinese figure labels; install one of {CJK_FONTS} (fonts-noto-cjk)")
        plt.rcParams["font.sans-serif"] = [found[0], *plt.rcParams["font.sans-serif"]]
        plt.rcParams["axes.unicode_minus"] = False
    _ = translator(lang)
    return {key: _(label) for key, label in LABELS.items()}


#: results/figures has both; the lab report embeds PNGs only
FORMATS = ("png", "svg")


def save_figure(fig: plt.Figure, stem: str | Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` (or the given formats); each appears only when complete."""
    written = []
    # the tight bounding box once for both formats (bbox_inches="tight" would draw the figure again for each)
    fig.canvas.draw()
    bbox = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    for ext in formats:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, bbox_inches=bbox, metadata={"Date": None} if ext == "svg" else {})
        target = Path(stem).with_suffix(f".{ext}")
        atomic_write_bytes(target, buffer.getvalue())
        written.append(target)
    plt.close(fig)
    return written


#: the lab report prints a figure this wide; every label must be at least MIN_PRINT_PT there
PRINT_WIDTH_CM = 16.0
MIN_PRINT_PT = 8.5
#: a state's colour and marker in the search figures (pruned and completed trials apart)
STATE_STYLE = {"COMPLETE": ("#4c72b0", "o"), "PRUNED": ("#dd8452", "X"), "FAIL": ("#c44e52", "s")}
VERDICT_COLOURS = {"supported": "#1a9850", "contradicted": "#d73027", "inconclusive": "#7f7f7f"}
ARM_MARKERS = {"replication": "o", "tuned": "D"}


def print_rc(width_in: float) -> dict[str, float]:
    """Font sizes for a figure ``width_in`` inches wide, so that printed ``PRINT_WIDTH_CM`` wide its
    smallest text (tick labels, legends) is ``MIN_PRINT_PT``."""
    small = MIN_PRINT_PT * max(1.0, width_in / (PRINT_WIDTH_CM / 2.54))
    return {"font.size": small, "xtick.labelsize": small, "ytick.labelsize": small, "legend.fontsize": small,
            "legend.title_fontsize": small, "axes.labelsize": 1.08 * small, "axes.titlesize": 1.12 * small,
            "figure.titlesize": 1.2 * small, "figure.labelsize": 1.08 * small}  # fmt: skip


def smallest_print_pt(fig: plt.Figure, print_width_cm: float = PRINT_WIDTH_CM) -> float:
    """The smallest visible text of ``fig`` in points once the saved figure is printed ``print_width_cm``
    wide (the saved figure is its tight bounding box, as ``save_figure`` writes it)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width_in = fig.get_tightbbox(renderer).padded(plt.rcParams["savefig.pad_inches"]).width
    texts = [t for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip() and t.get_window_extent(renderer).width > 0]  # fmt: skip
    return min((t.get_fontsize() for t in texts), default=np.inf) * (print_width_cm / 2.54) / width_in


def integer_epochs(*axes: plt.Axes) -> None:
    """Whole-number ticks on the x axis (epochs, trials)."""
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def note_figure(text: str, stem: str | Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """A figure that only says ``text`` (nothing to draw)."""
    with plt.rc_context(print_rc(6.0)):
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
        return save_figure(fig, stem, formats)


def load_histories(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Per-epoch and per-iteration histories of every grid run, long format, and the runs' optimizers
    (each file read once: the histories make them large). ``best_epoch``: the epoch of the model kept."""
    epochs, iterations, optimizers = [], [], set()
    for path in paths:
        r = read_json(path)
        optimizers.add(r["optimizer"])
        h = r["history"]
        ident = {k: r[k] for k in ("cell", "optimizer", "variant", "seed", "status")}
        ident["arm"] = r.get("arm", "tuned")
        ident["best_epoch"] = h.get("best_epoch", r.get("epochs_to_best"))
        for i, epoch in enumerate(h["epoch"]):
            for split, key in (("train", "train_acc"), ("validation", "val_acc")):
                epochs.append({**ident, "epoch": epoch, "split": split, "accuracy": h[key][i] * 100})
        losses = np.asarray([np.nan if v is None else v for v in h["iteration_loss"]], dtype=float)
        per_epoch = max(1, len(losses) // max(1, len(h["epoch"])))
        for j, value in enumerate(losses):
            iterations.append({**ident, "iteration": j + 1, "epoch": (j + 1) / per_epoch, "loss": value})
    ident_columns = ["cell", "optimizer", "variant", "seed", "status", "arm", "best_epoch"]
    return (pd.DataFrame(epochs, columns=[*ident_columns, "epoch", "split", "accuracy"]),
            pd.DataFrame(iterations, columns=[*ident_columns, "iteration", "epoch", "loss"]),
            sorted(optimizers))  # fmt: skip


def epochs_all_running(epochs: pd.DataFrame, by: str = "seed") -> np.ndarray:
    """The epochs that every run (``by``) reached: where a mean over the runs is a mean over all of them
    (after the first run stops, a "mean" would be that of the runs still going)."""
    if epochs.empty:
        return np.array([], dtype=int)
    sets = [set(group["epoch"]) for _, group in epochs.groupby(by)]
    return np.array(sorted(set.intersection(*sets)), dtype=int)


def optimizer_curves(
    result_paths: Iterable[str | Path],
    out_dir: str | Path,
    smooth: int = 20,
    lang: str = "en",
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """For each optimiser on the plain network (seed Figs 2, 3): training loss per seed, and train and
    validation accuracy per seed with each run's best epoch marked and the mean ± sd over the seeds drawn
    only over the epochs where all of them still run; in the tuned arm (the replication arm when it is the
    only one)."""
    t = use_language(lang)
    result_paths = list(result_paths)
    epochs, iterations, optimizers = load_histories(result_paths)
    arm = main_arm(epochs["arm"])
    epochs, iterations = epochs[epochs["arm"] == arm], iterations[iterations["arm"] == arm]
    colours = {"train": "#4c72b0", "validation": "#dd8452"}
    written = []
    for optimizer in optimizers:
        opt = optimizer_name(optimizer)
        stem = Path(out_dir) / f"curves_{optimizer}"
        ok = epochs["status"] == "ok"
        ep = epochs[(epochs["optimizer"] == optimizer) & (epochs["variant"] == "BPNN") & ok]
        it = iterations[(iterations["optimizer"] == optimizer) & (iterations["variant"] == "BPNN")
                        & (iterations["status"] == "ok")].copy()  # fmt: skip
        if ep.empty:  # every plain run of this optimizer diverged or collapsed
            written += note_figure(t["no_epochs"].format(opt=opt), stem, formats)
            continue
        it["smoothed loss"] = it.groupby("seed")["loss"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
        # a smoothed line needs no more than ~1000 points per seed (fewer to draw, and a smaller SVG)
        it = it[it.groupby("seed").cumcount() % max(1, len(it) // (1000 * max(1, it["seed"].nunique()))) == 0]
        width = 11.0
        with plt.rc_context(print_rc(width)):
            fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(width, 4.6))
            for _, run in it.groupby("seed"):
                ax_loss.plot(run["epoch"], run["smoothed loss"], color="#2a6f73", lw=0.6, alpha=0.5)
            ax_loss.set(yscale="log", xlabel=t["epoch"], ylabel=t["loss_y"].format(n=smooth))
            ax_loss.set_title(t["loss_title"].format(opt=opt))
            handles = {split: accuracy_lines(ax_acc, ep[ep["split"] == split], colours[split], t, split)
                       for split in ("train", "validation")}  # fmt: skip
            val = ep[(ep["split"] == "validation") & (ep["epoch"] == ep["best_epoch"])]
            best = ax_acc.scatter(val["epoch"], val["accuracy"], marker="*", s=110, color="#c44e52",
                                  edgecolor="black", linewidth=0.5, zorder=5, label=t["best_marker"])  # fmt: skip
            blank = plt.Line2D([], [], ls="", label=" ")
            # two legend columns (filled top to bottom): train and the best epochs, validation
            handles = [*handles["train"], best, *handles["validation"], blank]
            ax_acc.set(xlabel=t["epoch"], ylabel=t["acc_y"])
            ax_acc.set_title(t["acc_title"].format(opt=opt))
            integer_epochs(ax_loss, ax_acc)
            ax_loss.set_xlim(left=0)
            fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
            fig.tight_layout()
            written += save_figure(fig, stem, formats)
    return written


def accuracy_lines(ax: plt.Axes, sel: pd.DataFrame, colour: str, t: dict[str, str], split: str) -> list:
    """One split's accuracy per seed (thin), and its mean ± sd over the epochs in which every seed still runs;
    returns the two legend entries."""
    for _, run in sel.groupby("seed"):
        run = run.sort_values("epoch")
        ax.plot(run["epoch"], run["accuracy"], color=colour, lw=0.7, alpha=0.45)
    common = sel[sel["epoch"].isin(epochs_all_running(sel))]
    stats = common.groupby("epoch")["accuracy"].agg(["mean", "std"]).fillna(0.0)
    ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=colour,
                    alpha=0.2, lw=0)  # fmt: skip
    (mean_line,) = ax.plot(stats.index, stats["mean"], color=colour, lw=2.2)
    mean_line.set_label(t["mean_all_run"].format(split=t[split]))
    return [plt.Line2D([], [], color=colour, lw=0.8, label=t["per_seed"].format(split=t[split])), mean_line]


def grid_comparison(
    runs_csv: str | Path, out_dir: str | Path, lang: str = "en", formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """Validation and test accuracy of every cell, each seed a dot, mean ± sd as a bar; a row per arm."""
    t = use_language(lang)
    runs = pd.read_csv(runs_csv)
    runs = runs[runs["arch"] == "mlp"]
    ok = runs[runs["status"] == "ok"].melt(
        id_vars=["arm", "optimizer", "variant", "seed"], value_vars=["best_val_acc", "test_acc"], var_name="split",
        value_name="accuracy",
    )  # fmt: skip
    arms = [a for a in ("replication", "tuned") if a in set(ok["arm"])]
    ok["arm"] = ok["arm"].map({a: t[f"arm_{a}"] for a in arms})  # short: the row titles are beside the panels
    ok["accuracy"] *= 100
    splits = [t["val_best"], t["test"]]
    ok["split"] = ok["split"].map({"best_val_acc": splits[0], "test_acc": splits[1]})
    ok["optimizer"] = ok["optimizer"].map(optimizer_name)
    ok = ok.rename(columns={"optimizer": t["optimizer"]})
    order = [v for v in VARIANTS if v in set(ok["variant"])]
    if ok.empty:
        return note_figure(t["diverged"].format(n=len(runs), cells=""), Path(out_dir) / "grid_comparison", formats)
    dodge = 0.3 if ok[t["optimizer"]].nunique() > 1 else False
    rows = [t[f"arm_{a}"] for a in arms]
    with plt.rc_context(print_rc(11.0)):
        grid = sns.catplot(
            ok, kind="point", x="variant", y="accuracy", hue=t["optimizer"], col="split", col_order=splits,
            order=order, row="arm", row_order=rows, errorbar="sd", dodge=dodge, linestyle="none", capsize=0.1,
            height=3.6, aspect=1.25, sharey=False, margin_titles=True,
        )  # fmt: skip
        grid.set_titles(col_template="{col_name}", row_template="{row_name}")
        for (row, split), ax in grid.axes_dict.items():
            sel = ok[(ok["split"] == split) & (ok["arm"] == row)]
            sns.stripplot(sel, x="variant", y="accuracy", hue=t["optimizer"], order=order, dodge=dodge, jitter=False,
                          alpha=0.4, ax=ax, legend=False)  # fmt: skip
            ax.set(xlabel="", ylabel=t["accuracy"])
            ax.tick_params(axis="x", labelrotation=20)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
        diverged = runs[runs["status"] != "ok"]
        if len(diverged):
            grid.figure.suptitle(t["diverged"].format(n=len(diverged), cells=", ".join(diverged["cell"])), y=1.04)
        return save_figure(grid.figure, Path(out_dir) / "grid_comparison", formats)


def deep_vs_shallow(
    runs_csv: str | Path, out_dir: str | Path, lang: str = "en", formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """The CNN against the plain BP network: test accuracy per seed, and training time per epoch. The
    optimizer is named in the titles when there is one, else in one legend."""
    t = use_language(lang)
    runs = pd.read_csv(runs_csv)
    runs = runs[runs["arm"] == main_arm(runs["arm"])]
    cnn = runs[(runs["arch"] == "cnn") & (runs["status"] == "ok")]
    plain = runs[(runs["variant"] == "BPNN") & (runs["status"] == "ok") & runs["optimizer"].isin(cnn["optimizer"])]
    both = pd.concat([plain, cnn])
    stem = Path(out_dir) / "deep_vs_shallow"
    if both.empty:
        return note_figure(t["no_cnn"], stem, formats)
    both["test acc (%)"] = both["test_acc"] * 100
    # the model on two lines, so that neighbouring tick labels never run together
    both["model"] = both["variant"] + "\n(" + both["n_params"].map(lambda v: f"{v:,}") + " " + t["params"] + ")"
    both["optimizer"] = both["optimizer"].map(optimizer_name)
    both = both.rename(columns={"optimizer": t["optimizer"]})
    names = list(dict.fromkeys(both[t["optimizer"]]))
    suffix = t["opt_suffix"].format(opt=names[0]) if len(names) == 1 else ""
    width = 9.0
    with plt.rc_context(print_rc(width)):
        fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(width, 4))
        dodge = 0.3 if len(names) > 1 else False
        sns.pointplot(both, x="model", y="test acc (%)", hue=t["optimizer"], errorbar="sd", capsize=0.1,
                      linestyle="none", dodge=dodge, ax=ax_acc, legend=len(names) > 1)  # fmt: skip
        sns.stripplot(both, x="model", y="test acc (%)", hue=t["optimizer"], jitter=False, dodge=dodge, alpha=0.4,
                      ax=ax_acc, legend=False)  # fmt: skip
        ax_acc.set(xlabel="", ylabel=t["test_acc"], title=t["deep_title"] + suffix)
        sns.barplot(both, x="model", y="time_per_epoch", hue=t["optimizer"], errorbar="sd", ax=ax_time, legend=False)
        ax_time.set(xlabel="", ylabel=t["time_epoch"], title=t["time_title"] + suffix)
        fig.tight_layout()
        return save_figure(fig, stem, formats)


def study_model(study: str, best: dict | None) -> tuple[str, str]:
    """A search's architecture and optimizer: from its best.json, else from its name (``lr-[cnn-]<opt>-...``)."""
    if best and "arch" in best and "optimizer" in best:
        return best["arch"], best["optimizer"]
    parts = study.split("-")
    return ("cnn", parts[2]) if len(parts) > 2 and parts[1] == "cnn" else ("mlp", parts[1] if len(parts) > 1 else "")


def best_so_far(values: pd.Series, states: pd.Series) -> pd.Series:
    """The best value of the complete trials up to each trial (in the given order), carried across the pruned
    and failed ones so that the line never breaks; NaN before the first complete trial."""
    return values.where(states == "COMPLETE").cummax().ffill()


def search_figures(
    trials_csvs: dict[str, str | Path],
    out_dir: str | Path,
    lang: str = "en",
    formats: tuple[str, ...] = FORMATS,
    *,
    seed_lrs: dict[str, float] | None = None,
    best_jsons: dict[str, str | Path] | None = None,
) -> list[Path]:
    """Optuna's optimisation history, learning rate against validation accuracy, and the expected best of k
    trials: ``search_history``, ``lr_vs_accuracy``, ``search_budget``.

    ``seed_lrs``: the seed report's rate per optimizer (e.g. ``{"sgd": 0.02, "adam": 0.001}``), marked as a
    dashed line in the BP network's studies; ``best_jsons``: each study's ``best.json`` (default: the one next
    to its trials.csv, when present), whose ``lr`` is marked as the chosen rate."""
    t = use_language(lang)
    trials, bests = load_trials(trials_csvs, best_jsons)
    columns = 3 if len(trials_csvs) > 4 else min(2, len(trials_csvs))
    with plt.rc_context(print_rc(panel_width(columns))):
        written = draw_search_history(trials, columns, t, Path(out_dir), formats)
        written += draw_lr_vs_accuracy(trials, bests, seed_lrs or {}, columns, t, Path(out_dir), formats)
    return written + draw_search_budget(list(trials_csvs.values()), t, Path(out_dir), formats)


def load_trials(
    trials_csvs: dict[str, str | Path], best_jsons: dict[str, str | Path] | None
) -> tuple[pd.DataFrame, dict[str, dict | None]]:
    """Every study's trials (one per slot: a killed trial's rerun replaces it), in study order, with their
    validation accuracy in %; and each study's best.json (None when absent)."""
    frames, bests = [], {}
    for study, path in trials_csvs.items():
        frames.append(pd.read_csv(path).assign(study=study))
        best_path = Path((best_jsons or {}).get(study, Path(path).with_name("best.json")))
        bests[study] = read_json(best_path) if best_path.exists() else None
    trials = pd.concat(frames, ignore_index=True)
    trials = trials[trials["holds_slot"].astype(bool)].copy()
    trials["val acc (%)"] = trials["value"] * 100
    return trials, bests


def state_handles(trials: pd.DataFrame, t: dict[str, str]) -> list:
    """Legend entries for the trial states present."""
    present = [s for s in STATE_STYLE if s in set(trials["state"])]
    return [plt.Line2D([], [], ls="", marker=STATE_STYLE[s][1], color=STATE_STYLE[s][0], markersize=8, label=t[s])
            for s in present]  # fmt: skip


def scatter_states(ax: plt.Axes, sel: pd.DataFrame, x: str) -> None:
    """Trials against ``x``, one colour and marker per state."""
    for state, (colour, marker) in STATE_STYLE.items():
        part = sel[sel["state"] == state]
        if len(part):
            ax.scatter(part[x], part["val acc (%)"], color=colour, marker=marker, s=36, zorder=3,
                       edgecolor="white" if marker == "o" else None, linewidth=0.4)  # fmt: skip


def draw_search_history(
    trials: pd.DataFrame, columns: int, t: dict[str, str], out_dir: Path, formats: tuple[str, ...]
) -> list[Path]:
    """``search_history``: each study's trials in slot order and the best so far."""
    studies = list(dict.fromkeys(trials["study"]))
    fig, axes = panels(len(studies), columns)
    for ax, study in zip(axes, studies):
        sel = trials[trials["study"] == study].sort_values("slot")
        scatter_states(ax, sel, "slot")
        ax.step(sel["slot"], best_so_far(sel["val acc (%)"], sel["state"]), where="post", color="black", lw=1.3,
                zorder=4)  # fmt: skip
        ax.set_title(study)
        integer_epochs(ax)
    label_panels(fig, axes, columns, t["trial"], t["val_acc"])
    handles = [*state_handles(trials, t), plt.Line2D([], [], color="black", lw=1.3, label=t["best_so_far"])]
    fig.suptitle(t["history_title"])
    finish_panels(fig, handles)
    return save_figure(fig, out_dir / "search_history", formats)


def draw_lr_vs_accuracy(
    trials: pd.DataFrame, bests: dict[str, dict | None], seed_lrs: dict[str, float], columns: int,
    t: dict[str, str], out_dir: Path, formats: tuple[str, ...],
) -> list[Path]:  # fmt: skip
    """``lr_vs_accuracy``: each study's trials against their rate, the seed's rate dashed (BP network) and
    the chosen rate as a star."""
    studies = list(dict.fromkeys(trials["study"]))
    fig, axes = panels(len(studies), columns)
    seed_drawn = chosen_drawn = False
    for ax, study in zip(axes, studies):
        scatter_states(ax, trials[trials["study"] == study], "lr")
        arch, optimizer = study_model(study, bests[study])
        if arch == "mlp" and optimizer in seed_lrs:
            ax.axvline(seed_lrs[optimizer], color="#555555", ls="--", lw=1.4, zorder=2)
            seed_drawn = True
        best = bests[study]
        if best and best.get("lr") is not None:
            ax.axvline(best["lr"], color="#2ca02c", ls="-", lw=1.4, zorder=2)
            if best.get("best_val_acc") is not None:
                ax.scatter([best["lr"]], [best["best_val_acc"] * 100], marker="*", s=220, color="#2ca02c",
                           edgecolor="black", linewidth=0.6, zorder=5)  # fmt: skip
            chosen_drawn = True
        ax.set(xscale="log", title=study)
    label_panels(fig, axes, columns, t["lr"], t["val_acc"])
    handles = state_handles(trials, t)
    if seed_drawn:
        handles.append(plt.Line2D([], [], color="#555555", ls="--", lw=1.4, label=t["seed_lr"]))
    if chosen_drawn:
        handles.append(plt.Line2D([], [], color="#2ca02c", ls="-", lw=1.4, marker="*", markersize=13,
                                  markeredgecolor="black", label=t["chosen_lr"]))  # fmt: skip
    fig.suptitle(t["lr_title"])
    finish_panels(fig, handles)
    return save_figure(fig, out_dir / "lr_vs_accuracy", formats)


def draw_search_budget(
    trials_csvs: list[str | Path], t: dict[str, str], out_dir: Path, formats: tuple[str, ...]
) -> list[Path]:
    """``search_budget``: the expected best validation accuracy of k trials, per study."""
    budget = budget_table(trials_csvs)
    budget["study"] = budget["study"] + " (N = " + budget["n_trials"].astype(str) + ")"
    width = 9.0
    with plt.rc_context(print_rc(width)):
        fig, ax = plt.subplots(figsize=(width, 4.5))
        sns.lineplot(budget, x="k", y="expected_best_val_acc", hue="study", marker="o", ax=ax)
        ax.set(xlabel=t["budget_x"], ylabel=t["budget_y"], title=t["budget_title"])
        integer_epochs(ax)
        ax.legend(title=t["study"], loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
        return save_figure(fig, out_dir / "search_budget", formats)


def forest_panel(ax: plt.Axes, rows: pd.DataFrame, arms: list[str], labels: dict[str, str]) -> None:
    """One metric's claims: per claim and arm the estimate signed toward the claim (> 0: as claimed), its
    unadjusted interval (thick) and its interval at Holm's level (thin), coloured by verdict."""
    order = reading_order(rows)
    step = 0.36 if len(arms) > 1 else 0.0
    for k, arm in enumerate(arms):
        offset = (k - (len(arms) - 1) / 2) * step
        for _, row in rows[rows["arm"] == arm].iterrows():
            y = order.index(row["claim"]) + offset
            sign = 1.0 if row["direction"] == "increase" else -1.0
            colour = VERDICT_COLOURS.get(row["verdict"], "black")
            adjusted = sorted(sign * np.array([row["ci_adj_low"], row["ci_adj_high"]]))
            unadjusted = sorted(sign * np.array([row["ci_low"], row["ci_high"]]))
            ax.plot(adjusted, [y, y], color=colour, lw=0.9, solid_capstyle="butt")
            ax.plot(unadjusted, [y, y], color=colour, lw=3.2, solid_capstyle="butt")
            ax.scatter([sign * row["estimate"]], [y], marker=ARM_MARKERS.get(arm, "s"), s=45, color=colour,
                       edgecolor="black", linewidth=0.6, zorder=3)  # fmt: skip
    ax.axvline(0, color="black", lw=1)
    names = [("└ " if row_role(rows, c) == "component" else "") + labels.get(c, c) for c in order]
    ax.set_yticks(range(len(order)), names)
    ax.set_ylim(len(order) - 0.5, -0.5)  # the first claim on top
    for y in np.arange(len(order) - 1) + 0.5:
        ax.axhline(y, color="#dddddd", lw=0.8)
    ax.grid(axis="y", visible=False)


def reading_order(rows: pd.DataFrame) -> list[str]:
    """The claims in declared order, each composite followed by its components (claims.csv lists the
    components first)."""
    parts = rows.get("part_of", pd.Series("", index=rows.index)).fillna("")
    order = []
    for claim in dict.fromkeys(rows.loc[parts == "", "claim"]):
        order.append(claim)
        order += list(dict.fromkeys(rows.loc[parts == claim, "claim"]))
    return order


def row_role(rows: pd.DataFrame, claim: str) -> str:
    return str(rows.loc[rows["claim"] == claim, "role"].iloc[0])


def claims_forest(
    claims_csv: str | Path, out_dir: str | Path, lang: str = "en", formats: tuple[str, ...] = FORMATS,
    labels: dict[str, str] | None = None,
) -> list[Path]:  # fmt: skip
    """``claims_forest``: every declared claim (components too) in each arm, a panel for accuracy and one
    for epochs to the best; ``labels`` maps a claim id to its statement."""
    t = use_language(lang)
    claims = pd.read_csv(claims_csv)
    stem = Path(out_dir) / "claims_forest"
    if claims.empty:
        return note_figure(t["no_claims"], stem, formats)
    counts = claims["metric"].isin(["epochs_to_best", "epochs"])
    parts = [(t["claims_acc"], claims[~counts]), (t["claims_epochs"], claims[counts])]
    parts = [(title, rows) for title, rows in parts if len(rows)]
    arms = [a for a in ARM_MARKERS if a in set(claims["arm"])] + sorted(set(claims["arm"]) - set(ARM_MARKERS))
    heights = [len(set(rows["claim"])) * max(1, len(arms)) * 0.28 + 0.6 for _, rows in parts]
    width = 8.0
    with plt.rc_context(print_rc(width)):
        fig, axes = plt.subplots(len(parts), 1, figsize=(width, 1.4 + sum(heights)), squeeze=False,
                                 gridspec_kw={"height_ratios": heights})  # fmt: skip
        for ax, (title, rows) in zip(axes[:, 0], parts, strict=True):
            forest_panel(ax, rows, arms, labels or {})
            ax.set_title(title, loc="left")
        fig.suptitle(t["claims_title"])
        verdicts = [v for v in VERDICT_COLOURS if v in set(claims["verdict"])]
        handles = [plt.Line2D([], [], color=VERDICT_COLOURS[v], lw=3.2, label=t[v]) for v in verdicts]
        handles += [plt.Line2D([], [], color="grey", lw=3.2, label=t["ci_unadjusted"]),
                    plt.Line2D([], [], color="grey", lw=0.9, label=t["ci_adjusted"])]  # fmt: skip
        handles += [plt.Line2D([], [], ls="", marker=ARM_MARKERS.get(a, "s"), color="white", markeredgecolor="black",
                               markersize=8, label=t.get(f"arm_{a}", a)) for a in arms]  # fmt: skip
        fig.tight_layout()
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False)
        return save_figure(fig, stem, formats)


def panel_width(columns: int) -> float:
    return 3.7 * columns


def panels(n: int, columns: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    """``n`` panels in rows of ``columns`` (the unused ones hidden)."""
    rows = -(-n // columns)
    width = min(n, columns)
    fig, axes = plt.subplots(rows, width, figsize=(panel_width(width), 2.9 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def label_panels(fig: plt.Figure, axes: list[plt.Axes], columns: int, xlabel: str, ylabel: str) -> None:
    """One x label under the panels and one y label beside them (not one per panel)."""
    for ax in axes:
        ax.set(xlabel="", ylabel="")
    fig.supxlabel(xlabel)
    fig.supylabel(ylabel)


def finish_panels(fig: plt.Figure, handles: list) -> None:
    """Lay the panels out and put the legend under them, outside every axes."""
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles) if len(handles) < 4
               else 2, frameon=False)  # fmt: skip
