"""Confirmatory statistics for paired-seed comparisons: one row per declared claim, with a paired test, a
BCa bootstrap interval, Holm's adjustment across the family, the effect size d_z, the minimum detectable
effect at the planned power, and a verdict in {supported, contradicted, inconclusive}.

Seed k of cell A is paired with seed k of cell B (the same initial weights where shapes match, the same
minibatch order), so each claim is judged on the per-seed differences ``B - A``. Every distribution comes
from ``scipy.stats``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.80
VERDICTS = ("supported", "contradicted", "inconclusive")
CLAIM_COLUMNS = ["arm", "claim", "metric", "n", "estimate", "ci_low", "ci_high", "p_value", "p_holm",
                 "p_wilcoxon", "effect_size", "mde", "verdict", "a", "b"]  # fmt: skip


@dataclass(frozen=True)
class PairedResult:
    """``B - A`` over paired seeds: the claim says the difference is positive."""

    n: int
    estimate: float  # mean of the paired differences
    ci_low: float
    ci_high: float
    p_value: float  # paired t-test, two-sided
    p_wilcoxon: float  # Wilcoxon signed-rank, two-sided: a robustness column
    effect_size: float  # d_z = mean / sd of the differences
    mde: float  # smallest true mean difference detected with POWER at this n (same units as the estimate)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def bootstrap_ci(
    differences: np.ndarray, seed: int, confidence: float = 0.95, resamples: int = 9999
) -> tuple[float, float]:
    """BCa bootstrap interval of the mean difference (``scipy.stats.bootstrap``, seeded)."""
    if np.ptp(differences) == 0:  # every pair differs by the same amount: the interval is that point
        return float(differences[0]), float(differences[0])
    result = stats.bootstrap((differences,), np.mean, confidence_level=confidence, method="BCa",
                             n_resamples=resamples, random_state=np.random.default_rng(seed))  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_power(d_z: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs against a true effect ``d_z`` (noncentral t)."""
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = d_z * np.sqrt(n)
    power = float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))
    if not np.isfinite(power):  # scipy's nct gives NaN far in its tail, where the power is 1 (or alpha/2)
        power = 1.0 if abs(noncentrality) > critical else alpha / 2
    return power


def minimum_detectable_d(n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest d_z the paired t-test detects with ``power`` at ``n`` pairs."""
    if n < 2:
        return float("nan")
    high = 1.0
    while paired_power(high, n, alpha) < power:  # bracket the root: power grows with d
        high *= 2
    return float(optimize.brentq(lambda d: paired_power(d, n, alpha) - power, 0.0, high))


def paired_comparison(
    a, b, seed: int = 0, alpha: float = ALPHA, power: float = POWER, resamples: int = 9999
) -> PairedResult:
    """Compare ``b`` with ``a``, paired element by element (index = seed)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} against {b.shape}")
    differences = b - a
    differences = differences[np.isfinite(differences)]
    n = len(differences)
    nan = float("nan")
    if n < 2:
        return PairedResult(n, float(differences.mean()) if n else nan, nan, nan, nan, nan, nan, nan)
    mean = float(differences.mean())
    sd = float(differences.std(ddof=1))
    if sd == 0:  # no spread: the t statistic is undefined; the sign alone decides
        p = 1.0 if mean == 0 else 0.0
        return PairedResult(n, mean, mean, mean, p, 1.0 if mean == 0 else nan, nan, 0.0)
    low, high = bootstrap_ci(differences, seed, 1 - alpha, resamples)
    p = float(stats.ttest_rel(b[np.isfinite(b - a)], a[np.isfinite(b - a)]).pvalue)
    p_w = float(stats.wilcoxon(differences).pvalue) if np.any(differences != 0) else 1.0
    return PairedResult(n, mean, low, high, p, p_w, mean / sd, minimum_detectable_d(n, alpha, power) * sd)


def verdict(estimate: float, ci_low: float, ci_high: float, p_holm: float, alpha: float = ALPHA) -> str:
    """``supported`` when the Holm-adjusted test rejects and the whole interval lies on the claimed (positive)
    side, ``contradicted`` when it rejects and the interval lies on the other side, else ``inconclusive``."""
    if not np.isfinite(p_holm) or p_holm >= alpha:
        return "inconclusive"
    if ci_low > 0 and estimate > 0:
        return "supported"
    if ci_high < 0 and estimate < 0:
        return "contradicted"
    return "inconclusive"


