"""The declared claims: Holm and its per-row levels, intervals that invert their tests, the intersection-union
and interaction claims, families apart, the design's power and seeds, and the committed claims.csv."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from scipy import stats

from nnstudy.claims import (
    CLAIM_COLUMNS,
    holm,
    holm_levels,
    minimum_detectable_d,
    paired_power,
    parse_claims,
    seeds_needed,
    sign_flip_interval,
    sign_flip_test,
    study_claims,
    t_interval,
    t_test,
)


def test_holm_matches_a_hand_computed_family():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> kept monotone at 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    adjusted = holm([0.01, float("nan"), 0.02])  # a missing test is not part of the family
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.02])


def test_holm_levels_reject_exactly_what_holm_rejects():
    """A row's interval at its Holm level excludes 0 exactly when Holm's adjusted p is below alpha."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = rng.uniform(0, 0.06, rng.integers(1, 12)) ** rng.uniform(0.5, 2)
        levels = holm_levels(p, 0.05)
        np.testing.assert_array_equal(p < levels, holm(p) < 0.05)
    np.testing.assert_allclose(holm_levels([0.001, 0.2, 0.02], 0.05), [0.05 / 3, 0.05, 0.05 / 2])
    np.testing.assert_allclose(holm_levels([0.001, 0.04, 0.03], 0.05), [0.05 / 3, 0.05 / 2, 0.05 / 2])  # stops at 0.03


def test_a_t_interval_implies_its_own_p_value():
    """The interval and the test answer the same question: the p that a 95 % t interval's half-width implies
    is the paired t-test's p, and at any level the interval excludes 0 exactly when p is below it."""
    rng = np.random.default_rng(0)
    for n in (3, 5, 10, 16):
        d = rng.normal(0.2, 0.3, n)
        low, high = t_interval(d, 0.05)
        se = (high - low) / 2 / stats.t.ppf(0.975, n - 1)
        implied = 2 * stats.t.sf(abs(d.mean() / se), n - 1)
        assert implied == pytest.approx(t_test(d), rel=1e-9)
        assert implied == pytest.approx(stats.ttest_rel(d + 5, np.full(n, 5.0)).pvalue, rel=1e-9)
        for level in (0.001, 0.01, 0.2):
            low, high = t_interval(d, level)
            assert (low > 0 or high < 0) == (t_test(d) < level)


def test_the_sign_flip_test_is_exact_and_its_interval_inverts_it():
    d = np.array([3.0, 5.0, -1.0, 4.0, 6.0, 2.0, 0.0, 7.0])
    flips = np.array(list(itertools.product((1, -1), repeat=len(d))))
    null = np.abs((flips * d).mean(axis=1))
    assert sign_flip_test(d) == pytest.approx(np.mean(null >= abs(d.mean()) - 1e-12))  # all 2^8 sign patterns
    low, high = sign_flip_interval(d, 0.05)
    assert low < d.mean() < high
    for shift, inside in ((low + 0.01, True), (high - 0.01, True), (low - 0.01, False), (high + 0.01, False)):
        assert (sign_flip_test(d - shift) > 0.05) == inside, shift
    assert sign_flip_test(np.zeros(5)) == 1.0
    assert sign_flip_interval(np.array([1.0, 2.0]), 0.05) == (-np.inf, np.inf)  # 2 pairs reject nothing at 5 %


def test_the_sign_flip_interval_excludes_zero_exactly_when_its_test_rejects():
    """Integer differences put an end of the kept set exactly at 0 often: the interval's ends are the subset
    means where the kept set ends (closed), not a bisection point just inside."""
    rng = np.random.default_rng(1)
    for _ in range(150):
        d = rng.integers(-3, 6, int(rng.integers(5, 11))).astype(float)
        for level in (0.05, 0.05 / 18 * 4):
            low, high = sign_flip_interval(d, level)
            assert (low > 0 or high < 0) == (sign_flip_test(d) <= level), (d, level, low, high)


def test_power_minimum_detectable_effect_and_planned_seeds():
    assert paired_power(0.0, 10) == pytest.approx(0.05)  # no effect: the test's level
    d10 = minimum_detectable_d(10)
    assert paired_power(d10, 10) == pytest.approx(0.80, abs=1e-6)
    normal_approximation = (stats.norm.ppf(0.975) + stats.norm.ppf(0.80)) / np.sqrt(10)
    assert normal_approximation < d10 < 1.15 * normal_approximation  # the t distribution's heavier tails
    assert minimum_detectable_d(20) < d10 < minimum_detectable_d(5)
    n = seeds_needed(0.4, 0.2, 0.05 / 18)
    assert minimum_detectable_d(n, 0.05 / 18) * 0.2 <= 0.4 < minimum_detectable_d(n - 1, 0.05 / 18) * 0.2
    assert seeds_needed(0.2, 0.2, 0.05 / 18) > n  # half the effect needs more seeds
    with pytest.raises(ValueError, match="no number of seeds"):
        seeds_needed(1e-6, 1.0, 0.01, most=50)


