"""The generated lab report: Markdown from Jinja2 templates, then self-contained HTML and PDF, in English and Chinese.

Everything comes from the study's declared result files (tables, run results, search results and the
dataset summary); nothing is retrained and MLflow is not queried.
"""

from __future__ import annotations

import base64
import inspect
import os
import platform
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml
from markdown_it import MarkdownIt

from nnlib import MLPSpec, layers, optim

from .figures import deep_vs_shallow, grid_comparison, optimizer_curves, search_figures
from .io import atomic_write_bytes, atomic_write_text, read_json
from .tables import (
    display_table,
    display_table3,
    main_arm,
    markdown_table,
    mean_std,
    optimizer_name,
    with_optimizer_names,
)

LANGS = ("en", "zh")
#: the seed report's own figures: Table 1 (optimizer -> val acc, epochs) and Table 2 (variant -> val acc, epochs)
SEED_TABLE1 = {"sgd": (97.12, 36, 0.02), "adam": (97.57, 14, 0.001)}
SEED_TABLE2 = {"BPNN": (97.62, 14), "BPNN+BN": (97.91, 14), "BPNN+DP": (97.65, 12), "BPNN+BN+DP": (97.52, 23)}
PACKAGES = ("numpy", "pandas", "scipy", "matplotlib", "seaborn", "optuna", "mlflow", "snakemake", "jinja2",
            "markdown-it-py", "weasyprint")  # fmt: skip

HEADERS = {
    "en": {},
    "zh": {"optimizer": "优化器", "variant": "模型", "lr": "学习率", "val acc (%)": "验证准确率 (%)",
           "test acc (%)": "测试准确率 (%)", "epochs to best, median [IQR]": "最佳轮次，中位数 [四分位距]",
           "epochs run": "训练轮次", "arm": "实验组", "n": "运行次数",
           "time per epoch (s)": "每轮时间 (秒)", "parameters": "参数量"},
}  # fmt: skip
VERDICTS = {
    "en": {"higher": "significantly higher", "lower": "significantly lower",
           "no significant difference": "no significant difference", "not enough runs": "not enough runs"},
    "zh": {"higher": "显著更高", "lower": "显著更低", "no significant difference": "无显著差异",
           "not enough runs": "运行次数不足"},
}  # fmt: skip
METRICS = {
    "en": {"validation accuracy (%)": "validation accuracy (%)", "test accuracy (%)": "test accuracy (%)",
           "epochs to best": "epochs to best"},
    "zh": {"validation accuracy (%)": "验证准确率 (%)", "test accuracy (%)": "测试准确率 (%)",
           "epochs to best": "最佳轮次"},
}  # fmt: skip


ARMS = {
    "en": {"replication": "replication", "tuned": "tuned"},
    "zh": {"replication": "复现组", "tuned": "调优组"},
}
CLAIMS = {
    "en": {"adam_beats_sgd": "Adam beats SGD on the plain network", "bn_improves": "BN improves accuracy ({opt})",
           "dropout_improves": "dropout improves accuracy ({opt})",
           "bn_dp_worse_than_best_single": "BN+DP is worse than the better of BN and DP alone ({opt})",
           "cnn_beats_bpnn": "the CNN beats the BP network ({opt})"},
    "zh": {"adam_beats_sgd": "在基础网络上 Adam 优于 SGD", "bn_improves": "批量归一化提高准确率（{opt}）",
           "dropout_improves": "丢弃法提高准确率（{opt}）",
           "bn_dp_worse_than_best_single": "BN+DP 不如 BN、DP 中较好的一个（{opt}）",
           "cnn_beats_bpnn": "CNN 优于 BP 网络（{opt}）"},
}  # fmt: skip
CLAIM_VERDICTS = {
    "en": {"supported": "supported", "contradicted": "contradicted", "inconclusive": "inconclusive"},
    "zh": {"supported": "支持", "contradicted": "相反", "inconclusive": "无定论"},
}
PRIMARY = {
    "en": {"test_acc": "test accuracy", "best_val_acc": "validation accuracy"},
    "zh": {"test_acc": "测试准确率", "best_val_acc": "验证准确率"},
}


