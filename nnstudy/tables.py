"""Result tables: the seed report's Table 1 and Table 2 as mean ± std over seeds, with test accuracy."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .io import atomic_write_text, read_json

VARIANTS = ["BPNN", "BPNN+BN", "BPNN+DP", "BPNN+BN+DP", "CNN", "CNN+BN", "CNN+DP", "CNN+BN+DP"]
RUN_COLUMNS = [
    "study", "cell", "arm", "arch", "optimizer", "batchnorm", "dropout", "variant", "seed", "lr", "lr_source", "status",
    "stop_reason", "best_val_acc", "test_acc", "epochs", "epochs_to_best", "wall_time", "time_per_epoch", "n_params",
    "mlflow_run_id", "git_commit", "started_at", "finished_at", "logging_seconds",
]  # fmt: skip


#: a table cell that reads as a number: 97.12, −0.45, +0.76, 97.60 ± 0.13, 1e-3, < 0.001, [−0.23, +0.00], —
NUMERIC_CELL = re.compile(r"^(?:[<≤>]\s*)?[−+\-]?\d[\d,.]*(?:e[−+\-]?\d+)?(?:\s*±\s*[\d.]+)?\s*%?$|^\[[^\]]*\]$|^—$")


def markdown_table(frame: pd.DataFrame) -> str:
    """A Markdown table whose numeric columns are right-aligned (``---:``) and the others left-aligned:
    the alignment markers decide the HTML's alignment, so CSS cannot."""

    def numeric(column: pd.Series) -> bool:
        cells = column.astype(str).str.strip().str.removeprefix("**").str.removesuffix("**")  # bold: a column's best
        return bool(len(cells)) and cells.str.match(NUMERIC_CELL).all() and (cells != "—").any()

    align = ["right" if numeric(frame[c]) else "left" for c in frame.columns]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align)


#: what every grid result holds, whatever its status
RESULT_KEYS = ("cell", "seed", "status", "optimizer", "batchnorm", "dropout")


def grid_result(path: str | Path) -> dict:
    """One grid run's result.json, refused with its path and the repair when it is not one."""
    result = read_json(path)
    missing = [k for k in RESULT_KEYS if k not in result] if isinstance(result, dict) else list(RESULT_KEYS)
    if missing:
        what = f"valid JSON, but {type(result).__name__} without {', '.join(missing)}"
        raise ValueError(f"{path}: not a grid run's result ({what}); delete it (rm '{path}') and run the same "
                         "command to retrain it")  # fmt: skip
    return result


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per grid run (no histories), sorted by cell and seed."""
    results = [grid_result(p) for p in paths]  # each file once: the histories make them large
    rows = [{k: result.get(k) for k in RUN_COLUMNS} for result in results]
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    frame["arch"] = frame["arch"].fillna("mlp")
    frame["arm"] = frame["arm"].fillna("tuned")
    order = ["arm", "arch", "optimizer", "batchnorm", "dropout", "seed"]
    return frame.sort_values(order, key=_in_order).reset_index(drop=True)


def main_arm(arms: pd.Series) -> str:
    """The arm the descriptive figures and text show: tuned when it ran, else the only one."""
    present = set(arms)
    return "tuned" if "tuned" in present or not present else sorted(present)[0]


def _in_order(column: pd.Series) -> pd.Series:
    """The replication arm before the tuned one, the BP network before the CNN."""
    orders = {"arm": {"replication": 0, "tuned": 1}, "arch": {"mlp": 0, "cnn": 1}}
    return column.map(orders[column.name]) if column.name in orders else column


def summarise(runs: pd.DataFrame, by: list[str], timing: bool = False) -> pd.DataFrame:
    """Mean, std and count of accuracy (in %) and epochs per group; diverged and collapsed runs are counted
    apart and left out of the means.  Wall-clock columns only with ``timing`` (they differ between runs of
    the same config, and Tables 1 and 2 are meant to be byte-identical)."""
    measures = [("best_val_acc", 100), ("test_acc", 100), ("epochs_to_best", 1), ("epochs", 1)]
    measures += [("time_per_epoch", 1)] if timing else []
    out = []
    for key, group in runs.groupby(by, sort=False):
        ok = group[group["status"] == "ok"]
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(n=len(ok), n_diverged=int((group["status"] == "diverged").sum()),
                   n_collapsed=int((group["status"] == "collapsed").sum()), lr=group["lr"].iloc[0],
                   n_params=int(group["n_params"].iloc[0]))  # fmt: skip
        for col, scale in measures:
            row[f"{col}_mean"] = ok[col].mean() * scale if len(ok) else float("nan")
            row[f"{col}_std"] = ok[col].std(ddof=1) * scale if len(ok) > 1 else float("nan")
        for q, name in ((0.25, "q1"), (0.5, "median"), (0.75, "q3")):  # epochs: integers, censored by patience
            row[f"epochs_to_best_{name}"] = ok["epochs_to_best"].quantile(q) if len(ok) else float("nan")
        out.append(row)
    stats = [f"{c}_{s}" for c, _ in measures for s in ("mean", "std")]
    stats += [f"epochs_to_best_{name}" for name in ("median", "q1", "q3")]
    return pd.DataFrame(out, columns=[*by, "n", "n_diverged", "n_collapsed", "lr", "n_params", *stats])


def median_iqr(median: float, q1: float, q3: float) -> str:
    """``12 [9–15]``: a median and its interquartile range; ``—`` for no value."""
    if pd.isna(median):
        return "—"
    return f"{median:g} [{q1:g}–{q3:g}]"


def mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``97.57 ± 0.08``; ``—`` for no value; the std is left out when there is only one run."""
    if pd.isna(mean):
        return "—"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


