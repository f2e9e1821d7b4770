"""The generated lab report: Markdown from Jinja2 templates, then self-contained HTML and PDF, in English and Chinese.

Everything comes from the study's declared result files (tables, run results, search results and the
dataset summary); nothing is retrained and MLflow is not queried.
"""

from __future__ import annotations

import base64
import hashlib
import html
import inspect
import io
import json
import logging
import os
import platform
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jinja2
import pandas as pd
from markdown_it import MarkdownIt

from nnlib import MLPSpec, layers, optim

from .claims_text import claims_context, statements
from .dataset_text import dataset_context
from .datasets import class_names, dataset_card, seed_measured, text
from .figures import claims_forest, deep_vs_shallow, grid_comparison, optimizer_curves, search_figures
from .i18n import LANGS, N_, join_list, translations, translator
from .io import atomic_write_bytes, atomic_write_text, read_json
from .model_figures import draw_model_figures
from .tables import (
    display_table,
    display_table3,
    main_arm,
    markdown_table,
    mean_std,
    optimizer_name,
)

#: the seed report's own figures: Table 1 (optimizer -> val acc, epochs) and Table 2 (variant -> val acc, epochs)
SEED_TABLE1 = {"sgd": (97.12, 36, 0.02), "adam": (97.57, 14, 0.001)}
SEED_TABLE2 = {"BPNN": (97.62, 14), "BPNN+BN": (97.91, 14), "BPNN+DP": (97.65, 12), "BPNN+BN+DP": (97.52, 23)}
PACKAGES = ("numpy", "pandas", "scipy", "matplotlib", "seaborn", "optuna", "mlflow", "snakemake", "jinja2",
            "markdown-it-py", "weasyprint")  # fmt: skip

HEADERS = [N_("optimizer"), N_("variant"), N_("lr"), N_("val acc (%)"), N_("test acc (%)"),
           N_("epochs to best, median [IQR]"), N_("epochs run"), N_("arm"), N_("n"), N_("time per epoch (s)"),
           N_("parameters")]  # fmt: skip
VERDICTS = {"higher": N_("significantly higher"), "lower": N_("significantly lower"),
            "no significant difference": N_("no significant difference"),
            "not enough runs": N_("not enough runs")}  # fmt: skip
METRICS = {"validation accuracy (%)": N_("validation accuracy (%)"), "test accuracy (%)": N_("test accuracy (%)"),
           "epochs to best": N_("epochs to best")}  # fmt: skip
ARMS = {"replication": N_("replication"), "tuned": N_("tuned")}
PRIMARY = {"test_acc": N_("test accuracy"), "best_val_acc": N_("validation accuracy")}
#: the works the report cites, by key; each is listed (and numbered) only where the text cites it
REFERENCES = {
    "kingma": N_("Kingma D, Ba J. Adam: A method for stochastic optimization. ICLR, 2015."),
    "tieleman": N_("Tieleman T, Hinton G. Lecture 6.5 — RMSprop: Divide the gradient by a running average of its "
                   "recent magnitude. 2012."),
    "ioffe": N_("Ioffe S, Szegedy C. Batch normalization: Accelerating deep network training by reducing internal "
                "covariate shift. ICML, 2015: 448–456."),
    "srivastava": N_("Srivastava N, Hinton G, Krizhevsky A, et al. Dropout: A simple way to prevent neural networks "
                     "from overfitting. JMLR, 2014, 15(1): 1929–1958."),
    "optuna": N_("Akiba T, Sano S, Yanase T, Ohta T, Koyama M. Optuna: A next-generation hyperparameter optimization "
                 "framework. KDD, 2019."),
    "mlflow": N_("Zaharia M, Chen A, Davidson A, et al. Accelerating the machine learning lifecycle with MLflow. IEEE "
                 "Data Eng. Bull., 2018, 41(4): 39–45."),
    "snakemake": N_("Mölder F, Jablonski K P, Letcher B, et al. Sustainable data analysis with Snakemake. "
                    "F1000Research, 2021, 10: 33."),
    "dodge": N_("Dodge J, Gururangan S, Card D, Schwartz R, Smith N A. Show your work: Improved reporting of "
                "experimental results. EMNLP-IJCNLP, 2019: 2185–2194."),
    "holm": N_("Holm S. A simple sequentially rejective multiple test procedure. Scandinavian Journal of Statistics, "
               "1979, 6(2): 65–70."),
    "efron": N_("Efron B. Better bootstrap confidence intervals. Journal of the American Statistical Association, "
                "1987, 82(397): 171–185."),
    "wilson": N_("Wilson A C, Roelofs R, Stern M, Srebro N, Recht B. The marginal value of adaptive gradient methods "
                 "in machine learning. NeurIPS, 2017: 4148–4158."),
    "li": N_("Li X, Chen S, Hu X, Yang J. Understanding the disharmony between dropout and batch normalization by "
             "variance shift. CVPR, 2019: 2682–2690."),
}  # fmt: skip

log = logging.getLogger(__name__)


def fmt_int(value: int) -> str:
    """A count with thousands separators (50,000), as both languages write it in this report."""
    return f"{int(value):,}"


def fmt_num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return "—"
    if round(value, digits) == 0:  # no "-0.00"
        value = 0.0
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "−")  # the true minus sign, as every number in the report has it


