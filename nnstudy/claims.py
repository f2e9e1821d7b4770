"""Confirmatory statistics for declared claims over paired seeds.

A claim is data (``protocol.claims`` in the config): an id, its family (``seed``: what the seed report
states; ``extension``: this study's own), the seed's sentence it operationalises, a metric, two cells as
selectors and the claimed direction of ``B - A``.  Three kinds:

- ``contrast``: the per-seed differences ``B - A``;
- ``all_of``: a composite of contrasts (its components), judged by the intersection-union test: it holds
  when every component does (p = the largest component p), and it is contradicted when a component is
  significant in the wrong direction (p = k times the smallest such p, Bonferroni over the k components);
- ``interaction``: the 2x2 contrast ``both - first - second + plain`` per seed.

Tests match their metric: accuracies (means of many test images) get the paired t-test and its t interval;
integer counts such as epochs to best get the exact sign-flip permutation test of the mean difference and
the interval that inverts it, so each interval holds exactly the shifts its test does not reject.  Every
p-value is two-sided; a verdict is directional.  Holm's procedure runs within each family, across arms;
each row also carries an interval at the level Holm's procedure applied to it (``ci_adj_*``).  The
minimum detectable effect and the power are design properties: from the declared planning sd at the
conservative per-claim level alpha / m.  Every distribution comes from ``scipy.stats``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.80
VERDICTS = ("supported", "contradicted", "inconclusive")
FAMILIES = ("seed", "extension")
KINDS = ("contrast", "all_of", "interaction")
#: metrics judged as counts (exact permutation test) rather than as means (t-test)
COUNT_METRICS = ("epochs_to_best", "epochs")
#: how sign_flip_interval maps over its two ends: ``map``, or a process pool's while study_claims has workers
INTERVAL_MAP: ContextVar[Callable] = ContextVar("interval_map", default=map)
#: metrics stored as fractions and shown in percent
PERCENT_METRICS = ("test_acc", "best_val_acc")
CLAIM_COLUMNS = ["family", "arm", "claim", "kind", "role", "part_of", "metric", "direction", "a", "b", "n",
                 "estimate", "ci_low", "ci_high", "ci_adj_low", "ci_adj_high", "alpha_adj", "method", "p_value",
                 "p_holm", "binding", "effect_size", "sd", "mde", "power", "equivalent", "verdict"]  # fmt: skip
SELECTOR_DEFAULTS = {"arch": "mlp", "batchnorm": False, "dropout": 0.0}


@dataclass(frozen=True)
class ClaimSpec:
    """One declared claim (or a component of an ``all_of``)."""

    id: str
    family: str
    kind: str
    metric: str
    direction: int  # +1: B - A is claimed to be positive; -1: negative
    a: dict[str, Any] = field(default_factory=dict)
    b: dict[str, Any] = field(default_factory=dict)
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # interaction: plain, first, second, both
    components: tuple[ClaimSpec, ...] = ()
    statement: dict[str, str] = field(default_factory=dict)
    seed_quote: dict[str, str] = field(default_factory=dict)


def resolve_metric(metric: str, primary: str) -> str:
    """``accuracy`` stands for the protocol's primary metric."""
    return primary if metric == "accuracy" else metric


def parse_claim(entry: Mapping[str, Any], primary: str, family: str | None = None) -> ClaimSpec:
    """A config entry as a ClaimSpec; components inherit the family, metric and direction they omit."""
    family = entry.get("family", family)
    metric = resolve_metric(entry.get("metric", "accuracy"), primary)
    direction = {"increase": 1, "decrease": -1}[entry.get("direction", "increase")]
    inherited = {"metric": entry.get("metric", "accuracy"), "direction": entry.get("direction", "increase")}
    components = tuple(parse_claim({**inherited, **part}, primary, family) for part in entry.get("components", ()))
    return ClaimSpec(
        id=entry["id"], family=family, kind=entry.get("kind", "contrast"), metric=metric, direction=direction,
        a=dict(entry.get("a", {})), b=dict(entry.get("b", {})),
        cells={k: dict(v) for k, v in entry.get("cells", {}).items()}, components=components,
        statement=dict(entry.get("statement", {})), seed_quote=dict(entry.get("seed_quote", {})),
    )  # fmt: skip


