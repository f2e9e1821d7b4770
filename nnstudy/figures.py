"""Seaborn figures of the study, saved as PNG and SVG (atomically)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_write_bytes, read_json  # noqa: E402
from .tables import VARIANTS, budget_table, main_arm, optimizer_name  # noqa: E402

sns.set_theme(context="notebook", style="whitegrid")
plt.rcParams["svg.hashsalt"] = "nnstudy"  # stable SVG ids, so unchanged figures are byte-identical
plt.rcParams["savefig.dpi"] = 120

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei")

LABELS = {
    "en": {
        "epoch": "epoch", "seed": "seed", "split": "split", "train": "train", "validation": "validation",
        "loss_y": "training loss (mean of {n} iterations)", "loss_title": "{opt}: training loss",
        "acc_y": "accuracy (%), mean ± sd over seeds", "acc_title": "{opt}: train and validation accuracy",
        "val_best": "validation (best epoch)", "test": "test", "accuracy": "accuracy (%)",
        "optimizer": "optimizer", "diverged": "{n} diverged run(s) not shown: {cells}",
        "trial": "trial", "val_acc": "validation accuracy (%)", "best_so_far": "best so far",
        "history_title": "{study}: optimisation history", "lr": "learning rate (log scale)",
        "lr_title": "{study}: learning rate vs accuracy", "state": "state",
        "COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed",
        "no_epochs": "{opt}: no successful run to plot (every run diverged or collapsed)",
        "params": "parameters", "no_cnn": "no finished CNN run", "test_acc": "test accuracy (%)",
        "deep_title": "CNN vs BP network: test accuracy", "time_epoch": "training time per epoch (s)",
        "time_title": "cost per epoch (1 thread)",
        "arm": "arm", "replication": "replication (the seed's rates)", "tuned": "tuned (searched rates)",
        "budget_x": "search trials k", "budget_y": "expected best validation accuracy (%)",
        "budget_title": "Expected best of k trials (Dodge et al. 2019)", "study": "search",
    },
    "zh": {
        "epoch": "轮次 (epoch)", "seed": "随机种子", "split": "数据集", "train": "训练集", "validation": "验证集",
        "loss_y": "训练损失（{n} 次迭代滑动平均）", "loss_title": "{opt}：训练损失",
        "acc_y": "准确率 (%)，各种子均值 ± 标准差", "acc_title": "{opt}：训练与验证准确率",
        "val_best": "验证集（最佳轮次）", "test": "测试集", "accuracy": "准确率 (%)",
        "optimizer": "优化器", "diverged": "未显示 {n} 个发散的运行：{cells}",
        "trial": "试验序号", "val_acc": "验证准确率 (%)", "best_so_far": "当前最优",
        "history_title": "{study}：优化历史", "lr": "学习率（对数坐标）",
        "lr_title": "{study}：学习率与准确率", "state": "状态",
        "COMPLETE": "完成", "PRUNED": "剪枝", "FAIL": "失败",
        "no_epochs": "{opt}：没有可绘制的成功运行（所有运行均发散或崩溃）",
        "params": "个参数", "no_cnn": "没有完成的 CNN 运行", "test_acc": "测试准确率 (%)",
        "deep_title": "CNN 与 BP 网络：测试准确率", "time_epoch": "每轮训练时间 (秒)",
        "time_title": "每轮开销（单线程）",
        "arm": "实验组", "replication": "复现组（原报告学习率）", "tuned": "调优组（搜索所得学习率）",
        "budget_x": "搜索试验次数 k", "budget_y": "期望最佳验证准确率 (%)",
        "budget_title": "k 次试验的期望最佳值（Dodge 等，2019）", "study": "搜索",
    },
}  # fmt: skip


def use_language(lang: str) -> dict[str, str]:
    """Labels for ``lang``; for Chinese, a CJK font when one is installed (else a ValueError)."""
    if lang not in LABELS:
        raise ValueError(f"unknown figure language {lang!r}; choose one of {sorted(LABELS)}")
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
    return LABELS[lang]


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


def load_histories(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Per-epoch and per-iteration histories of every grid run, long format, and the runs' optimizers
    (each file read once: the histories make them large)."""
    epochs, iterations, optimizers = [], [], set()
    for path in paths:
        r = read_json(path)
        optimizers.add(r["optimizer"])
        h = r["history"]
        ident = {k: r[k] for k in ("cell", "optimizer", "variant", "seed", "status")}
        ident["arm"] = r.get("arm", "tuned")
        for i, epoch in enumerate(h["epoch"]):
            for split, key in (("train", "train_acc"), ("validation", "val_acc")):
                epochs.append({**ident, "epoch": epoch, "split": split, "accuracy": h[key][i] * 100})
        losses = np.asarray([np.nan if v is None else v for v in h["iteration_loss"]], dtype=float)
        per_epoch = max(1, len(losses) // max(1, len(h["epoch"])))
        for j, value in enumerate(losses):
            iterations.append({**ident, "iteration": j + 1, "epoch": (j + 1) / per_epoch, "loss": value})
    ident_columns = ["cell", "optimizer", "variant", "seed", "status", "arm"]
    return (pd.DataFrame(epochs, columns=[*ident_columns, "epoch", "split", "accuracy"]),
            pd.DataFrame(iterations, columns=[*ident_columns, "iteration", "epoch", "loss"]),
            sorted(optimizers))  # fmt: skip


def optimizer_curves(
    result_paths: Iterable[str | Path],
    out_dir: str | Path,
    smooth: int = 20,
    lang: str = "en",
    formats: tuple[str, ...] = FORMATS,
) -> list[Path]:
    """For each optimiser on the plain network: training loss and train/validation accuracy (seed Figs 2, 3),
    in the tuned arm (the replication arm when it is the only one)."""
    t = use_language(lang)
    result_paths = list(result_paths)
    epochs, iterations, optimizers = load_histories(result_paths)
    arm = main_arm(epochs["arm"])
    epochs, iterations = epochs[epochs["arm"] == arm], iterations[iterations["arm"] == arm]
    epochs["split"] = epochs["split"].map({"train": t["train"], "validation": t["validation"]})
    written = []
    for optimizer in optimizers:
        ok = epochs["status"] == "ok"
        ep = epochs[(epochs["optimizer"] == optimizer) & (epochs["variant"] == "BPNN") & ok]
        it = iterations[(iterations["optimizer"] == optimizer) & (iterations["variant"] == "BPNN")
                        & (iterations["status"] == "ok")].copy()  # fmt: skip
        if ep.empty:  # every plain run of this optimizer diverged or collapsed
            fig, ax = plt.subplots(figsize=(6, 2))
            ax.axis("off")
            ax.text(0.5, 0.5, t["no_epochs"].format(opt=optimizer_name(optimizer)), ha="center", va="center")
            written += save_figure(fig, Path(out_dir) / f"curves_{optimizer}", formats)
            continue
        it["smoothed loss"] = it.groupby("seed")["loss"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
        # a smoothed line needs no more than ~1000 points per seed (fewer to draw, and a smaller SVG)
        it = it[it.groupby("seed").cumcount() % max(1, len(it) // (1000 * max(1, it["seed"].nunique()))) == 0]
        it = it.rename(columns={"seed": t["seed"]})
        ep = ep.rename(columns={"split": t["split"]})
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
        sns.lineplot(it, x="epoch", y="smoothed loss", hue=t["seed"], palette="crest", ax=ax_loss, legend="full")
        ax_loss.set(yscale="log", xlabel=t["epoch"], ylabel=t["loss_y"].format(n=smooth))
        ax_loss.set_title(t["loss_title"].format(opt=optimizer_name(optimizer)))
        sns.lineplot(ep, x="epoch", y="accuracy", hue=t["split"], style=t["split"], errorbar="sd", marker="o",
                     ax=ax_acc)  # fmt: skip
        ax_acc.set(xlabel=t["epoch"], ylabel=t["acc_y"])
        ax_acc.set_title(t["acc_title"].format(opt=optimizer_name(optimizer)))
        written += save_figure(fig, Path(out_dir) / f"curves_{optimizer}", formats)
    return written


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
    ok["arm"] = ok["arm"].map({a: t[a] for a in arms})
    ok["accuracy"] *= 100
    splits = [t["val_best"], t["test"]]
    ok["split"] = ok["split"].map({"best_val_acc": splits[0], "test_acc": splits[1]})
    ok["optimizer"] = ok["optimizer"].map(optimizer_name)
    ok = ok.rename(columns={"optimizer": t["optimizer"]})
    order = [v for v in VARIANTS if v in set(ok["variant"])]
    if ok.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, t["diverged"].format(n=len(runs), cells=""), ha="center", va="center")
        return save_figure(fig, Path(out_dir) / "grid_comparison", formats)
    dodge = 0.3 if ok[t["optimizer"]].nunique() > 1 else False
    rows = [t[a] for a in arms]
    grid = sns.catplot(
        ok, kind="point", x="variant", y="accuracy", hue=t["optimizer"], col="split", col_order=splits, order=order,
        row="arm", row_order=rows, errorbar="sd", dodge=dodge, linestyle="none", capsize=0.1, height=4, aspect=1.2,
        sharey=False,
    )  # fmt: skip
    for (row, split), ax in grid.axes_dict.items():
        sel = ok[(ok["split"] == split) & (ok["arm"] == row)]
        sns.stripplot(sel, x="variant", y="accuracy", hue=t["optimizer"], order=order, dodge=dodge, jitter=False,
                      alpha=0.4, ax=ax, legend=False)  # fmt: skip
        ax.set(xlabel="", ylabel=t["accuracy"], title=f"{row}: {split}")
    diverged = runs[runs["status"] != "ok"]
    if len(diverged):
        grid.figure.suptitle(t["diverged"].format(n=len(diverged), cells=", ".join(diverged["cell"])), y=1.04)
    return save_figure(grid.figure, Path(out_dir) / "grid_comparison", formats)


def deep_vs_shallow(
    runs_csv: str | Path, out_dir: str | Path, lang: str = "en", formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """The CNN against the plain BP network: test accuracy per seed, and training time per epoch."""
    t = use_language(lang)
    runs = pd.read_csv(runs_csv)
    runs = runs[runs["arm"] == main_arm(runs["arm"])]
    cnn = runs[(runs["arch"] == "cnn") & (runs["status"] == "ok")]
    plain = runs[(runs["variant"] == "BPNN") & (runs["status"] == "ok") & runs["optimizer"].isin(cnn["optimizer"])]
    both = pd.concat([plain, cnn])
    both["test acc (%)"] = both["test_acc"] * 100
    both["model"] = both["variant"] + " (" + both["n_params"].map(lambda v: f"{v:,}") + " " + t["params"] + ")"
    both["optimizer"] = both["optimizer"].map(optimizer_name)
    both = both.rename(columns={"optimizer": t["optimizer"]})
    fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(11, 4))
    if both.empty:
        ax_acc.axis("off")
        ax_time.axis("off")
        ax_acc.text(0.5, 0.5, t["no_cnn"], ha="center", va="center")
        return save_figure(fig, Path(out_dir) / "deep_vs_shallow", formats)
    sns.pointplot(both, x="model", y="test acc (%)", hue=t["optimizer"], errorbar="sd", capsize=0.1,
                  linestyle="none", ax=ax_acc)  # fmt: skip
    sns.stripplot(
        both, x="model", y="test acc (%)", hue=t["optimizer"], jitter=False, alpha=0.4, ax=ax_acc, legend=False
    )
    ax_acc.set(xlabel="", ylabel=t["test_acc"], title=t["deep_title"])
    sns.barplot(both, x="model", y="time_per_epoch", hue=t["optimizer"], errorbar="sd", ax=ax_time)
    ax_time.set(xlabel="", ylabel=t["time_epoch"], title=t["time_title"])
    return save_figure(fig, Path(out_dir) / "deep_vs_shallow", formats)


def search_figures(
    trials_csvs: dict[str, str | Path], out_dir: str | Path, lang: str = "en", formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """Optuna's optimisation history and learning rate against validation accuracy, one panel per study."""
    t = use_language(lang)
    frames = []
    for study, path in trials_csvs.items():
        f = pd.read_csv(path)
        f["study"] = study
        frames.append(f)
    trials = pd.concat(frames, ignore_index=True)
    trials["val acc (%)"] = trials["value"] * 100
    trials["best so far (%)"] = trials["best_so_far"] * 100
    states = [t["COMPLETE"], t["PRUNED"], t["FAIL"]]
    trials[t["state"]] = trials["state"].map({"COMPLETE": states[0], "PRUNED": states[1], "FAIL": states[2]})
    studies = list(trials_csvs)
    trials = trials[trials["holds_slot"]]  # one trial per slot: a killed trial's rerun replaces it
    fig, axes = panels(len(studies))
    for ax, study in zip(axes, studies):
        sel = trials[trials["study"] == study].sort_values("slot")
        sns.scatterplot(sel, x="slot", y="val acc (%)", hue=t["state"], ax=ax, hue_order=states)
        ax.plot(sel["slot"], sel["best so far (%)"], drawstyle="steps-post", color="black", label=t["best_so_far"])
        ax.set(title=t["history_title"].format(study=study), xlabel=t["trial"], ylabel=t["val_acc"])
        ax.legend(loc="lower right")
    written = save_figure(fig, Path(out_dir) / "search_history", formats)
    fig, axes = panels(len(studies))
    for ax, study in zip(axes, studies):
        sel = trials[trials["study"] == study]
        sns.scatterplot(sel, x="lr", y="val acc (%)", hue=t["state"], ax=ax, hue_order=states)
        ax.set(xscale="log", title=t["lr_title"].format(study=study), xlabel=t["lr"], ylabel=t["val_acc"])
    written += save_figure(fig, Path(out_dir) / "lr_vs_accuracy", formats)
    budget = budget_table(list(trials_csvs.values()))
    budget["study"] = budget["study"] + " (N = " + budget["n_trials"].astype(str) + ")"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(budget, x="k", y="expected_best_val_acc", hue="study", marker="o", ax=ax)
    ax.set(xlabel=t["budget_x"], ylabel=t["budget_y"], title=t["budget_title"])
    ax.legend(title=t["study"], fontsize="small", loc="lower right")
    return written + save_figure(fig, Path(out_dir) / "search_budget", formats)


def panels(n: int, columns: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    """``n`` panels in rows of ``columns`` (the unused ones hidden)."""
    rows = -(-n // columns)
    width = min(n, columns)
    fig, axes = plt.subplots(rows, width, figsize=(5.5 * width, 4 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]
