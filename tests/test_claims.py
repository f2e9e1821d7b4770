"""The confirmatory statistics: Holm against a hand-computed family, the BCa interval against a known case,
power and minimum detectable effect, verdicts, and what pairing by seed buys."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nnstudy.claims import (
    CLAIM_COLUMNS,
    VERDICTS,
    claims_table,
    holm,
    intersection_union,
    minimum_detectable_d,
    paired_comparison,
    paired_power,
    verdict,
)


def test_holm_matches_a_hand_computed_family():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> kept monotone at 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    adjusted = holm([0.01, float("nan"), 0.02])  # a missing test is not part of the family
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.02])


def test_bca_interval_of_a_known_case():
    """For 400 normal differences the mean's BCa interval is the t interval to within a few hundredths of
    a standard error, and the same seed gives the same interval."""
    rng = np.random.default_rng(7)
    a = rng.normal(0.0, 1.0, 400)
    b = a + rng.normal(0.5, 1.0, 400)
    result = paired_comparison(a, b, seed=3)
    d = b - a
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert result.ci_low == pytest.approx(d.mean() - half, abs=0.2 * half)
    assert result.ci_high == pytest.approx(d.mean() + half, abs=0.2 * half)
    assert result.ci_low <= result.estimate <= result.ci_high
    assert paired_comparison(a, b, seed=3) == result


def test_power_and_minimum_detectable_effect():
    assert paired_power(0.0, 10) == pytest.approx(0.05)  # no effect: the test's level
    d10 = minimum_detectable_d(10)
    assert paired_power(d10, 10) == pytest.approx(0.80, abs=1e-6)
    normal_approximation = (stats.norm.ppf(0.975) + stats.norm.ppf(0.80)) / np.sqrt(10)
    assert normal_approximation < d10 < 1.15 * normal_approximation  # the t distribution's heavier tails
    assert minimum_detectable_d(20) < d10 < minimum_detectable_d(5)


def test_pairing_by_seed_detects_what_an_unpaired_test_misses():
    """Seeds shift both cells alike (same initial weights and minibatch order): the paired test sees the
    small, consistent gain that Welch's test loses in the seed-to-seed spread."""
    seed_effect = np.array([96.1, 97.3, 96.6, 97.8, 96.0, 97.1, 96.4, 97.5, 96.9, 97.2])
    gain = np.array([0.21, 0.18, 0.25, 0.2, 0.17, 0.23, 0.19, 0.22, 0.24, 0.2])
    a, b = seed_effect, seed_effect + gain
    assert stats.ttest_ind(b, a, equal_var=False).pvalue > 0.3
    result = paired_comparison(a, b)
    assert result.p_value < 1e-8 and result.ci_low > 0 and result.effect_size > 5
    assert result.mde < result.estimate


def test_verdicts_follow_the_interval_and_the_adjusted_p():
    assert verdict(0.3, 0.1, 0.5, 0.01) == "supported"
    assert verdict(-0.3, -0.5, -0.1, 0.01) == "contradicted"
    assert verdict(0.3, 0.1, 0.5, 0.2) == "inconclusive"  # not significant after Holm
    assert verdict(0.3, -0.1, 0.5, 0.01) == "inconclusive"  # interval crosses zero
    assert verdict(float("nan"), float("nan"), float("nan"), float("nan")) == "inconclusive"


def test_claims_table_holm_adjusts_the_family():
    rng = np.random.default_rng(0)
    base = rng.normal(97, 0.5, 10)
    gains = {"adam_beats_sgd": 0.3 + rng.normal(0, 0.05, 10), "dropout_improves": -0.2 + rng.normal(0, 0.05, 10),
             "bn_improves": rng.normal(0, 0.3, 10)}  # fmt: skip
    rows = [{"arm": "tuned", "claim": claim, "metric": "test_acc", "result": paired_comparison(base, base + gain)}
            for claim, gain in gains.items()]  # fmt: skip
    table = claims_table(rows)
    assert [list(row) for row in table] == [CLAIM_COLUMNS] * 3
    for row in table:
        assert row["p_holm"] >= row["p_value"] and row["ci_low"] <= row["estimate"] <= row["ci_high"]
        assert row["verdict"] in VERDICTS and row["n"] == 10
    assert [row["verdict"] for row in table[:2]] == ["supported", "contradicted"]


def test_unpaired_lengths_are_refused():
    with pytest.raises(ValueError, match="paired samples differ in length"):
        paired_comparison([1.0, 2.0], [1.0, 2.0, 3.0])


def test_bn_dp_is_worse_than_each_single_or_the_claim_does_not_hold():
    """The intersection-union claim: supported only when BN+DP is worse than both singles; better than the
    weaker single (however clearly), it cannot be supported (p = 1); better than the better one, that
    comparison alone decides, and can contradict the claim."""
    rng = np.random.default_rng(1)
    both = rng.normal(97, 0.3, 10)

    def vs(shift):  # the single's accuracy minus BN+DP's, per seed: > 0 when BN+DP is worse
        return paired_comparison(both, both + shift + rng.normal(0, 0.05, 10))

    def judged(result):
        return verdict(result.estimate, result.ci_low, result.ci_high, result.p_value)

    better, weaker = vs(0.5), vs(0.3)
    worse_than_both = intersection_union(better, weaker)
    assert worse_than_both.p_value == max(better.p_value, weaker.p_value) and judged(worse_than_both) == "supported"
    mixed = intersection_union(better, vs(-0.5))  # clearly better than the weaker single
    assert (mixed.p_value, mixed.p_wilcoxon, mixed.estimate) == (1.0, 1.0, better.estimate)
    assert judged(mixed) == "inconclusive"
    better_than_both = intersection_union(vs(-0.5), vs(-0.7))
    assert judged(better_than_both) == "contradicted"