def claims_table(rows: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Holm-adjust one family of claims and give each its verdict. Each row holds ``arm``, ``claim``,
    ``metric`` and a PairedResult under ``result``; the family is every row given."""
    adjusted = holm([row["result"].p_value for row in rows])
    table = []
    for row, p_holm in zip(rows, adjusted, strict=True):
        result = asdict(row["result"])
        word = verdict(result["estimate"], result["ci_low"], result["ci_high"], p_holm, alpha)
        table.append(
            {
                "arm": row["arm"],
                "claim": row["claim"],
                "metric": row["metric"],
                **result,
                "p_holm": float(p_holm),
                "verdict": word,
                "a": row.get("a", ""),
                "b": row.get("b", ""),
            }
        )
    return [{column: entry[column] for column in CLAIM_COLUMNS} for entry in table]


def per_seed(runs: pd.DataFrame, metric: str, **where) -> pd.Series:
    """The metric (in %) of the runs that match ``where``, indexed by seed; failed runs are left out."""
    sel = runs[runs["status"] == "ok"]
    for column, value in where.items():
        sel = sel[sel[column] == value]
    return (sel.set_index("seed")[metric].astype(float) * 100).sort_index()


def paired_on_seeds(a: pd.Series, b: pd.Series, **options) -> PairedResult:
    """The claim ``b > a`` on the seeds that both cells have."""
    seeds = a.index.intersection(b.index)
    return paired_comparison(a.loc[seeds].to_numpy(), b.loc[seeds].to_numpy(), **options)


def intersection_union(better: PairedResult, other: PairedResult) -> PairedResult:
    """'BN+DP is worse than each single' from its two comparisons (each B - A > 0 when BN+DP is worse), with
    the estimate and interval of the one against the better single.  Worse than both: the larger p of the
    two (the intersection-union test).  Better than the better single: that comparison's own p, which can
    contradict the claim.  Worse than the better single but better than the other: the declared test
    cannot hold, p = 1 (a two-sided p of a difference in the wrong direction is no evidence for it)."""
    if better.estimate > 0 and other.estimate > 0:
        return replace(better, p_value=max(better.p_value, other.p_value),
                       p_wilcoxon=max(better.p_wilcoxon, other.p_wilcoxon))  # fmt: skip
    if better.estimate < 0:
        return better
    return replace(better, p_value=1.0, p_wilcoxon=1.0)


def arm_claims(runs: pd.DataFrame, arm: str, protocol: dict) -> list[dict]:
    """The declared claims that this arm's cells allow, each as B - A on the primary metric (B is claimed
    to be higher). 'BN+DP is worse than the better of BN and DP alone' is an intersection-union test (see
    ``intersection_union``): it holds when BN+DP is worse than each; its estimate and interval are those
    against the better of the two (by mean)."""
    metric = protocol["primary_metric"]
    runs = runs[runs["arm"] == arm]
    options = {"seed": protocol["bootstrap_seed"], "alpha": protocol["alpha"], "power": protocol["power"],
               "resamples": protocol["bootstrap_resamples"]}  # fmt: skip
    claims = protocol["claims"]
    rows: list[dict] = []

    def cell(optimizer: str, variant: str, arch: str = "mlp") -> pd.Series:
        return per_seed(runs, metric, arch=arch, optimizer=optimizer, variant=variant)

    def add(claim: str, a_label: str, a: pd.Series, b_label: str, b: pd.Series) -> None:
        if len(a) and len(b):
            rows.append({"arm": arm, "claim": claim, "metric": metric, "a": a_label, "b": b_label,
                         "result": paired_on_seeds(a, b, **options)})  # fmt: skip

    optimizers = set(runs.loc[runs["arch"] == "mlp", "optimizer"])
    if "adam_beats_sgd" in claims and {"sgd", "adam"} <= optimizers:
        add("adam_beats_sgd", "BPNN sgd", cell("sgd", "BPNN"), "BPNN adam", cell("adam", "BPNN"))
    for opt in [o for o in protocol["claim_optimizers"] if o in optimizers]:
        plain, bn, dp, both = (cell(opt, v) for v in ("BPNN", "BPNN+BN", "BPNN+DP", "BPNN+BN+DP"))
        if "bn_improves" in claims:
            add(f"bn_improves:{opt}", f"BPNN {opt}", plain, f"BPNN+BN {opt}", bn)
        if "dropout_improves" in claims:
            add(f"dropout_improves:{opt}", f"BPNN {opt}", plain, f"BPNN+DP {opt}", dp)
        if "bn_dp_worse_than_best_single" in claims and len(bn) and len(dp) and len(both):
            vs_bn, vs_dp = paired_on_seeds(both, bn, **options), paired_on_seeds(both, dp, **options)
            better, other, label = (vs_bn, vs_dp, "BPNN+BN") if bn.mean() >= dp.mean() else (vs_dp, vs_bn, "BPNN+DP")
            rows.append({"arm": arm, "claim": f"bn_dp_worse_than_best_single:{opt}", "metric": metric,
                         "a": f"BPNN+BN+DP {opt}", "b": f"{label} {opt}",
                         "result": intersection_union(better, other)})  # fmt: skip
    if "cnn_beats_bpnn" in claims:
        for opt in sorted(set(runs.loc[runs["arch"] == "cnn", "optimizer"])):
            add(f"cnn_beats_bpnn:{opt}", f"BPNN {opt}", cell(opt, "BPNN"), f"CNN {opt}", cell(opt, "CNN", "cnn"))
    return rows


def study_claims(runs: pd.DataFrame, protocol: dict) -> pd.DataFrame:
    """claims.csv: every declared claim in every arm, Holm-adjusted as one family."""
    rows = [row for arm in protocol["arms"] for row in arm_claims(runs, arm, protocol)]
    return pd.DataFrame(claims_table(rows, protocol["alpha"]), columns=CLAIM_COLUMNS)


def expected_max(values: Sequence[float], n: int) -> float:
    """The expected best of ``n`` trials drawn with replacement from ``values`` (Dodge et al. 2019, "Show
    Your Work", eq. 1): sum over the sorted values v_(i) of v_(i) [(i/N)^n - ((i-1)/N)^n]."""
    v = np.sort(np.asarray(values, dtype=float))
    big_n = len(v)
    i = np.arange(1, big_n + 1)
    return float(np.sum(v * ((i / big_n) ** n - ((i - 1) / big_n) ** n)))


__all__ = ["CLAIM_COLUMNS", "VERDICTS", "PairedResult", "arm_claims", "bootstrap_ci", "claims_table",
           "expected_max", "holm", "minimum_detectable_d", "paired_comparison", "paired_power", "study_claims",
           "verdict"]  # fmt: skip