def seed_spans(seeds: Iterable[int]) -> list[str]:
    """[1, 2, 3, 5, 901, 902] -> ["1–3", "5", "901–902"]: runs of consecutive seeds as ranges."""
    spans: list[list[int]] = []
    for seed in sorted(int(s) for s in seeds):
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return [f"{a}–{b}" if b > a else f"{a}" for a, b in spans]


def fmt_sci(value: float, digits: int = 0) -> str:
    """1e-08 -> "1e-8": scientific notation without a padded exponent."""
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fmt_p(p: float) -> str:
    if pd.isna(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def table_markdown(summary: pd.DataFrame, first: list[str], lang: str) -> str:
    _ = translator(lang)
    shown = display_table(summary, first)
    shown["arm"] = shown["arm"].map(lambda arm: _(ARMS[arm]))
    return markdown_table(shown.rename(columns={h: _(h) for h in HEADERS}))


def comparison_rows(comparisons: pd.DataFrame, lang: str) -> dict[str, dict[str, dict[str, str]]]:
    """key -> metric -> formatted fields (the same strings feed the text and the statistics table)."""
    _ = translator(lang)
    out: dict[str, dict[str, dict[str, str]]] = {}
    for row in comparisons.itertuples():
        digits = 1 if row.metric == "epochs to best" else 2
        out.setdefault(row.key, {})[row.metric] = {
            "a": row.label_a, "b": row.label_b, "n_a": str(row.n_a), "n_b": str(row.n_b),
            "mean_a": fmt_num(row.mean_a, digits), "mean_b": fmt_num(row.mean_b, digits),
            "diff": fmt_num(row.diff, digits, signed=True),
            "ci": f"[{fmt_num(row.ci_low, digits, True)}, {fmt_num(row.ci_high, digits, True)}]",
            "p": fmt_p(row.p_value), "verdict": row.verdict, "verdict_text": _(VERDICTS[row.verdict]),
            "metric_text": _(METRICS[row.metric]),
        }  # fmt: skip
    return out


def budget_markdown(budget: pd.DataFrame, lang: str) -> str:
    """Expected best validation accuracy at a few budgets per study (the full curve is in budget.csv)."""
    if budget.empty:
        return ""
    _ = translator(lang)
    rows = []
    for study, group in budget.groupby("study", sort=False):
        n = int(group["n_trials"].iloc[0])
        picks = sorted({k for k in (1, 2, 5, 10, 20, n) if k <= n})
        values = group.set_index("k")["expected_best_val_acc"]
        rows.append({_("search"): f"`{study}`", **{f"k = {k}": fmt_num(values[k]) for k in picks}})
    frame = pd.DataFrame(rows).fillna("—")
    budgets = sorted((c for c in frame.columns if c.startswith("k = ")), key=lambda c: int(c.removeprefix("k = ")))
    return markdown_table(frame[[c for c in frame.columns if c not in budgets] + budgets])


def prediction_interval(mean: float, sd: float, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """The t-based interval that holds one new run's value with probability ``level`` (normal runs):
    mean ± t(n − 1) · sd · sqrt(1 + 1/n); None for fewer than 2 runs."""
    from scipy import stats

    if n < 2 or pd.isna(sd):
        return None
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd * (1 + 1 / n) ** 0.5
    return mean - half, mean + half


def seed_settings(lang: str) -> list[tuple[str, str, str, float, int]]:
    """The seed report's settings: (its table, optimizer, variant, validation accuracy, epochs)."""
    _ = translator(lang)
    label = (_("seed's Table 1"), _("seed's Table 2 (Adam)"))
    settings = [(label[0], opt, "BPNN", val, epochs) for opt, (val, epochs, _lr) in SEED_TABLE1.items()]
    return settings + [(label[1], "adam", variant, val, epochs) for variant, (val, epochs) in SEED_TABLE2.items()]


def seed_outside(table2: pd.DataFrame, lang: str) -> dict[str, Any]:
    """Which of the seed's validation accuracies lie outside the 95 % prediction interval of one run of our
    replication arm (its learning rates): ``n`` compared, ``outside`` their names."""
    rep = table2[table2["arm"] == "replication"]
    compared, outside = 0, []
    for _table, opt, variant, val, _epochs in seed_settings(lang):
        found = rep[(rep["optimizer"] == opt) & (rep["variant"] == variant)]
        if not len(found):
            continue
        r = found.iloc[0]
        interval = prediction_interval(r.best_val_acc_mean, r.best_val_acc_std, int(r.n))
        if interval is None:
            continue
        compared += 1
        if not interval[0] <= val <= interval[1]:
            name = optimizer_name(opt) if variant == "BPNN" else variant.replace("BPNN+", "")
            outside.append(f"{name} ({val:.2f} %, [{interval[0]:.2f}, {interval[1]:.2f}])")
    return {"n": compared, "outside": outside}


def seed_comparison(table1: pd.DataFrame, table2: pd.DataFrame, lang: str) -> str:
    """The replication table: the seed report's single-run figure | our replication arm (the seed's rates),
    with the 95 % prediction interval of one run's validation accuracy | our tuned arm (searched rates),
    mean ± sd over seeds."""
    _ = translator(lang)
    arms = [a for a in ("replication", "tuned") if a in set(table2["arm"])]
    rows = []
    for source, opt, variant, val, epochs in seed_settings(lang):
        ours = {a: table2[(table2["arm"] == a) & (table2["optimizer"] == opt) & (table2["variant"] == variant)]
                for a in arms}  # fmt: skip
        if not any(len(o) for o in ours.values()):
            continue
        first = source == _("seed's Table 1")
        row = [source, variant if variant != "BPNN" or not first else optimizer_name(opt), f"{val:.2f}", str(epochs)]
        for arm in arms:
            if len(ours[arm]):
                r = ours[arm].iloc[0]
                row += [mean_std(r.best_val_acc_mean, r.best_val_acc_std), mean_std(r.test_acc_mean, r.test_acc_std),
                        f"{r.lr:.3g}"]  # fmt: skip
                if arm == "replication":
                    pi = prediction_interval(r.best_val_acc_mean, r.best_val_acc_std, int(r.n))
                    row.insert(len(row) - 2, "—" if pi is None else f"[{pi[0]:.2f}, {pi[1]:.2f}]")
            else:
                row += ["—", "—", "—", "—"] if arm == "replication" else ["—", "—", "—"]
        rows.append(row)
    cols = ["", _("setting"), _("seed val acc"), _("seed epochs")]
    for a in arms:
        whats = [N_("val acc (%)"), N_("test acc (%)"), N_("lr")]
        if a == "replication":
            whats.insert(1, N_("one run's 95 % prediction interval"))
        cols += [_("%(arm)s: %(what)s") % {"arm": _(ARMS[a]), "what": _(what)} for what in whats]
    return markdown_table(pd.DataFrame(rows, columns=cols))


#: the seed report's settings in the summary: (label, optimizer, variant, the claim that setting tests)
#: the seed report's settings in the summary: (label, optimizer, variant)
SUMMARY_ROWS = [("SGD", "sgd", "BPNN"), ("Adam", "adam", "BPNN"), ("Adam + BN", "adam", "BPNN+BN"),
                ("Adam + DP", "adam", "BPNN+DP"), ("Adam + BN + DP", "adam", "BPNN+BN+DP"),
                ("CNN (Adam)", "adam", "CNN")]  # fmt: skip


def summary_markdown(table2: pd.DataFrame, table3: pd.DataFrame, lang: str, with_seed: bool = True) -> str:
    """The headline table: each of the seed report's settings, its accuracy and epochs (``with_seed``: when the
    seed measured this dataset), and ours per arm (mean ± sd of test accuracy, the best mean of each column in
    bold; median epochs to the best)."""
    _ = translator(lang)
    cells = pd.concat([table2, table3[table3["variant"] == "CNN"]], ignore_index=True)
    arms = [a for a in ("replication", "tuned") if a in set(cells["arm"])]
    seed_figures = {("sgd", "BPNN"): SEED_TABLE1["sgd"][:2], ("adam", "BPNN"): SEED_TABLE1["adam"][:2],
                    **{("adam", v): figures for v, figures in SEED_TABLE2.items() if v != "BPNN"}}  # fmt: skip
    best = {a: cells.loc[cells["arm"] == a, "test_acc_mean"].max() for a in arms}
    rows = []
    for label, opt, variant in SUMMARY_ROWS:
        found = {a: cells[(cells["arm"] == a) & (cells["optimizer"] == opt) & (cells["variant"] == variant)]
                 for a in arms}  # fmt: skip
        if not any(len(f) for f in found.values()):
            continue
        seed = seed_figures.get((opt, variant))
        row = [label if lang == "en" or variant != "CNN" else _("CNN (Adam)"),
               "—" if seed is None else f"{seed[0]:.2f} / {seed[1]}"]  # fmt: skip
        for a in arms:
            if len(found[a]):
                r = found[a].iloc[0]
                text = mean_std(r.test_acc_mean, r.test_acc_std)
                row += [f"**{text}**" if r.test_acc_mean == best[a] else text, f"{r.epochs_to_best_median:g}"]
            else:
                row += ["—", "—"]
        rows.append(row)
    cols = [_("setting"), _("seed report: val acc / epochs")]
    if not with_seed:
        rows, cols = [row[:1] + row[2:] for row in rows], cols[:1]
    for a in arms:
        cols += [_("%(arm)s: %(what)s") % {"arm": _(ARMS[a]), "what": _(what)}
                 for what in (N_("test acc (%)"), N_("epochs to best (median)"))]  # fmt: skip
    return markdown_table(pd.DataFrame(rows, columns=cols))


def machine_summary() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} logical cores"


def as_utc(stamp: str) -> datetime:
    """An ISO time stamp as an aware UTC datetime (naive stamps, as Optuna writes them, are local time)."""
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.astimezone()).astimezone(UTC)