#: how an optimizer is named in tables and text (config and file names keep the lower-case key)
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam"}


def optimizer_name(key: str) -> str:
    return OPTIMIZER_NAMES.get(key, key)


def with_optimizer_names(label: str) -> str:
    """``BPNN+BN adam`` -> ``BPNN+BN Adam``: the optimizer keys in a label, by their display names."""
    return re.sub(r"\b(?:" + "|".join(OPTIMIZER_NAMES) + r")\b", lambda m: OPTIMIZER_NAMES[m[0]], label)


def display_table(summary: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    shown = summary[first].copy()
    if "optimizer" in shown:
        shown["optimizer"] = shown["optimizer"].map(optimizer_name)
    shown["lr"] = summary["lr"].map(lambda v: f"{v:.3g}")
    for label, col, digits in (("val acc (%)", "best_val_acc", 2), ("test acc (%)", "test_acc", 2),
                               ("epochs run", "epochs", 1)):  # fmt: skip
        shown[label] = [mean_std(m, s, digits) for m, s in zip(summary[f"{col}_mean"], summary[f"{col}_std"])]
    shown.insert(shown.columns.get_loc("epochs run"), "epochs to best, median [IQR]", [
        median_iqr(m, a, b) for m, a, b in zip(summary["epochs_to_best_median"], summary["epochs_to_best_q1"],
                                               summary["epochs_to_best_q3"])])  # fmt: skip
    shown["n"] = summary["n"].astype(str) + [
        not_ok(d, c) for d, c in zip(summary["n_diverged"], summary["n_collapsed"])
    ]
    return shown


def not_ok(diverged: int, collapsed: int) -> str:
    """`` (1 diverged, 2 collapsed)``: the runs a table row leaves out of its means."""
    parts = [f"{n} {what}" for n, what in ((diverged, "diverged"), (collapsed, "collapsed")) if n]
    return f" ({', '.join(parts)})" if parts else ""


def table1(runs: pd.DataFrame) -> pd.DataFrame:
    """Optimisers on the plain BP network (the seed's Table 1), per arm."""
    plain = runs[(runs["arch"] == "mlp") & (~runs["batchnorm"].astype(bool)) & (runs["dropout"] == 0)]
    return summarise(plain, ["arm", "optimizer"])


def table2(runs: pd.DataFrame) -> pd.DataFrame:
    """BPNN / +BN / +DP / +BN+DP for each optimiser (the seed's Table 2), per arm."""
    frame = summarise(runs[runs["arch"] == "mlp"], ["arm", "optimizer", "variant"])
    frame["variant"] = pd.Categorical(frame["variant"], categories=VARIANTS, ordered=True)
    return (
        frame.sort_values(["arm", "optimizer", "variant"], key=_in_order, kind="stable")
        .reset_index(drop=True)
        .astype({"variant": str})
    )


def table3(runs: pd.DataFrame) -> pd.DataFrame:
    """Deep against shallow: every CNN cell beside the plain BP network trained with the same optimiser and
    in the same arm."""
    cnn = runs[runs["arch"] == "cnn"]
    plain = runs[(runs["arch"] == "mlp") & (runs["variant"] == "BPNN") & runs["optimizer"].isin(cnn["optimizer"])]
    if cnn.empty:
        return summarise(cnn, ["arm", "variant", "optimizer"], timing=True)
    frame = summarise(pd.concat([plain, cnn]), ["arm", "variant", "optimizer"], timing=True)
    frame["variant"] = pd.Categorical(frame["variant"], categories=VARIANTS, ordered=True)
    return (
        frame.sort_values(["arm", "optimizer", "variant"], key=_in_order, kind="stable")
        .reset_index(drop=True)
        .astype({"variant": str})
    )


def display_table3(summary: pd.DataFrame) -> pd.DataFrame:
    shown = display_table(summary, ["arm", "variant", "optimizer"])
    shown["time per epoch (s)"] = [mean_std(m, s, 2) for m, s in zip(summary.time_per_epoch_mean,
                                                                     summary.time_per_epoch_std)]  # fmt: skip
    shown["parameters"] = summary["n_params"].map(lambda v: f"{v:,}")
    return shown.drop(columns=["epochs run"])


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; white-space: nowrap; }}
th {{ border-bottom: 2px solid #444; text-align: left; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style></head>
<body><h1>{title}</h1>
{table}
</body></html>
"""


def cell_text(value: object) -> str:
    """A cell as a person reads it: floats to 4 significant digits (0.723, not 0.7230000000000019; 1.52e-04
    for a small p), the true minus sign, nothing for a missing value."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        text = f"{value:.3e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4g}"
        return text.replace("-", "−")
    return str(value)


#: the columns a reader looks at first, moved to the front of the HTML views (the CSV keeps its order)
FIRST_COLUMNS = {"claims": ["family", "arm", "claim", "verdict", "metric", "estimate", "ci_adj_low", "ci_adj_high",
                            "p_holm"]}  # fmt: skip


def html_table(frame: pd.DataFrame, title: str) -> str:
    """A standalone HTML page with ``frame`` as a table (numbers right-aligned), for ``snakemake --report``,
    which shows HTML in place where it offers CSV only as a download."""
    import html

    def numeric(column: pd.Series) -> bool:
        text = column.dropna().astype(str).str.replace(r"[\s,%±.+\-eE]|nan", "", regex=True)
        return not column.dropna().empty and text.str.fullmatch(r"\d*").all()

    kinds = {name: "num" if numeric(frame[name]) else "text" for name in frame.columns}
    head = "".join(f'<th class="{kinds[c]}">{html.escape(str(c))}</th>' for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = "".join(f'<td class="{kinds[c]}">{html.escape(cell_text(v))}</td>' for c, v in row.items())
        rows.append(f"<tr>{cells}</tr>")
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
    return HTML_PAGE.format(title=html.escape(title), table=table)


TABLE_TITLES = {
    "table1": "Table 1: optimizers (plain network)",
    "table2": "Table 2: BPNN, +BN, +DP, +BN+DP",
    "table3": "Table 3: CNN against the BP network",
    "runs": "Every grid training",
    "claims": "The declared claims: paired over seeds, Holm-adjusted within each family",
    "comparisons": "Exploratory comparisons between cells (Welch, unadjusted)",
    "budget": "Expected best validation accuracy against the search budget",
}
#: the protocol's defaults, for tables written without a config (see workflow/schemas/config.schema.yaml)
DEFAULT_PROTOCOL = {"primary_metric": "test_acc", "arms": ["replication", "tuned"], "alpha": 0.05, "claims": [],
                    "planning": {}, "equivalence_margin": {}}  # fmt: skip


def exploratory_comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """Welch's tests between cells, per arm: exploratory (unpaired, unadjusted), never worded as findings."""
    from .stats import comparisons_frame, seed_comparisons

    frames = []
    for arm, group in runs.groupby("arm", sort=False):
        frame = comparisons_frame(seed_comparisons(group))
        frame.insert(0, "arm", arm)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else comparisons_frame([]).assign(arm=[])


def budget_table(trial_paths: Iterable[str | Path], max_trials: int | None = None) -> pd.DataFrame:
    """Expected best validation accuracy (%) of k search trials, k = 1 .. N, per study (Dodge et al. 2019).
    A pruned trial counts at the best validation accuracy it had reached (a lower bound of what it would
    have reached); a diverged, collapsed or failed one as 0."""
    from .claims import expected_max

    rows = []
    for path in trial_paths:
        trials = pd.read_csv(path)
        held = trials[trials["holds_slot"].astype(bool)] if "holds_slot" in trials else trials
        scored = held["state"].isin(["COMPLETE", "PRUNED"]) & held["value"].notna()
        values = held["value"].where(scored, 0.0) * 100
        study = Path(path).parent.name
        for k in range(1, min(len(values), max_trials or len(values)) + 1):
            rows.append({"study": study, "k": k, "expected_best_val_acc": expected_max(values, k),
                         "n_trials": len(values)})  # fmt: skip
    return pd.DataFrame(rows, columns=["study", "k", "expected_best_val_acc", "n_trials"])


def write_tables(
    result_paths: Iterable[str | Path], out_dir: str | Path, protocol: dict | None = None,
    trial_paths: Iterable[str | Path] = (), workers: int = 1,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """runs.csv, table1-3.{csv,md}, claims.csv (the confirmatory claims), comparisons.csv (exploratory
    Welch tests) and budget.csv (expected best against search budget) in ``out_dir``, and each as .html;
    ``workers``: processes for the claims' exact intervals."""
    from .claims import study_claims

    out_dir = Path(out_dir)
    protocol = {**DEFAULT_PROTOCOL, **(protocol or {})}
    runs = load_runs(result_paths)
    tables = {"runs": runs, "table1": table1(runs), "table2": table2(runs), "table3": table3(runs)}
    tables["claims"] = study_claims(runs, protocol, workers=workers)
    tables["comparisons"] = exploratory_comparisons(runs)
    tables["budget"] = budget_table(trial_paths)
    for name in ("claims", "comparisons", "runs", "budget"):
        atomic_write_text(out_dir / f"{name}.csv", tables[name].to_csv(index=False))
    for name, first in (("table1", ["arm", "optimizer"]), ("table2", ["arm", "optimizer", "variant"])):
        atomic_write_text(out_dir / f"{name}.csv", tables[name].to_csv(index=False))
        atomic_write_text(
            out_dir / f"{name}.md",
            markdown_table(display_table(tables[name], first)) + "\n",
        )
    atomic_write_text(out_dir / "table3.csv", tables["table3"].to_csv(index=False))
    if tables["table3"].empty:
        markdown = "(no CNN cells in this study)"
    else:
        markdown = markdown_table(display_table3(tables["table3"]))
    atomic_write_text(out_dir / "table3.md", markdown + "\n")
    shown = {"table1": display_table(tables["table1"], ["arm", "optimizer"]),
             "table2": display_table(tables["table2"], ["arm", "optimizer", "variant"]),
             "table3": display_table3(tables["table3"]) if not tables["table3"].empty else tables["table3"],
             "runs": runs, "claims": tables["claims"], "comparisons": tables["comparisons"],
             "budget": tables["budget"]}  # fmt: skip
    for name, frame in shown.items():
        first = [c for c in FIRST_COLUMNS.get(name, []) if c in frame.columns]
        frame = frame[first + [c for c in frame.columns if c not in first]]
        atomic_write_text(out_dir / f"{name}.html", html_table(frame, TABLE_TITLES[name]))
    return tables
