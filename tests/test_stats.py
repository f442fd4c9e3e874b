"""Intervals, paired comparisons and multiple-comparison corrections (interp.stats).

Coverage is simulated: thousands of seeded samples from a known distribution, and the share of
intervals that contain the true mean.  The numbers behind docs/methods.md come from the same code.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from interp.errors import InterpError
from interp.stats import (
    FewSeedsWarning,
    bh_qvalues,
    overlap_p_value,
    paired_difference,
    summarise_seeds,
    t_interval,
    wilson_interval,
)

DRAWS = 20000  # Monte-Carlo standard error of a 95% coverage: sqrt(0.95 * 0.05 / 20000) = 0.0015


def _coverage(draw, true_mean: float, n: int, seed: int) -> float:
    """Share of t-intervals from ``DRAWS`` samples of size ``n`` that contain ``true_mean``."""
    values = draw(np.random.default_rng([seed, n]), (n, DRAWS))  # (seed, draw): one interval per column
    low, high = t_interval(values)
    return float(np.mean((low <= true_mean) & (true_mean <= high)))


NORMAL = (lambda rng, shape: rng.normal(3.0, 2.0, shape), 3.0)
LOGNORMAL = (lambda rng, shape: rng.lognormal(0.0, 0.25, shape), math.exp(0.25**2 / 2))  # skewness 0.78
EXPONENTIAL = (lambda rng, shape: rng.exponential(1.0, shape), 1.0)  # skewness 2


@pytest.mark.parametrize("n", [3, 5, 20])
@pytest.mark.parametrize("name,distribution", [("normal", NORMAL), ("lognormal", LOGNORMAL)])
def test_t_interval_holds_its_coverage_at_small_n(name, distribution, n):
    coverage = _coverage(*distribution, n, seed=len(name))
    assert coverage >= 0.93, f"{name} n={n}: coverage {coverage:.3f}"


def test_t_interval_undercovers_strongly_skewed_values_as_documented():
    # docs/methods.md says the t-interval is not promised for strongly skewed seed values
    # (exponential: about 0.88 at n = 3); keep that statement true.
    coverage = _coverage(*EXPONENTIAL, 3, seed=7)
    assert 0.85 < coverage < 0.92


def test_percentile_bootstrap_the_t_interval_replaced_undercovers_at_three_seeds():
    # The measurement: the old percentile bootstrap over 3 seeds covers about 75%.
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 1.0, (3, 4000))  # (seed, draw)
    counts = rng.multinomial(3, np.full(3, 1 / 3), size=2000)  # (resample, seed)
    means = counts @ values / 3
    low, high = np.quantile(means, [0.025, 0.975], axis=0)
    old = float(np.mean((low <= 0) & (0 <= high)))
    new_low, new_high = t_interval(values)
    assert old < 0.8 and float(np.mean((new_low <= 0) & (0 <= new_high))) > 0.94


def test_t_interval_matches_scipy_one_cell_at_a_time():
    values = np.random.default_rng(1).normal(size=(6, 5))
    low, high = t_interval(values, confidence=0.9)
    for cell in range(values.shape[1]):
        column = values[:, cell]
        expected = stats.t.interval(0.9, len(column) - 1, loc=column.mean(), scale=stats.sem(column))
        assert np.allclose([low[cell], high[cell]], expected, rtol=0, atol=1e-12)


def _per_seed(n_seeds: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"seed": range(n_seeds), "layer": 0, "head": 0, "metric": "m", "value": np.arange(n_seeds, dtype=float)}
    )


def test_summarise_seeds_warns_under_five_seeds_and_names_its_interval():
    with pytest.warns(FewSeedsWarning, match="3 seeds"):
        summary = summarise_seeds(_per_seed(3))
    assert summary["interval_method"].tolist() == ["t"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewSeedsWarning)
        summarise_seeds(_per_seed(5))


def test_a_single_seed_gets_no_interval():
    summary = summarise_seeds(_per_seed(1))
    assert summary["interval_method"].tolist() == ["none"]
    assert summary[["ci_low", "ci_high"]].isna().all().all()


def _wilson_by_formula(successes: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    share = successes / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


@pytest.mark.parametrize("successes,total", [(0, 10), (3, 10), (10, 10), (57, 120), (1, 3)])
def test_wilson_interval_matches_the_textbook_formula(successes, total):
    assert np.allclose(wilson_interval(successes, total), _wilson_by_formula(successes, total), atol=1e-9)


def test_wilson_interval_refuses_a_fraction_of_an_item():
    with pytest.raises(InterpError, match="whole number"):
        wilson_interval(2.5, 10)


def _mcnemar_p_by_loop(a, b) -> float:
    gain = sum(1 for x, y in zip(a, b, strict=True) if x == 1 and y == 0)
    loss = sum(1 for x, y in zip(a, b, strict=True) if x == 0 and y == 1)
    n = gain + loss
    observed = math.comb(n, gain) / 2**n
    return min(
        1.0, sum(math.comb(n, k) / 2**n for k in range(n + 1) if math.comb(n, k) / 2**n <= observed * (1 + 1e-7))
    )


def test_mcnemar_p_value_matches_the_exact_binomial_sum():
    rng = np.random.default_rng(2)
    for _ in range(20):
        a = rng.integers(0, 2, 40)
        b = np.where(rng.random(40) < 0.7, a, rng.integers(0, 2, 40))
        result = paired_difference(a, b)
        assert result.method == "mcnemar"
        assert math.isclose(result.p_value, _mcnemar_p_by_loop(a, b), rel_tol=1e-9, abs_tol=1e-12)
        assert result.ci_low <= result.mean_difference <= result.ci_high
        assert math.isclose(result.mean_difference, float(np.mean(a - b)))


def test_mcnemar_interval_covers_the_true_difference():
    # Items: a pruned model keeps each correct answer with probability 0.9 and fixes a wrong one with 0.05.
    rng = np.random.default_rng(3)
    n, base = 120, 0.6
    true_difference = -(1 - 0.9) * base + 0.05 * (1 - base)
    intervals: dict[tuple[int, int], tuple[float, float]] = {}  # the interval depends on the counts alone
    hits = 0
    for _ in range(4000):
        b = (rng.random(n) < base).astype(int)
        a = np.where(b == 1, rng.random(n) < 0.9, rng.random(n) < 0.05).astype(int)
        key = (int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum()))
        if key not in intervals:
            result = paired_difference(a, b)
            intervals[key] = (result.ci_low, result.ci_high)
        hits += intervals[key][0] <= true_difference <= intervals[key][1]
    assert hits / 4000 >= 0.93


def test_paired_bootstrap_interval_covers_the_true_difference():
    rng = np.random.default_rng(4)
    hits, draws = 0, 200
    for draw in range(draws):
        base = rng.exponential(1.0, 80)
        pruned = base + rng.normal(0.2, 0.5, 80)  # true mean difference 0.2, skewed items
        result = paired_difference(pruned, base, n_resamples=1000, seed=draw)
        assert result.method == "bootstrap"
        hits += result.ci_low <= 0.2 <= result.ci_high
    assert hits / draws >= 0.9  # percentile bootstrap at n = 80 (Monte-Carlo SE of the share: 0.015)


def test_stratified_difference_weighs_each_stratum_equally():
    a = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    b = np.zeros(6)
    strata = np.array(["x", "x", "x", "x", "y", "y"])
    result = paired_difference(a, b, strata=strata, n_resamples=500)
    assert result.method == "bootstrap" and result.mean_difference == pytest.approx(0.5)  # (1 + 0) / 2, not 4 / 6
    assert result.ci_low == pytest.approx(0.5) and result.ci_high == pytest.approx(0.5)  # no spread within strata


def test_paired_difference_rejects_unpaired_input():
    with pytest.raises(InterpError, match="equally long"):
        paired_difference([1, 0, 1], [1, 0])
    with pytest.raises(InterpError, match="0/1"):
        paired_difference([0.5, 1.0], [1.0, 1.0], method="mcnemar")


def _bh_by_loop(p_values):
    m = len(p_values)
    order = sorted(range(m), key=lambda index: p_values[index])
    q = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        index = order[rank - 1]
        running = min(running, p_values[index] * m / rank)
        q[index] = running
    return q


def test_bh_qvalues_match_the_step_up_definition():
    p_values = np.random.default_rng(5).uniform(0, 0.2, 30) ** 2
    assert np.allclose(bh_qvalues(p_values), _bh_by_loop(list(p_values)), rtol=0, atol=1e-12)


def test_overlap_p_value_matches_enumerating_every_subset():
    n_heads, k = 9, 3
    induction = np.zeros(n_heads, dtype=bool)
    induction[[0, 4, 7]] = True
    for observed_set in ([0, 4, 7], [0, 4, 1], [0, 1, 2], [1, 2, 3]):
        important = np.zeros(n_heads, dtype=bool)
        important[observed_set] = True
        observed = int((important & induction).sum())
        subsets = list(itertools.combinations(range(n_heads), k))
        expected = sum(induction[list(subset)].sum() >= observed for subset in subsets) / len(subsets)
        assert overlap_p_value(important, induction) == pytest.approx(expected, abs=1e-12)