def provenance(runs: pd.DataFrame, trials: dict[str, pd.DataFrame], dataset: dict, config: dict) -> dict[str, Any]:
    stamps_start = [t for t in runs["started_at"].dropna()]
    stamps_end = [t for t in runs["finished_at"].dropna()]
    compute = float(runs["wall_time"].fillna(0).sum())
    for frame in trials.values():
        stamps_start += list(frame["datetime_start"].dropna())
        stamps_end += list(frame["datetime_complete"].dropna())
        compute += float(frame["duration_s"].fillna(0).sum())
    elapsed = None
    if stamps_start and stamps_end:
        elapsed = (max(map(as_utc, stamps_end)) - min(map(as_utc, stamps_start))).total_seconds()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "config_digest": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16],
        "versions": versions,
        "python": platform.python_version(),
        "commits": sorted(set(runs["git_commit"].dropna())) or ["unknown"],
        "dataset": dataset,
        "machine": machine_summary(),
        "cores": os.cpu_count() or 1,
        "elapsed_min": None if elapsed is None else elapsed / 60,
        "compute_min": compute / 60,
        "n_runs": len(runs),
        "n_trials": int(sum(len(f) for f in trials.values())),
    }


def engine_code() -> dict[str, str]:
    """The engine's own source for the method section, so the report never drifts from the code."""
    names = ["affine_forward", "affine_backward", "relu_forward", "relu_backward", "batchnorm_forward",
             "batchnorm_backward", "dropout_forward", "dropout_backward", "softmax_cross_entropy"]  # fmt: skip
    code = {n: inspect.getsource(getattr(layers, n)) for n in names}
    code["adam"] = inspect.getsource(optim.Adam._update)
    return code