def parse_claims(protocol: Mapping[str, Any]) -> list[ClaimSpec]:
    return [parse_claim(entry, protocol["primary_metric"]) for entry in protocol.get("claims", [])]


# ------------------------------------------------------------------------------------------ the tests


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


def holm_levels(p_values: Sequence[float], alpha: float = ALPHA) -> np.ndarray:
    """The level Holm's procedure tests each hypothesis at: alpha / (m - rank) up to the first hypothesis it
    keeps, and that hypothesis's level for it and every later one.  An interval at this level excludes 0
    exactly when Holm rejects (for tests whose intervals invert them)."""
    p = np.asarray(p_values, dtype=float)
    levels = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    stopped = None
    for rank, index in enumerate(order):
        level = alpha / (m - rank)
        if stopped is None and p[index] > level:
            stopped = level
        levels[index] = level if stopped is None else stopped
    return levels


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
    """The smallest d_z the two-sided paired t-test detects with ``power`` at ``n`` pairs."""
    if n < 2:
        return float("nan")
    high = 1.0
    while paired_power(high, n, alpha) < power:  # bracket the root: power grows with d
        high *= 2
    return float(optimize.brentq(lambda d: paired_power(d, n, alpha) - power, 0.0, high))


def seeds_needed(target: float, sd: float, alpha: float, power: float = POWER, most: int = 1000) -> int:
    """The fewest pairs whose minimum detectable effect (in the units of ``sd``) is at most ``target``."""
    for n in range(2, most + 1):
        if minimum_detectable_d(n, alpha, power) * sd <= target:
            return n
    raise ValueError(f"no number of seeds up to {most} detects {target} with sd {sd} at alpha {alpha:.3g}")