CELLS = {"plain": {"optimizer": "adam"}, "bn": {"optimizer": "adam", "batchnorm": True},
         "dp": {"optimizer": "adam", "dropout": 0.5}, "both": {"optimizer": "adam", "batchnorm": True, "dropout": 0.5},
         "sgd": {"optimizer": "sgd"}}  # fmt: skip


def synthetic_runs(means: dict[str, float], epochs: dict[str, int], n: int = 10, seed: int = 0) -> pd.DataFrame:
    """Runs of a paired design: a shared per-seed effect, each cell's mean, small per-run noise."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 0.004, n)
    rows = []
    for arm in ("replication", "tuned"):
        for name, selector in CELLS.items():
            for k in range(n):
                rows.append({"arm": arm, "arch": "mlp", "optimizer": selector["optimizer"],
                             "batchnorm": selector.get("batchnorm", False), "dropout": selector.get("dropout", 0.0),
                             "seed": k + 1, "status": "ok", "best_val_acc": means[name],
                             "test_acc": means[name] + shared[k] + rng.normal(0, 4e-4),
                             "epochs_to_best": epochs[name] + int(rng.integers(-1, 2))})  # fmt: skip
    return pd.DataFrame(rows)


PROTOCOL = {
    "primary_metric": "test_acc", "arms": ["replication", "tuned"], "alpha": 0.05,
    "planning": {"power": 0.8, "accuracy": {"sd": 0.2, "target_mde": 0.4}, "epochs": {"sd": 5, "target_mde": 10}},
    "equivalence_margin": {"accuracy": 0.25},
    "claims": [
        {"id": "adam_acc", "family": "seed", "metric": "accuracy", "direction": "increase", "a": CELLS["sgd"],
         "b": CELLS["plain"], "statement": {"en": "Adam beats SGD"}},
        {"id": "bn_epochs", "family": "seed", "metric": "epochs_to_best", "direction": "decrease", "a": CELLS["plain"],
         "b": CELLS["bn"], "statement": {"en": "BN cuts epochs"}},
        {"id": "conflict", "family": "seed", "kind": "interaction", "metric": "accuracy", "direction": "decrease",
         "cells": {"plain": CELLS["plain"], "first": CELLS["bn"], "second": CELLS["dp"], "both": CELLS["both"]},
         "statement": {"en": "BN and DP conflict"}},
        {"id": "below_each", "family": "extension", "kind": "all_of", "metric": "accuracy", "direction": "decrease",
         "statement": {"en": "BN+DP below each single"}, "components": [
             {"id": "below_bn", "a": CELLS["bn"], "b": CELLS["both"]},
             {"id": "below_dp", "a": CELLS["dp"], "b": CELLS["both"]}]},
    ],
}  # fmt: skip


def test_declared_claims_give_rows_per_family_with_components_and_an_interaction():
    means = {"plain": 0.975, "bn": 0.978, "dp": 0.972, "both": 0.970, "sgd": 0.970}
    epochs = {"plain": 14, "bn": 10, "dp": 15, "both": 20, "sgd": 36}
    table = study_claims(synthetic_runs(means, epochs), PROTOCOL)
    assert list(table.columns) == CLAIM_COLUMNS
    assert list(table["family"]) == ["seed"] * 6 + ["extension"] * 6  # the seed's family first
    tuned = table[table["arm"] == "tuned"].set_index("claim")
    assert tuned.loc["adam_acc", "estimate"] == pytest.approx(0.5, abs=0.05)  # percentage points
    assert tuned.loc["adam_acc", "verdict"] == "supported" and tuned.loc["adam_acc", "method"] == "t"
    assert tuned.loc["bn_epochs", "method"] == "sign-flip" and tuned.loc["bn_epochs", "verdict"] == "supported"
    # interaction: 0.970 - 0.978 - 0.972 + 0.975 = -0.5 pp
    assert tuned.loc["conflict", "estimate"] == pytest.approx(-0.5, abs=0.05)
    assert tuned.loc["conflict", "verdict"] == "supported"
    # the composite: both components hold; it shows the binding one (the larger p) and its own p
    parts = tuned[tuned["part_of"] == "below_each"]
    assert set(parts.index) == {"below_bn", "below_dp"} and set(parts["role"]) == {"component"}
    composite = tuned.loc["below_each"]
    binding = parts["p_value"].idxmax()
    assert composite["binding"] == binding and composite["p_value"] == parts.loc[binding, "p_value"]
    assert composite["ci_low"] == parts.loc[binding, "ci_low"] and composite["verdict"] == "supported"
    # Holm within each family: the seed family's 6 rows, the extension's 2 claim rows (components are not tested)
    seed = table[table["family"] == "seed"]
    np.testing.assert_allclose(seed["p_holm"], holm(seed["p_value"]))
    ext = table[(table["family"] == "extension") & (table["role"] == "claim")]
    np.testing.assert_allclose(ext["p_holm"], holm(ext["p_value"]))
    assert table.loc[table["role"] == "component", "p_holm"].isna().all()
    # the adjusted interval excludes 0 exactly when the verdict is decided
    decided = table["verdict"] != "inconclusive"
    claims = table[table["role"] == "claim"]
    outside = (claims["ci_adj_low"] > 0) | (claims["ci_adj_high"] < 0)
    assert (outside == decided[claims.index]).all()
    assert (table["ci_adj_high"] - table["ci_adj_low"] >= table["ci_high"] - table["ci_low"] - 1e-12).all()


def test_the_claims_table_is_the_same_with_two_processes():
    """The tables job searches the two ends of each sign-flip interval in two processes: the same table, to the
    last digit, as in one."""
    means = {"plain": 0.975, "bn": 0.978, "dp": 0.972, "both": 0.970, "sgd": 0.970}
    epochs = {"plain": 14, "bn": 10, "dp": 15, "both": 20, "sgd": 36}
    runs = synthetic_runs(means, epochs, n=8, seed=5)
    alone = study_claims(runs, PROTOCOL)
    assert (alone["method"] == "sign-flip").any()
    pd.testing.assert_frame_equal(study_claims(runs, PROTOCOL, workers=2), alone, check_exact=True)
    assert alone.to_csv() == study_claims(runs, PROTOCOL, workers=2).to_csv()


def test_a_composite_is_contradicted_when_one_component_is_significant_the_other_way():
    """BN+DP clearly better than DP alone (the wrong way) and worse than BN alone: not supported, contradicted;
    the binding component is the wrong-way one, and the composite's p is k times its p."""
    means = {"plain": 0.975, "bn": 0.978, "dp": 0.965, "both": 0.972, "sgd": 0.970}
    epochs = {"plain": 14, "bn": 10, "dp": 15, "both": 20, "sgd": 36}
    table = study_claims(synthetic_runs(means, epochs), PROTOCOL).set_index(["arm", "claim"])
    composite = table.loc[("tuned", "below_each")]
    assert composite["binding"] == "below_dp" and composite["verdict"] == "contradicted"
    assert composite["p_value"] == pytest.approx(min(1.0, 2 * table.loc[("tuned", "below_dp"), "p_value"]))
    assert table.loc[("tuned", "below_dp"), "verdict"] == "contradicted"