def engine_constants() -> dict[str, str]:
    """Constants the method section states, read from the engine (the study does not configure them)."""
    adam = inspect.signature(optim.Adam).parameters
    return {"adam_beta1": f"{adam['beta1'].default:g}", "adam_eps": fmt_sci(adam["eps"].default),
            "bn_momentum": f"{MLPSpec().bn_momentum:g}"}  # fmt: skip


def gradient_check_summary(check: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's own gradient check (results/gradcheck.json) as the report states it."""
    return {"max": fmt_sci(check["max_relative_error"], 1), "threshold": fmt_sci(check["threshold"]),
            "n": len(check["networks"]), "names": [n["network"] for n in check["networks"]],
            "params": sum(n["n_params"] for n in check["networks"])}  # fmt: skip


def recogniser_summary(check: dict[str, Any], lang: str) -> dict[str, Any]:
    """results/recogniser.json as the report states it."""
    _ = translator(lang)
    names = {"mlp": _("BP network"), "cnn": "CNN"}
    models = [{"name": names.get(m["model"], m["model"]), "cell": Path(m["checkpoint"]).parent.parent.name,
               "seed": Path(m["checkpoint"]).parent.name.removeprefix("seed"),
               "gui": fmt_num(100 * m["accuracy_gui"], 1), "direct": fmt_num(100 * m["accuracy_direct"], 1),
               "agreement": fmt_num(100 * m["agreement"], 1)} for m in check["models"]]  # fmt: skip
    ink, ink_all = check.get("mean_ink_unreadable"), check.get("mean_ink")
    return {"n": check["n_digits"], "models": models, "unreadable": check["unreadable"],
            "ink": fmt_num(ink, 2) if ink is not None else "—",
            "ink_all": fmt_num(ink_all, 2) if ink_all is not None else "—",
            "preprocess": check.get("preprocess", "digits")}  # fmt: skip


def recogniser_markdown(rec: dict[str, Any], lang: str) -> str:
    """The recogniser's accuracy per model, through the page's path and fed directly."""
    _ = translator(lang)
    rows = [{_("model"): m["name"], _("checkpoint"): _("%(cell)s, seed %(seed)s") % m,
             _("accuracy through the GUI (%)"): m["gui"], _("fed directly (%)"): m["direct"],
             _("same answer (%)"): m["agreement"]} for m in rec["models"]]  # fmt: skip
    return markdown_table(pd.DataFrame(rows)) if rows else ""


def searches_markdown(searches: list[dict[str, Any]], lang: str) -> str:
    """One row per search: the chosen rate, its validation accuracy, the trials by outcome, the seed's rate."""
    _ = translator(lang)
    rows = [{_("study"): f"`{s['study']}`", _("best learning rate"): s["lr_text"], _("best val acc (%)"): s["val_text"],
             _("trials"): s["n_trials"], _("complete"): s["n_complete"], _("pruned"): s["n_pruned"],
             _("diverged"): s["n_diverged"], _("seed report's rate"): s["seed_lr"] or "—",
             _("ratio"): s["ratio_text"]} for s in searches]  # fmt: skip
    return markdown_table(pd.DataFrame(rows)) if rows else ""


def cnn_layers_text(conv: list, hidden: list, lang: str) -> str:
    """The CNN's layers in words: "conv 8×5×5 → ReLU → 2×2 max-pool → … → affine 100 → ReLU"."""
    _ = translator(lang)
    parts = [_("conv %(f)s×%(k)s×%(k)s → ReLU → 2×2 max-pool") % {"f": f, "k": k} for f, k in conv]
    parts += [_("affine %(n)s → ReLU") % {"n": h} for h in hidden]
    return " → ".join(parts)


class Numbering:
    """Numbers of tables, figures and citations for a template rendered twice: the first pass records the
    order in which captions (and first citations) appear, the second prints them, so that the text may
    refer to a table or figure before its caption. Only cited works are listed, in order of citation."""

    def __init__(self, lang: str) -> None:
        self.gettext = translator(lang)
        self.order: dict[str, list[str]] = {"fig": [], "tab": [], "cite": []}
        self.recording = True

    def _number(self, kind: str, key: str, define: bool) -> str:
        seq = self.order[kind]
        if self.recording:
            if define and key not in seq:
                seq.append(key)
            return "?"
        if key not in seq:
            raise KeyError(f"the report refers to {kind} {key!r}, which it never shows")
        return str(seq.index(key) + 1)

    def fig(self, key: str) -> str:
        return self.gettext(N_("**Figure %(n)s.**")) % {"n": self._number("fig", key, True)}

    def tab(self, key: str) -> str:
        return self.gettext(N_("**Table %(n)s.**")) % {"n": self._number("tab", key, True)}

    def figref(self, key: str) -> str:
        return self.gettext(N_("Figure %(n)s")) % {"n": self._number("fig", key, False)}

    def tabref(self, key: str) -> str:
        return self.gettext(N_("Table %(n)s")) % {"n": self._number("tab", key, False)}

    def cite(self, key: str) -> str:
        if key not in REFERENCES:
            raise KeyError(f"unknown reference {key!r}")
        return f"[{self._number('cite', key, True)}]"

    def references(self) -> list[str]:
        return [] if self.recording else [self.gettext(REFERENCES[k]) for k in self.order["cite"]]


def cnn_decay(config: dict[str, Any]) -> dict[str, Any] | None:
    """The CNN's learning-rate schedule (its own, else the training section's); None if constant."""
    kind = config["cnn"].get("schedule", config["training"].get("schedule", "constant"))
    if kind == "constant":
        return None
    pick = lambda key, default: config["cnn"].get(key, config["training"].get(key, default))  # noqa: E731
    return {"kind": kind, "gamma": pick("schedule_gamma", 0.5), "step": pick("schedule_step", 10)}


def search_summaries(search_dir: Path, studies: list[str]) -> list[dict[str, Any]]:
    """Each search's best.json with its chosen rate, validation accuracy and ratio to the seed's rate as text."""
    searches = []
    for study in studies:
        best = read_json(search_dir / study / "best.json")
        optimizer = best["optimizer"]  # from the study model, never parsed out of the study's name
        seed_lr = SEED_TABLE1.get(optimizer, (None, None, None))[2] if best["arch"] == "mlp" else None
        best["lr_text"] = "—" if best.get("lr") is None else f"{best['lr']:.3g}"
        best["val_text"] = fmt_num(None if best.get("best_val_acc") is None else best["best_val_acc"] * 100)
        best["seed_lr"] = seed_lr
        best["ratio_text"] = f"{best['lr'] / seed_lr:.2g}" if seed_lr and best.get("lr") else "—"
        searches.append(best)
    return searches


def cell_text(r: Any) -> dict[str, str] | None:
    """One row of a summary table (mean ± sd over seeds) as the text quotes it; None for a missing cell."""
    if r is None:
        return None
    return {"val": mean_std(r.best_val_acc_mean, r.best_val_acc_std),
            "test": mean_std(r.test_acc_mean, r.test_acc_std),
            "epochs": mean_std(r.epochs_to_best_mean, r.epochs_to_best_std, 1),
            "n": int(r.n), "n_diverged": int(r.n_diverged), "lr": f"{r.lr:.3g}",
            "time": mean_std(getattr(r, "time_per_epoch_mean", None), getattr(r, "time_per_epoch_std", None), 2),
            "params": f"{int(r.n_params):,}"}  # fmt: skip


def grid_order(config: dict) -> list[str]:
    """The optimizers with a replication rate, in the grid's order, then any others by name."""
    rates = config["protocol"]["replication_lr"]
    order = [o for o in config["grid"]["optimizers"] if o in rates]
    return order + sorted(set(rates) - set(order))


def helpers_context(numbering: Numbering, lang: str) -> dict[str, Any]:
    """What the template calls: numbering of tables, figures and citations, lists and numbers in ``lang``."""
    return {"lang": lang, "numbering": numbering, "fig": numbering.fig, "tab": numbering.tab,
            "figref": numbering.figref, "tabref": numbering.tabref, "cite": numbering.cite,
            "lst": lambda items: join_list(items, lang), "spans": lambda seeds: join_list(seed_spans(seeds), lang),
            "num": fmt_int, "fig_dir": f"figures/{lang}"}  # fmt: skip


def config_context(config: dict, studies: list[str], lang: str) -> dict[str, Any]:
    """The study's design as the text states it, from its configuration."""
    _ = translator(lang)
    grid, cnn, search = config["grid"], config["cnn"], config["search"]
    return {
        "study_name": config["study_name"], "seeds": grid["seeds"], "n_seeds": len(grid["seeds"]),
        "grid_seeds": grid["seeds"], "cnn_seeds": cnn.get("seeds") or grid["seeds"],
        "hidden": "-".join(str(h) for h in config["training"]["hidden"]),
        "dropout_text": " / ".join(f"{p:g}" for p in grid["dropout"] if p > 0) or "—",
        "training": config["training"], "cnn_enabled": bool(cnn["enabled"]), "cnn_conv": cnn["conv"],
        "cnn_hidden": cnn["hidden"], "cnn_decay": cnn_decay(config),
        "cnn_layers": cnn_layers_text(cnn["conv"], cnn["hidden"], lang),
        "replication_rates": join_list(  # in the grid's order (the config reaches the job as sorted JSON)
            [f"{optimizer_name(o)} {config['protocol']['replication_lr'][o]}" for o in grid_order(config)], lang),
        "protocol": {**config["protocol"], "primary_text": _(PRIMARY[config["protocol"]["primary_metric"]])},
        "per_cell": bool(search["per_cell"]), "search_enabled": bool(studies), "n_trials": search["n_trials"],
        "cnn_trials": cnn["n_trials"],
    }  # fmt: skip


def results_context(tables: dict[str, pd.DataFrame], config: dict, lang: str) -> dict[str, Any]:
    """The result tables as Markdown and the cells the text quotes (the main arm's), per arm where it says."""
    _ = translator(lang)
    runs = tables["runs"]
    arm = main_arm(runs["arm"])  # the arm the descriptive text shows; the tables show every arm
    table1, table2, table3 = (tables[k][tables[k]["arm"] == arm] for k in ("table1", "table2", "table3"))
    t2 = {(r.optimizer, r.variant): r for r in table2.itertuples()}
    t3 = {(r.optimizer, r.variant): r for r in table3.itertuples()}
    optimizers = list(table1["optimizer"])
    variants = [v for v in ("BPNN", "BPNN+BN", "BPNN+DP", "BPNN+BN+DP") if v in set(table2["variant"])]
    all3 = tables["table3"]
    table3_md = markdown_table(display_table3(all3).assign(arm=lambda shown: shown["arm"].map(lambda a: _(ARMS[a])))
                               .rename(columns={h: _(h) for h in HEADERS})) if len(all3) else ""  # fmt: skip
    with_seed = seed_measured(dataset_card(config["data"]))
    return {
        "main_arm": arm, "main_arm_text": _(ARMS[arm]),
        "arms": [a for a in ("replication", "tuned") if a in set(runs["arm"])],
        "optimizers": optimizers, "variants": variants,
        "cells": {(o, v): cell_text(t2.get((o, v))) for o in optimizers for v in variants},
        "t1": {r.optimizer: cell_text(r) for r in table1.itertuples()},
        "deep": {o: {"cnn": cell_text(t3[(o, "CNN")]), "mlp": cell_text(t3[(o, "BPNN")])}
                 for o in sorted(set(table3["optimizer"])) if (o, "CNN") in t3 and (o, "BPNN") in t3},
        "summary_md": summary_markdown(tables["table2"], all3, lang, with_seed),
        "table1_md": table_markdown(tables["table1"], ["arm", "optimizer"], lang),
        "table2_md": table_markdown(tables["table2"], ["arm", "optimizer", "variant"], lang),
        "table3_md": table3_md,
        "cmp": comparison_rows(tables["comparisons"][tables["comparisons"]["arm"] == arm], lang),
        "seed_md": seed_comparison(tables["table1"], tables["table2"], lang),
        "seed_pi": seed_outside(tables["table2"], lang),
        "budget_md": budget_markdown(tables["budget"], lang),
        "n_diverged": int((runs["status"] != "ok").sum()),
        "diverged_cells": sorted(set(runs.loc[runs["status"] != "ok", "cell"])),
    }  # fmt: skip


def build_context(
    *,
    tables_dir: Path,
    search_dir: Path,
    studies: list[str],
    dataset_json: Path,
    config: dict,
    lang: str,
    gradcheck_json: Path,
    recogniser_json: Path,
    has_model_figures: bool = False,
) -> dict[str, Any]:
    """Everything the template says, from the study's result files and its configuration."""
    names = ("table1", "table2", "table3", "runs", "comparisons", "budget")
    tables = {name: pd.read_csv(tables_dir / f"{name}.csv") for name in names}
    searches = search_summaries(search_dir, studies)
    trials = {s: pd.read_csv(search_dir / s / "trials.csv") for s in studies}
    dataset = read_json(dataset_json)
    rec = recogniser_summary(read_json(recogniser_json), lang)
    numbering = Numbering(lang)
    design = config_context(config, studies, lang)
    prov = provenance(tables["runs"], trials, dataset, config)
    return {
        **helpers_context(numbering, lang),
        **design,
        **results_context(tables, config, lang),
        **dataset_context(config, tables["table2"], tables["table3"], lang),
        **claims_context(
            pd.read_csv(tables_dir / "claims.csv"),
            config,
            lang,
            numbering.cite,
            design["dropout_text"],
            design["hidden"],
        ),  # fmt: skip
        "searches": searches,
        "searches_md": searches_markdown(searches, lang),
        "recogniser_md": recogniser_markdown(rec, lang),
        "rec": rec,
        "has_model_figures": has_model_figures,
        "gui_screenshot": False,
        "data": {**config["data"], **dataset},
        "prov": {**prov, "packages": join_list([f"{k} {v}" for k, v in prov["versions"].items()], lang)},
        "code": engine_code(),
        "engine": engine_constants(),
        "gradcheck": gradient_check_summary(read_json(gradcheck_json)),
    }


TEMPLATE = "lab_report.md.j2"
#: the figures the model_figures job draws (results/figures/<name>.png), shown in section 3.1
MODEL_FIGURES = ("first_layer_weights", "confusion", "misclassified")


def render_markdown(template_dir: Path, lang: str, context: dict[str, Any]) -> str:
    """The report's Markdown in ``lang``: one template, its wording from the message catalog. Rendered
    twice, so that tables, figures and citations are numbered in order and may be referred to early."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 (Markdown, not HTML; the HTML step escapes)
        extensions=["jinja2.ext.i18n"],
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations(lang, str(Path(template_dir) / "locale")), newstyle=True)
    env.filters["optimizer"] = optimizer_name
    env.filters["arm"] = lambda arm: translations(lang).gettext(ARMS[arm])
    template = env.get_template(TEMPLATE)
    numbering: Numbering = context["numbering"]
    numbering.recording = True
    template.render(**context, references=[])
    numbering.recording = False
    markdown = template.render(**context, references=numbering.references())
    return markdown.replace("[[TOC]]", toc_markdown(markdown, lang), 1)


def heading_id(text: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def toc_markdown(markdown: str, lang: str) -> str:
    """The table of contents: every section and subsection after the title, linked to its anchor."""
    _ = translator(lang)
    lines = [f"**{_('Contents')}**", ""]
    for level, title in re.findall(r"^(##|###) (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M):
        lines.append(f"{'  ' if level == '###' else ''}- [{title}](#{heading_id(title)})")
    return "\n".join(lines)


#: how a caption paragraph starts: "**Figure 3.**" / "**图 3**", "**Table 2.**" / "**表 2**"
FIGURE_CAPTION = r"<p><strong>(?:Figure \d+\.|图 \d+)</strong>"
TABLE_CAPTION = r"<p><strong>(?:Table \d+\.|表 \d+)</strong>"


def with_figures_and_captions(body: str) -> str:
    """An image paragraph and the caption paragraph after it become one ``<figure>`` with its
    ``<figcaption>``, which print CSS keeps on one page; a table's caption (before the table) gets
    ``class="caption"``, which print CSS keeps with the table."""
    body = re.sub(
        rf"<p>(<img [^>]*>)</p>\s*({FIGURE_CAPTION}.*?)</p>",
        lambda m: f"<figure>{m.group(1)}<figcaption>{m.group(2).removeprefix('<p>')}</figcaption></figure>",
        body,
        flags=re.S,
    )
    return re.sub(TABLE_CAPTION, lambda m: m.group(0).replace("<p>", '<p class="caption">', 1), body)


#: a page embedded in ``snakemake --report`` travels as a base64 data URL, which Chromium refuses over 2 MiB
#: (2,097,152 characters): a page under this many bytes stays under it, with room for the URL's prefix
SCREEN_PAGE_LIMIT = 1_500_000


def screen_png(path: Path) -> bytes:
    """A figure for the screen page: the PNG with its colours reduced to a palette of 256 (about 40 % of the
    bytes, no visible change at screen size), so that the page stays within a browser's data-URL limit when
    ``snakemake --report`` embeds it. The PDF keeps the full PNGs."""
    from PIL import Image

    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    reduced.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def markdown_to_html(markdown: str, *, title: str, lang: str, css: str, base_dir: Path, screen: bool = False) -> str:
    """A self-contained HTML page: figures are embedded as data URIs, nothing is fetched (``screen``: as
    palette PNGs, see ``screen_png``)."""
    if lang == "zh":  # a line break between two CJK characters is not a space in Chinese text
        markdown = re.sub(r"(?<=[\u3000-\u9fff\uff00-\uffef])\n(?=[\u3000-\u9fff\uff00-\uffef])", "", markdown)
    body = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table").render(markdown)

    def embed(match: re.Match) -> str:
        src = match.group(1)
        path = base_dir / src
        mime = "image/svg+xml" if path.suffix == ".svg" else "image/png"
        data = screen_png(path) if screen and path.suffix == ".png" else path.read_bytes()
        return f'src="data:{mime};base64,{base64.b64encode(data).decode()}"'

    body = re.sub(r'src="([^"]+\.(?:png|svg))"', embed, body)
    body = with_figures_and_captions(body)
    _ = translator(lang)
    body = with_heading_ids_and_toc(body, _("Contents"))
    return (
        f'<!DOCTYPE html>\n<html lang="{"zh-CN" if lang == "zh" else "en"}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
        f"<style>\n{css}\n</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


def with_heading_ids_and_toc(body: str, contents: str) -> str:
    """Section headings get the anchors the table of contents links to, and the contents list becomes a
    ``<nav class="toc">`` (print CSS adds each section's page number; WeasyPrint makes PDF bookmarks of
    the headings)."""

    def anchor(name: str) -> str:  # WeasyPrint finds only ASCII targets for its page counters
        return name if name.isascii() else "s-" + name.encode().hex()

    body = re.sub(
        r"<h([23])>(.*?)</h\1>",
        lambda m: f'<h{m[1]} id="{anchor(heading_id(html.unescape(re.sub(r"<[^>]+>", "", m[2]))))}">{m[2]}</h{m[1]}>',
        body,
    )
    return re.sub(
        rf"<p><strong>{re.escape(contents)}</strong></p>\s*(<ul>.*?</ul>)\s*(?=<h2)",
        lambda m: '<nav class="toc">\n<p class="toc-title">{}</p>\n{}\n</nav>\n'.format(
            contents, re.sub(r'href="#([^"]+)"', lambda h: f'href="#{anchor(unquote(h[1]))}"', m[1])
        ),
        body,
        count=1,
        flags=re.S,
    )


def html_to_pdf(html: str, path: Path) -> None:
    from weasyprint import HTML

    atomic_write_bytes(path, HTML(string=html).write_pdf())


def draw_report_figures(
    lang: str, fig_dir: Path, *, drawn: Iterable[str | Path], result_paths: list[str], tables_dir: Path,
    search_dir: Path, studies: list[str], config: dict, model_figures_json: str | Path | None,
    dataset_path: str | Path | None,
) -> None:  # fmt: skip
    """The report's figures in ``lang`` into ``fig_dir``: English ones the figures and model_figures jobs drew
    already are copied, the others drawn here."""
    png = ("png",)  # the report embeds PNGs; the SVGs are in results/figures
    if lang == "en" and drawn:
        for path in map(Path, drawn):
            atomic_write_bytes(fig_dir / path.name, path.read_bytes())
    else:
        optimizer_curves(result_paths, fig_dir, lang=lang, formats=png)
        grid_comparison(Path(tables_dir) / "runs.csv", fig_dir, lang=lang, formats=png)
        claims_forest(Path(tables_dir) / "claims.csv", fig_dir, lang=lang, formats=png,
                      labels=statements(config["protocol"], lang))  # fmt: skip
        if config["cnn"]["enabled"]:
            deep_vs_shallow(Path(tables_dir) / "runs.csv", fig_dir, lang=lang, formats=png)
        if studies:
            search_figures({s: Path(search_dir) / s / "trials.csv" for s in studies}, fig_dir, lang=lang,
                           formats=png, seed_lrs=config["protocol"]["replication_lr"],
                           best_jsons={s: Path(search_dir) / s / "best.json" for s in studies})  # fmt: skip
    if model_figures_json is not None:
        if lang == "en":  # the model_figures job drew them in English already
            for name in MODEL_FIGURES:
                source = Path(model_figures_json).parent / "figures" / f"{name}.png"
                atomic_write_bytes(fig_dir / source.name, source.read_bytes())
        else:
            draw_model_figures(model_figures_json, dataset_path, fig_dir, lang=lang, formats=png,
                               names=class_names(dataset_card(config["data"]), lang))  # fmt: skip


def write_report(
    *, tables_dir: str | Path, search_dir: str | Path, studies: list[str], result_paths: list[str],
    dataset_json: str | Path, config: dict, template_dir: str | Path, out_dir: str | Path, pdf: bool = True,
    langs: Iterable[str] = LANGS, drawn: Iterable[str | Path] = (), gradcheck_json: str | Path,
    recogniser_json: str | Path, recogniser_figure: str | Path, model_figures_json: str | Path | None = None,
    dataset_path: str | Path | None = None, gui_png: str | Path | None = None,
) -> dict[str, Path]:  # fmt: skip
    """Render figures, Markdown, HTML and (optionally) PDF for each of ``langs`` into ``out_dir``.

    ``drawn``: the English PNGs that the ``figures`` job made already; the English report copies them
    instead of drawing them again."""
    out_dir, template_dir = Path(out_dir), Path(template_dir)
    css = (template_dir / "style.css").read_text()
    written: dict[str, Path] = {}
    for lang in langs:
        fig_dir = out_dir / "figures" / lang
        atomic_write_bytes(fig_dir / "recogniser.png", Path(recogniser_figure).read_bytes())  # no words in it
        if gui_png is not None:
            atomic_write_bytes(fig_dir / "gui.png", Path(gui_png).read_bytes())
        draw_report_figures(lang, fig_dir, drawn=drawn, result_paths=result_paths, tables_dir=Path(tables_dir),
                            search_dir=Path(search_dir), studies=studies, config=config,
                            model_figures_json=model_figures_json, dataset_path=dataset_path)  # fmt: skip
        context = build_context(tables_dir=Path(tables_dir), search_dir=Path(search_dir), studies=studies,
                                dataset_json=Path(dataset_json), config=config, lang=lang,
                                gradcheck_json=Path(gradcheck_json), recogniser_json=Path(recogniser_json),
                                has_model_figures=model_figures_json is not None)  # fmt: skip
        context["gui_screenshot"] = gui_png is not None and bool(context["rec"]["models"])
        markdown = render_markdown(template_dir, lang, context)
        md_path = out_dir / f"lab_report.{lang}.md"
        atomic_write_text(md_path, markdown)
        title = translator(lang)(N_("Lab report: a BP network on %(dataset)s")) % {
            "dataset": text(dataset_card(config["data"]), "display_name", lang)}  # fmt: skip
        page = markdown_to_html(markdown, title=title, lang=lang, css=css, base_dir=out_dir, screen=True)
        if len(page.encode()) > SCREEN_PAGE_LIMIT:
            log.warning("lab_report.%s.html is %d bytes: over %d, snakemake --report's browser pane may stay "
                        "blank (open the file itself)", lang, len(page.encode()), SCREEN_PAGE_LIMIT)  # fmt: skip
        html_path = out_dir / f"lab_report.{lang}.html"
        atomic_write_text(html_path, page)
        written[f"{lang}_md"], written[f"{lang}_html"] = md_path, html_path
        if pdf:
            print_page = markdown_to_html(markdown, title=title, lang=lang, css=css, base_dir=out_dir)
            html_to_pdf(print_page, out_dir / f"lab_report.{lang}.pdf")
            written[f"{lang}_pdf"] = out_dir / f"lab_report.{lang}.pdf"
    return written
