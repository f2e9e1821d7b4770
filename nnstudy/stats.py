"""Statistical statements for the report: Welch's t-test over seeds for each comparison the seed draws."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """B against A on one metric: ``diff = mean(B) - mean(A)`` with Welch's 95 % interval and p-value."""

    key: str
    metric: str
    label_a: str
    label_b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str  # "higher", "lower", "no significant difference", "not enough runs"

    @property
    def significant(self) -> bool:
        return self.verdict in ("higher", "lower")

    def as_dict(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def welch(key: str, metric: str, label_a: str, a, label_b: str, b, alpha: float = ALPHA) -> Comparison:
    """Compare samples ``b`` against ``a`` (percent or epochs) with Welch's unequal-variance t-test."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    mean_a = float(a.mean()) if len(a) else float("nan")
    mean_b = float(b.mean()) if len(b) else float("nan")
    if len(a) < 2 or len(b) < 2:
        nan = float("nan")
        return Comparison(key, metric, label_a, label_b, len(a), len(b), mean_a, mean_b, mean_b - mean_a, nan, nan,
                          nan, "not enough runs")  # fmt: skip
    if np.ptp(np.concatenate([a, b])) == 0:
        return Comparison(key, metric, label_a, label_b, len(a), len(b), mean_a, mean_b, 0.0, 0.0, 0.0, 1.0,
                          "no significant difference")  # fmt: skip
    result = stats.ttest_ind(b, a, equal_var=False)
    ci = result.confidence_interval(1 - alpha)
    p = float(result.pvalue)
    if not np.isfinite(p):
        p = 1.0
    verdict = ("higher" if mean_b > mean_a else "lower") if p < alpha else "no significant difference"
    return Comparison(key, metric, label_a, label_b, len(a), len(b), mean_a, mean_b, mean_b - mean_a,
                      float(ci.low), float(ci.high), p, verdict)  # fmt: skip


def seed_comparisons(runs: pd.DataFrame, alpha: float = ALPHA) -> list[Comparison]:
    """Every comparison the seed report concludes from, on validation and test accuracy (in %); epoch counts
    (integers, censored by the patience) are described by their median and IQR in the tables, never tested."""
    ok = runs[runs["status"] == "ok"].copy()
    ok["val"] = ok["best_val_acc"] * 100
    ok["test"] = ok["test_acc"] * 100

    cnn_optimizers = sorted(ok.loc[ok["arch"] == "cnn", "optimizer"].unique()) if "arch" in ok else []

    def sample(optimizer: str | None, variant: str, column: str):
        sel = ok[ok["variant"] == variant]
        if optimizer:
            sel = sel[sel["optimizer"] == optimizer]
        return sel[column].to_numpy()

    out: list[Comparison] = []
    optimizers = sorted(runs.loc[runs.get("arch", "mlp") == "mlp", "optimizer"].unique())
    present = set(runs["variant"])
    metrics = (("val", "validation accuracy (%)"), ("test", "test accuracy (%)"))
    if {"sgd", "adam"} <= set(optimizers) and "BPNN" in present:
        for column, metric in metrics:
            out.append(welch("adam_vs_sgd", metric, "SGD", sample("sgd", "BPNN", column), "Adam",
                             sample("adam", "BPNN", column), alpha))  # fmt: skip
    pairs = (("bn", "BPNN", "BPNN+BN"), ("dp", "BPNN", "BPNN+DP"), ("bndp_vs_bn", "BPNN+BN", "BPNN+BN+DP"),
             ("bndp_vs_dp", "BPNN+DP", "BPNN+BN+DP"), ("bndp_vs_plain", "BPNN", "BPNN+BN+DP"))  # fmt: skip
    for optimizer in optimizers:
        for key, a, b in pairs:
            if not {a, b} <= present:
                continue
            for column, metric in metrics:
                out.append(welch(f"{key}:{optimizer}", metric, a, sample(optimizer, a, column), b,
                                 sample(optimizer, b, column), alpha))  # fmt: skip
    for optimizer in cnn_optimizers:
        if "BPNN" in present and "CNN" in present:
            for column, metric in metrics:
                out.append(welch(f"cnn_vs_mlp:{optimizer}", metric, "BPNN", sample(optimizer, "BPNN", column), "CNN",
                                 sample(optimizer, "CNN", column), alpha))  # fmt: skip
    return out


def comparisons_frame(comparisons: list[Comparison]) -> pd.DataFrame:
    """One row per comparison; the columns are there even when the grid allows no comparison."""
    columns = [f.name for f in fields(Comparison)] + ["significant"]
    return pd.DataFrame([c.as_dict() for c in comparisons], columns=columns)