def t_test(d: np.ndarray) -> float:
    """Two-sided one-sample t-test of the paired differences (= the paired t-test)."""
    if np.ptp(d) == 0:
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def t_interval(d: np.ndarray, alpha: float) -> tuple[float, float]:
    """The t interval of the mean difference at confidence 1 - alpha (it inverts ``t_test``)."""
    mean = float(d.mean())
    if np.ptp(d) == 0:
        return mean, mean
    half = float(stats.t.ppf(1 - alpha / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return mean - half, mean + half


def sign_flip_test(d: np.ndarray) -> float:
    """Exact two-sided sign-flip permutation test of the mean difference (2^n sign patterns)."""
    if not np.any(d):
        return 1.0
    result = stats.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                    vectorized=True, n_resamples=np.inf, alternative="two-sided")  # fmt: skip
    return float(result.pvalue)


def subset_means(d: np.ndarray) -> np.ndarray:
    """The means of every non-empty subset of ``d``: where the sign-flip test's p-value of ``d - s`` can
    change as the shift s moves (Hartigan 1969), so the ends of its interval are among them."""
    masks = (np.arange(1, 2 ** len(d))[:, None] >> np.arange(len(d))) & 1
    return np.unique((masks @ d) / masks.sum(axis=1))


def sign_flip_interval(d: np.ndarray, alpha: float, tolerance: float = 1e-3) -> tuple[float, float]:
    """The shifts s for which the sign-flip test of ``d - s`` keeps the null at level alpha (p > alpha).
    Its two ends are found apart (``interval_end``), side by side when ``study_claims`` has workers."""
    low, high = INTERVAL_MAP.get()(partial(interval_end, d, alpha, tolerance), (-1, +1))
    return low, high


def interval_end(d: np.ndarray, alpha: float, tolerance: float, direction: int) -> float:
    """One end of ``sign_flip_interval``: bracketed by bisection between the mean (p = 1) and a shift far
    enough to reject, then snapped to the subset mean in the bracket where the kept set ends (it is closed
    there)."""
    mean = float(d.mean())
    reach = float(np.ptp(d)) + float(np.abs(d - mean).max()) + 1.0
    kept = lambda shift: sign_flip_test(d - shift) > alpha  # noqa: E731
    inside, outside = mean, mean + direction * reach
    if kept(outside):  # too few pairs to reject anything at this level
        return float("inf") * direction
    while abs(outside - inside) > tolerance:
        middle = (inside + outside) / 2
        inside, outside = (middle, outside) if kept(middle) else (inside, middle)
    low, high = sorted((inside, outside))
    breaks = subset_means(d) if len(d) <= 20 else np.array([])
    candidates = [b for b in breaks[(breaks >= low) & (breaks <= high)] if kept(b)]
    return float(max(candidates, key=lambda b: direction * b)) if candidates else inside


def test_and_interval(d: np.ndarray, method: str, alpha: float) -> tuple[float, tuple[float, float]]:
    if method == "t":
        return t_test(d), t_interval(d, alpha)
    return sign_flip_test(d), sign_flip_interval(d, alpha)


def method_for(metric: str) -> str:
    return "sign-flip" if metric in COUNT_METRICS else "t"


# ------------------------------------------------------------------------------------------ the data


def variant_label(selector: Mapping[str, Any]) -> str:
    """``{optimizer: adam, batchnorm: true}`` -> ``BPNN+BN adam`` (the seed report's Table 2 names)."""
    s = {**SELECTOR_DEFAULTS, **selector}
    name = "CNN" if s["arch"] == "cnn" else "BPNN"
    name += "+BN" if s["batchnorm"] else ""
    name += "+DP" if float(s["dropout"]) > 0 else ""
    return f"{name} {s['optimizer']}"


def cell_values(runs: pd.DataFrame, metric: str, selector: Mapping[str, Any]) -> pd.Series:
    """The metric of the ok runs of one cell, indexed by seed (accuracies in percent)."""
    s = {**SELECTOR_DEFAULTS, **selector}
    sel = runs[(runs["status"] == "ok") & (runs["arch"] == s["arch"]) & (runs["optimizer"] == s["optimizer"])
               & (runs["batchnorm"].astype(bool) == bool(s["batchnorm"]))
               & np.isclose(runs["dropout"].astype(float), float(s["dropout"]))]  # fmt: skip
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    return (sel.set_index("seed")[metric].astype(float) * scale).sort_index()


def paired_differences(runs: pd.DataFrame, spec: ClaimSpec) -> tuple[np.ndarray, str, str]:
    """The per-seed contrast of a claim on the seeds every cell it names has, with the labels of A and B."""
    if spec.kind == "interaction":
        names = ("plain", "first", "second", "both")
        series = [cell_values(runs, spec.metric, spec.cells[k]) for k in names]
        a_label = f"{variant_label(spec.cells['first'])} + {variant_label(spec.cells['second'])}"
        b_label = f"{variant_label(spec.cells['both'])} + {variant_label(spec.cells['plain'])}"
        weights = (1, -1, -1, 1)
    else:
        series = [cell_values(runs, spec.metric, spec.a), cell_values(runs, spec.metric, spec.b)]
        a_label, b_label, weights = variant_label(spec.a), variant_label(spec.b), (-1, 1)
    seeds = series[0].index
    for s in series[1:]:
        seeds = seeds.intersection(s.index)
    d = sum(w * s.loc[seeds].to_numpy() for w, s in zip(weights, series, strict=True))
    return np.asarray(d, dtype=float), a_label, b_label


def contrast_row(spec: ClaimSpec, arm: str, runs: pd.DataFrame, alpha: float, role: str, part_of: str = "") -> dict:
    d, a_label, b_label = paired_differences(runs, spec)
    n = len(d)
    method = method_for(spec.metric)
    p, (low, high) = test_and_interval(d, method, alpha) if n >= 2 else (float("nan"), (float("nan"),) * 2)
    sd = float(d.std(ddof=1)) if n >= 2 else float("nan")
    return {"family": spec.family, "arm": arm, "claim": spec.id, "kind": spec.kind, "role": role,
            "part_of": part_of, "metric": spec.metric, "direction": "increase" if spec.direction > 0 else "decrease",
            "a": a_label, "b": b_label, "n": n, "estimate": float(d.mean()) if n else float("nan"),
            "ci_low": low, "ci_high": high, "method": method, "p_value": p, "binding": "",
            "effect_size": float(d.mean()) / sd if n >= 2 and sd > 0 else float("nan"), "sd": sd,
            "_d": d, "_direction": spec.direction}  # fmt: skip


def composite_row(spec: ClaimSpec, parts: list[dict]) -> dict:
    """The intersection-union row of an ``all_of``: the binding component's estimate and interval, and the
    composite's p (the largest component p when all point the claimed way; else k times the smallest p
    of those that point the wrong way)."""
    wrong = [r for r in parts if np.sign(r["estimate"]) == -r["_direction"] and r["estimate"] != 0]
    if wrong:
        binding = min(wrong, key=lambda r: r["p_value"])
        p, side, k = min(1.0, len(parts) * binding["p_value"]), -1, len(parts)
    else:
        binding = max(parts, key=lambda r: r["p_value"])
        p, side, k = binding["p_value"], 1, 1
    row = {key: binding[key] for key in ("arm", "metric", "n", "estimate", "ci_low", "ci_high", "method",
                                         "effect_size", "sd", "_d")}  # fmt: skip
    return {**row, "family": spec.family, "claim": spec.id, "kind": "all_of", "role": "claim", "part_of": "",
            "direction": "increase" if spec.direction > 0 else "decrease", "a": binding["a"], "b": binding["b"],
            "p_value": p, "binding": binding["claim"], "_direction": binding["_direction"], "_side": side,
            "_k": k}  # fmt: skip


def arm_rows(runs: pd.DataFrame, arm: str, specs: list[ClaimSpec], alpha: float) -> list[dict]:
    """Every claim's rows in one arm (components first, then their composite); a claim whose cells the
    arm lacks is left out."""
    runs = runs[runs["arm"] == arm]
    rows: list[dict] = []
    for spec in specs:
        if spec.kind == "all_of":
            parts = [contrast_row(c, arm, runs, alpha, "component", spec.id) for c in spec.components]
            if all(p["n"] >= 2 for p in parts):
                rows += parts + [composite_row(spec, parts)]
            continue
        row = contrast_row(spec, arm, runs, alpha, "claim")
        if row["n"] >= 1:
            rows.append(row)
    return rows


def planning_for(metric: str, kind: str, planning: Mapping[str, Any]) -> tuple[float, float]:
    """The declared planning sd and target MDE of a claim's metric (an interaction's contrast sums four
    cells, so its sd is sqrt(2) times a difference's)."""
    entry = planning.get("epochs" if metric in COUNT_METRICS else "accuracy") if metric != "wall_time" else None
    if not entry:
        return float("nan"), float("nan")
    scale = np.sqrt(2.0) if kind == "interaction" else 1.0
    return float(entry["sd"]) * scale, float(entry["target_mde"])


def verdict_of(row: Mapping[str, Any], alpha: float) -> str:
    """Supported or contradicted when Holm's adjusted p is below alpha, by the side the data fall on;
    inconclusive otherwise."""
    p = row["p_holm"]
    if not np.isfinite(p) or p >= alpha:
        return "inconclusive"
    side = row.get("_side") or (1 if np.sign(row["estimate"]) == row["_direction"] else -1)
    return "supported" if side > 0 else "contradicted"


def adjust_family(rows: list[dict], protocol: Mapping[str, Any]) -> None:
    """Holm within the family (its claim rows, every arm); the adjusted intervals, design MDE and power,
    equivalence and verdicts of its rows, components included (at their composite's level)."""
    alpha = protocol["alpha"]
    claims = [r for r in rows if r["role"] == "claim"]
    m = len(claims)
    for row, p_holm, level in zip(claims, holm([r["p_value"] for r in claims]),
                                  holm_levels([r["p_value"] for r in claims], alpha), strict=True):  # fmt: skip
        row["p_holm"], row["alpha_adj"] = float(p_holm), float(level) / row.get("_k", 1)
    by_claim = {(r["arm"], r["claim"]): r for r in claims}
    planning = protocol.get("planning") or {}
    margins = protocol.get("equivalence_margin") or {}
    for row in rows:
        owner = by_claim[(row["arm"], row["part_of"])] if row["role"] == "component" else row
        if row["role"] == "component":
            row["p_holm"], row["alpha_adj"] = float("nan"), owner["alpha_adj"]
        d, level = row["_d"], row["alpha_adj"]
        row["ci_adj_low"], row["ci_adj_high"] = (test_and_interval(d, row["method"], level)[1] if len(d) >= 2
                                                 else (float("nan"),) * 2)  # fmt: skip
        sd_plan, target = planning_for(row["metric"], owner["kind"], planning)
        per_claim = alpha / max(m, 1)
        row["mde"] = minimum_detectable_d(row["n"], per_claim, planning.get("power", POWER)) * sd_plan
        row["power"] = paired_power(target / sd_plan, row["n"], per_claim) if row["n"] >= 2 else float("nan")
        margin = margins.get("epochs" if row["metric"] in COUNT_METRICS else "accuracy")
        row["equivalent"] = (bool(-margin < row["ci_adj_low"] and row["ci_adj_high"] < margin)
                             if margin is not None and row["role"] == "claim" and owner["kind"] == "contrast"
                             else None)  # fmt: skip
        row["verdict"] = verdict_of(row, alpha) if row["role"] == "claim" else component_verdict(row, owner)


def component_verdict(row: Mapping[str, Any], owner: Mapping[str, Any]) -> str:
    """A component's own reading at its composite's level: which way its adjusted interval lies."""
    if row["ci_adj_low"] > 0 or row["ci_adj_high"] < 0:
        return "supported" if np.sign(row["estimate"]) == row["_direction"] else "contradicted"
    return "inconclusive"


def study_claims(runs: pd.DataFrame, protocol: Mapping[str, Any], workers: int = 1) -> pd.DataFrame:
    """claims.csv: every declared claim in every arm; Holm within each family across the arms. With
    ``workers`` > 1 the two ends of each sign-flip interval are searched in two processes at once (the same
    numbers: each end is found the same way, alone)."""
    if workers > 1:
        # fork: a Snakemake script has no __main__ guard, so a spawned worker would run the whole job again
        with ProcessPoolExecutor(min(workers, 2), mp_context=multiprocessing.get_context("fork")) as pool:
            token = INTERVAL_MAP.set(pool.map)
            try:
                return study_claims(runs, protocol)
            finally:
                INTERVAL_MAP.reset(token)
    specs = parse_claims(protocol)
    rows = [row for arm in protocol["arms"] for row in arm_rows(runs, arm, specs, protocol["alpha"])]
    for family in dict.fromkeys(r["family"] for r in rows):
        adjust_family([r for r in rows if r["family"] == family], protocol)
    order = {family: i for i, family in enumerate(FAMILIES)}
    rows.sort(key=lambda r: order.get(r["family"], len(order)))  # stable: arms, then the declared order
    return pd.DataFrame([{c: r.get(c) for c in CLAIM_COLUMNS} for r in rows], columns=CLAIM_COLUMNS)


def expected_max(values: Sequence[float], n: int) -> float:
    """The expected best of ``n`` trials drawn with replacement from ``values`` (Dodge et al. 2019, "Show
    Your Work", eq. 1): sum over the sorted values v_(i) of v_(i) [(i/N)^n - ((i-1)/N)^n]."""
    v = np.sort(np.asarray(values, dtype=float))
    big_n = len(v)
    i = np.arange(1, big_n + 1)
    return float(np.sum(v * ((i / big_n) ** n - ((i - 1) / big_n) ** n)))


__all__ = ["CLAIM_COLUMNS", "FAMILIES", "KINDS", "VERDICTS", "ClaimSpec", "expected_max", "holm", "holm_levels",
           "minimum_detectable_d", "paired_power", "parse_claims", "seeds_needed", "sign_flip_interval",
           "sign_flip_test", "study_claims", "t_interval", "t_test"]  # fmt: skip