def fmt_num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return "—"
    if round(value, digits) == 0:  # no "-0.00"
        value = 0.0
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_sci(value: float, digits: int = 0) -> str:
    """1e-08 -> "1e-8": scientific notation without a padded exponent."""
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fmt_p(p: float) -> str:
    if pd.isna(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def table_markdown(summary: pd.DataFrame, first: list[str], lang: str) -> str:
    shown = display_table(summary, first)
    shown["arm"] = shown["arm"].map(ARMS[lang])
    shown = shown.rename(columns=HEADERS[lang])
    return markdown_table(shown)


def comparison_rows(comparisons: pd.DataFrame, lang: str) -> dict[str, dict[str, dict[str, str]]]:
    """key -> metric -> formatted fields (the same strings feed the text and the statistics table)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for row in comparisons.itertuples():
        digits = 1 if row.metric == "epochs to best" else 2
        out.setdefault(row.key, {})[row.metric] = {
            "a": row.label_a, "b": row.label_b, "n_a": str(row.n_a), "n_b": str(row.n_b),
            "mean_a": fmt_num(row.mean_a, digits), "mean_b": fmt_num(row.mean_b, digits),
            "diff": fmt_num(row.diff, digits, signed=True),
            "ci": f"[{fmt_num(row.ci_low, digits, True)}, {fmt_num(row.ci_high, digits, True)}]",
            "p": fmt_p(row.p_value), "verdict": row.verdict, "verdict_text": VERDICTS[lang][row.verdict],
            "metric_text": METRICS[lang][row.metric],
        }  # fmt: skip
    return out


def claim_rows(claims: pd.DataFrame, lang: str) -> list[dict[str, str]]:
    """The confirmatory claims, formatted once for the claims table and the conclusions."""
    rows = []
    for row in claims.itertuples():
        base, _, opt = row.claim.partition(":")
        rows.append({
            "arm": row.arm, "arm_text": ARMS[lang][row.arm], "claim": row.claim,
            "text": CLAIMS[lang][base].format(opt=optimizer_name(opt)), "n": str(row.n),
            "a": with_optimizer_names(row.a), "b": with_optimizer_names(row.b),
            "estimate": fmt_num(row.estimate, 2, signed=True),
            "ci": f"[{fmt_num(row.ci_low, 2, True)}, {fmt_num(row.ci_high, 2, True)}]",
            "p": fmt_p(row.p_value), "p_holm": fmt_p(row.p_holm), "p_wilcoxon": fmt_p(row.p_wilcoxon),
            "d": fmt_num(row.effect_size, 2), "mde": fmt_num(row.mde, 2), "verdict": row.verdict,
            "verdict_text": CLAIM_VERDICTS[lang][row.verdict],
        })  # fmt: skip
    return rows


def claims_markdown(rows: list[dict[str, str]], lang: str) -> str:
    if not rows:
        return "(no claim can be tested: the grid lacks the cells)" if lang == "en" else "（网格中缺少检验所需的设置）"
    en = lang == "en"
    columns = (["arm", "claim", "B − A (pp)", "95% CI (BCa)", "n", "p (paired t)", "p (Holm)", "p (Wilcoxon)", "d_z",
                "MDE (pp)", "verdict"] if en else
               ["实验组", "论断", "B − A（百分点）", "95% 置信区间（BCa）", "n", "p（配对 t）", "p（Holm）",
                "p（Wilcoxon）", "d_z", "最小可检测效应（百分点）", "结论"])  # fmt: skip
    keys = ["arm_text", "text", "estimate", "ci", "n", "p", "p_holm", "p_wilcoxon", "d", "mde", "verdict_text"]
    frame = pd.DataFrame([[row[k] for k in keys] for row in rows], columns=columns)
    return markdown_table(frame)


def budget_markdown(budget: pd.DataFrame, lang: str) -> str:
    """Expected best validation accuracy at a few budgets per study (the full curve is in budget.csv)."""
    if budget.empty:
        return ""
    rows = []
    for study, group in budget.groupby("study", sort=False):
        n = int(group["n_trials"].iloc[0])
        picks = sorted({k for k in (1, 2, 5, 10, 20, n) if k <= n})
        values = group.set_index("k")["expected_best_val_acc"]
        rows.append({"study" if lang == "en" else "搜索": study, **{f"k = {k}": fmt_num(values[k]) for k in picks}})
    return markdown_table(pd.DataFrame(rows).fillna("—"))


COMPARISON_COLUMNS = {
    "en": ["optimizer", "A", "B", "metric", "mean A", "mean B", "B − A", "95% CI", "p (Welch)", "verdict"],
    "zh": ["优化器", "A", "B", "指标", "A 均值", "B 均值", "B − A", "95% 置信区间", "p（Welch）", "结论"],
}


def comparisons_markdown(comparisons: pd.DataFrame, lang: str) -> str:
    if comparisons.empty:
        return "(no comparison: the grid has one cell per optimizer)" if lang == "en" else "（网格中没有可比较的设置）"
    rows = []
    for row in comparisons.itertuples():
        f = comparison_rows(comparisons.loc[[row.Index]], lang)[row.key][row.metric]
        scope = row.key.split(":")[1] if ":" in row.key else "—"
        values = [optimizer_name(scope), f"{f['a']} (n={f['n_a']})", f"{f['b']} (n={f['n_b']})", f["metric_text"],
                  f["mean_a"], f["mean_b"], f["diff"], f["ci"], f["p"], f["verdict_text"]]  # fmt: skip
        rows.append(dict(zip(COMPARISON_COLUMNS[lang], values, strict=True)))
    return markdown_table(pd.DataFrame(rows))


def seed_comparison(table1: pd.DataFrame, table2: pd.DataFrame, lang: str) -> str:
    """The replication table: the seed report's single-run figure | our replication arm (the seed's rates)
    | our tuned arm (searched rates), mean ± sd over seeds."""
    label = ("Table 1" if lang == "en" else "表 1", "Table 2 (Adam)" if lang == "en" else "表 2（Adam）")
    settings = [(label[0], opt, "BPNN", val, epochs) for opt, (val, epochs, _) in SEED_TABLE1.items()]
    settings += [(label[1], "adam", variant, val, epochs) for variant, (val, epochs) in SEED_TABLE2.items()]
    arms = [a for a in ("replication", "tuned") if a in set(table2["arm"])]
    rows = []
    for source, opt, variant, val, epochs in settings:
        ours = {a: table2[(table2["arm"] == a) & (table2["optimizer"] == opt) & (table2["variant"] == variant)]
                for a in arms}  # fmt: skip
        if not any(len(o) for o in ours.values()):
            continue
        row = [source, variant if variant != "BPNN" or source != label[0] else ("SGD" if opt == "sgd" else "Adam"),
               f"{val:.2f}", str(epochs)]  # fmt: skip
        for arm in arms:
            if len(ours[arm]):
                r = ours[arm].iloc[0]
                row += [mean_std(r.best_val_acc_mean, r.best_val_acc_std), mean_std(r.test_acc_mean, r.test_acc_std),
                        f"{r.lr:.3g}"]  # fmt: skip
            else:
                row += ["—", "—", "—"]
        rows.append(row)
    if lang == "en":
        cols = ["", "setting", "seed val acc", "seed epochs"]
        cols += [f"{a} {what}" for a in arms for what in ("val acc (%)", "test acc (%)", "lr")]
    else:
        cols = ["", "设置", "原报告验证准确率", "原报告轮次"]
        cols += [f"{ARMS['zh'][a]}{what}" for a in arms for what in ("验证准确率 (%)", "测试准确率 (%)", "学习率")]
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
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip(),
        "versions": versions,
        "python": platform.python_version(),
        "commits": sorted(set(runs["git_commit"].dropna())) or ["unknown"],
        "dataset": dataset,
        "machine": machine_summary(),
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
    names = {"mlp": "BP network" if lang == "en" else "BP 网络", "cnn": "CNN"}
    models = [{"name": names.get(m["model"], m["model"]), "cell": Path(m["checkpoint"]).parent.parent.name,
               "seed": Path(m["checkpoint"]).parent.name.removeprefix("seed"),
               "gui": fmt_num(100 * m["accuracy_gui"], 1), "direct": fmt_num(100 * m["accuracy_direct"], 1),
               "agreement": fmt_num(100 * m["agreement"], 1)} for m in check["models"]]  # fmt: skip
    ink, ink_all = check.get("mean_ink_unreadable"), check.get("mean_ink")
    return {"n": check["n_digits"], "models": models, "unreadable": check["unreadable"],
            "ink": fmt_num(ink, 2) if ink is not None else "—",
            "ink_all": fmt_num(ink_all, 2) if ink_all is not None else "—"}  # fmt: skip


def cnn_decay(config: dict[str, Any]) -> dict[str, Any] | None:
    """The CNN's learning-rate schedule (its own, else the training section's); None if constant."""
    kind = config["cnn"].get("schedule", config["training"].get("schedule", "constant"))
    if kind == "constant":
        return None
    pick = lambda key, default: config["cnn"].get(key, config["training"].get(key, default))  # noqa: E731
    return {"kind": kind, "gamma": pick("schedule_gamma", 0.5), "step": pick("schedule_step", 10)}


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
) -> dict[str, Any]:
    all_table1 = pd.read_csv(tables_dir / "table1.csv")
    all_table2 = pd.read_csv(tables_dir / "table2.csv")
    all_table3 = pd.read_csv(tables_dir / "table3.csv")
    runs = pd.read_csv(tables_dir / "runs.csv")
    all_comparisons = pd.read_csv(tables_dir / "comparisons.csv")
    claims = claim_rows(pd.read_csv(tables_dir / "claims.csv"), lang)
    budget = pd.read_csv(tables_dir / "budget.csv")
    arm = main_arm(runs["arm"])  # the arm the descriptive text shows; the tables show every arm
    table1, table2 = all_table1[all_table1["arm"] == arm], all_table2[all_table2["arm"] == arm]
    table3, comparisons = all_table3[all_table3["arm"] == arm], all_comparisons[all_comparisons["arm"] == arm]
    trials = {s: pd.read_csv(search_dir / s / "trials.csv") for s in studies}
    searches = []
    for study in studies:
        best = read_json(search_dir / study / "best.json")
        optimizer = best["optimizer"]  # from the study model, never parsed out of the study's name
        seed_lr = SEED_TABLE1.get(optimizer, (None, None, None))[2] if best["arch"] == "mlp" else None
        best["optimizer"] = optimizer
        best["lr_text"] = "—" if best.get("lr") is None else f"{best['lr']:.3g}"
        best["val_text"] = fmt_num(None if best.get("best_val_acc") is None else best["best_val_acc"] * 100)
        best["seed_lr"] = seed_lr
        best["ratio_text"] = f"{best['lr'] / seed_lr:.2g}" if seed_lr and best.get("lr") else "—"
        searches.append(best)
    t1 = {r.optimizer: r for r in table1.itertuples()}
    t2 = {(r.optimizer, r.variant): r for r in table2.itertuples()}
    t3 = {(r.optimizer, r.variant): r for r in table3.itertuples()}

    def cell(opt: str, variant: str | None = None, source: dict | None = None) -> dict[str, str] | None:
        r = t1.get(opt) if variant is None else (source or t2).get((opt, variant))
        if r is None:
            return None
        return {"val": mean_std(r.best_val_acc_mean, r.best_val_acc_std),
                "test": mean_std(r.test_acc_mean, r.test_acc_std),
                "epochs": mean_std(r.epochs_to_best_mean, r.epochs_to_best_std, 1),
                "n": int(r.n), "n_diverged": int(r.n_diverged), "lr": f"{r.lr:.3g}",
                "time": mean_std(getattr(r, "time_per_epoch_mean", None), getattr(r, "time_per_epoch_std", None), 2),
                "params": f"{int(r.n_params):,}"}  # fmt: skip

    optimizers = list(table1["optimizer"])
    variants = [v for v in ("BPNN", "BPNN+BN", "BPNN+DP", "BPNN+BN+DP") if v in set(table2["variant"])]
    dataset = read_json(dataset_json)
    return {
        "lang": lang,
        "study_name": config["study_name"],
        "seeds": config["grid"]["seeds"],
        "n_seeds": len(config["grid"]["seeds"]),
        "optimizers": optimizers,
        "variants": variants,
        "cells": {(o, v): cell(o, v) for o in optimizers for v in variants},
        "t1": {o: cell(o) for o in optimizers},
        "table1_md": table_markdown(all_table1, ["arm", "optimizer"], lang),
        "table2_md": table_markdown(all_table2, ["arm", "optimizer", "variant"], lang),
        "table3_md": markdown_table(
            display_table3(all_table3)
            .assign(arm=lambda shown: shown["arm"].map(ARMS[lang]))
            .rename(columns=HEADERS[lang])
        )
        if len(all_table3)
        else "",
        "deep": {
            o: {"cnn": cell(o, "CNN", t3), "mlp": cell(o, "BPNN", t3)}
            for o in sorted(set(table3["optimizer"]))
            if (o, "CNN") in t3 and (o, "BPNN") in t3
        },  # fmt: skip
        "cnn_enabled": bool(config["cnn"]["enabled"]),
        "cnn_conv": config["cnn"]["conv"],
        "cnn_hidden": config["cnn"]["hidden"],
        "cnn_decay": cnn_decay(config),
        "comparisons_md": comparisons_markdown(comparisons, lang),
        "cmp": comparison_rows(comparisons, lang),
        "seed_md": seed_comparison(all_table1, all_table2, lang),
        "main_arm": arm,
        "main_arm_text": ARMS[lang][arm],
        "arms": [a for a in ("replication", "tuned") if a in set(runs["arm"])],
        "arm_text": ARMS[lang],
        "protocol": {**config["protocol"], "primary_text": PRIMARY[lang][config["protocol"]["primary_metric"]]},
        "claims": claims,
        "claims_md": claims_markdown(claims, lang),
        "n_supported": sum(c["verdict"] == "supported" for c in claims),
        "n_contradicted": sum(c["verdict"] == "contradicted" for c in claims),
        "budget_md": budget_markdown(budget, lang),
        "per_cell": bool(config["search"]["per_cell"]),
        "cnn_seeds": config["cnn"].get("seeds") or config["grid"]["seeds"],
        "grid_seeds": config["grid"]["seeds"],
        "searches": searches,
        "search_enabled": bool(studies),
        "n_trials": config["search"]["n_trials"],
        "cnn_trials": config["cnn"]["n_trials"],
        "dropout_text": " / ".join(f"{p:g}" for p in config["grid"]["dropout"] if p > 0) or "—",
        "training": config["training"],
        "data": {**config["data"], **dataset},
        "prov": provenance(runs, trials, dataset, config),
        "code": engine_code(),
        "engine": engine_constants(),
        "gradcheck": gradient_check_summary(read_json(gradcheck_json)),
        "rec": recogniser_summary(read_json(recogniser_json), lang),
        "n_diverged": int((runs["status"] != "ok").sum()),
        "diverged_cells": sorted(set(runs.loc[runs["status"] != "ok", "cell"])),
        "fig": f"figures/{lang}",
    }


def render_markdown(template_dir: Path, lang: str, context: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 (Markdown, not HTML; the HTML step escapes)
    )
    env.filters["optimizer"] = optimizer_name
    return env.get_template(f"lab_report.{lang}.md.j2").render(**context)


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


def markdown_to_html(markdown: str, *, title: str, lang: str, css: str, base_dir: Path) -> str:
    """A self-contained HTML page: figures are embedded as data URIs, nothing is fetched."""
    if lang == "zh":  # a line break between two CJK characters is not a space in Chinese text
        markdown = re.sub(r"(?<=[\u3000-\u9fff\uff00-\uffef])\n(?=[\u3000-\u9fff\uff00-\uffef])", "", markdown)
    body = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table").render(markdown)

    def embed(match: re.Match) -> str:
        src = match.group(1)
        path = base_dir / src
        mime = "image/svg+xml" if path.suffix == ".svg" else "image/png"
        return f'src="data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'src="([^"]+\.(?:png|svg))"', embed, body)
    body = with_figures_and_captions(body)
    return (
        f'<!DOCTYPE html>\n<html lang="{"zh-CN" if lang == "zh" else "en"}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
        f"<style>\n{css}\n</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


def html_to_pdf(html: str, path: Path) -> None:
    from weasyprint import HTML

    atomic_write_bytes(path, HTML(string=html).write_pdf())


def write_report(
    *, tables_dir: str | Path, search_dir: str | Path, studies: list[str], result_paths: list[str],
    dataset_json: str | Path, config: dict, template_dir: str | Path, out_dir: str | Path, pdf: bool = True,
    langs: Iterable[str] = LANGS, drawn: Iterable[str | Path] = (), gradcheck_json: str | Path,
    recogniser_json: str | Path, recogniser_figure: str | Path,
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
        png = ("png",)  # the report embeds PNGs; the SVGs are in results/figures
        if lang == "en" and drawn:
            for path in map(Path, drawn):
                atomic_write_bytes(fig_dir / path.name, path.read_bytes())
        else:
            optimizer_curves(result_paths, fig_dir, lang=lang, formats=png)
            grid_comparison(Path(tables_dir) / "runs.csv", fig_dir, lang=lang, formats=png)
            if config["cnn"]["enabled"]:
                deep_vs_shallow(Path(tables_dir) / "runs.csv", fig_dir, lang=lang, formats=png)
            if studies:
                search_figures({s: Path(search_dir) / s / "trials.csv" for s in studies}, fig_dir, lang=lang,
                               formats=png)  # fmt: skip
        context = build_context(tables_dir=Path(tables_dir), search_dir=Path(search_dir), studies=studies,
                                dataset_json=Path(dataset_json), config=config, lang=lang,
                                gradcheck_json=Path(gradcheck_json), recogniser_json=Path(recogniser_json))  # fmt: skip
        markdown = render_markdown(template_dir, lang, context)
        md_path = out_dir / f"lab_report.{lang}.md"
        atomic_write_text(md_path, markdown)
        title = "Lab report: a BP network on MNIST" if lang == "en" else "实验报告：BP 神经网络手写数字识别"
        html = markdown_to_html(markdown, title=title, lang=lang, css=css, base_dir=out_dir)
        html_path = out_dir / f"lab_report.{lang}.html"
        atomic_write_text(html_path, html)
        written[f"{lang}_md"], written[f"{lang}_html"] = md_path, html_path
        if pdf:
            html_to_pdf(html, out_dir / f"lab_report.{lang}.pdf")
            written[f"{lang}_pdf"] = out_dir / f"lab_report.{lang}.pdf"
    return written