def test_equivalence_needs_the_adjusted_interval_inside_the_margin():
    means = {"plain": 0.975, "bn": 0.978, "dp": 0.972, "both": 0.970, "sgd": 0.97502}
    epochs = {"plain": 14, "bn": 10, "dp": 15, "both": 20, "sgd": 36}
    table = study_claims(synthetic_runs(means, epochs), PROTOCOL).set_index(["arm", "claim"])
    row = table.loc[("tuned", "adam_acc")]
    assert row["verdict"] == "inconclusive" and bool(row["equivalent"])
    assert -0.25 < row["ci_adj_low"] and row["ci_adj_high"] < 0.25
    assert pd.isna(table.loc[("tuned", "bn_epochs"), "equivalent"])  # no margin declared for epochs


def test_the_default_config_declares_the_seeds_family_as_the_seed_states_it():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    specs = parse_claims(config["protocol"])
    seed = [s for s in specs if s.family == "seed"]
    assert {s.metric for s in seed} == {"test_acc", "epochs_to_best"}  # accuracy and epochs, as the seed claims
    assert any(s.kind == "interaction" for s in seed) and any(s.kind == "all_of" for s in specs)
    for spec in specs:
        assert spec.seed_quote["zh"] and spec.seed_quote["en"] and spec.statement["zh"], spec.id
        cells = [spec.a, spec.b, *spec.cells.values()] + [c for p in spec.components for c in (p.a, p.b)]
        assert all(c.get("arch", "mlp") == "mlp" for c in cells) or spec.family == "extension", spec.id


def test_the_committed_claims_csv_intervals_answer_their_tests():
    """report/claims.csv (the default study): families, epochs rows, an interaction, composites with their
    components; and every accuracy interval implies its own p (a t interval's half-width gives its SE)."""
    claims = pd.read_csv(REPO / "report/claims.csv")
    assert {"seed", "extension"} == set(claims["family"])
    assert (claims["metric"] == "epochs_to_best").any() and (claims["kind"] == "interaction").any()
    for composite in claims[claims["kind"] == "all_of"].itertuples():
        parts = claims[(claims["part_of"] == composite.claim) & (claims["arm"] == composite.arm)]
        assert len(parts) >= 2 and composite.binding in set(parts["claim"])
    accuracy = claims[(claims["method"] == "t") & (claims["kind"] != "all_of")]
    assert len(accuracy) >= 10
    for row in accuracy.itertuples():
        se = (row.ci_high - row.ci_low) / 2 / stats.t.ppf(0.975, row.n - 1)
        implied = 2 * stats.t.sf(abs(row.estimate / se), row.n - 1)
        assert implied == pytest.approx(row.p_value, rel=1e-6, abs=1e-12), row.claim
