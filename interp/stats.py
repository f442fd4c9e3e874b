"""Intervals, paired comparisons and multiple-comparison corrections used by every job's tables.

- :func:`summarise_seeds`: mean, variance and a Student-t 95% interval over seeds (column
  ``interval_method`` = ``"t"``); fewer than :data:`FEW_SEEDS` seeds raise a :class:`FewSeedsWarning`.
- :func:`t_interval`: the interval itself, vectorised over cells.
- :func:`wilson_interval`: a binomial proportion's Wilson score interval, from scipy.
- :func:`paired_difference`: mean of ``a - b`` over the same items with a confidence interval and a
  p-value (exact McNemar for 0/1 outcomes, a bootstrap over items otherwise).
- :func:`bh_qvalues`: Benjamini-Hochberg q-values; :func:`overlap_p_value`: the exact
  hypergeometric tail of a top-k overlap.

Why a t-interval, and what it does not promise, is in ``docs/methods.md`` ("Intervals and
multiple comparisons"); ``tests/test_stats.py`` simulates its coverage.

>>> import pandas as pd
>>> values = [1.0, 2.0, 3.0, 4.0, 5.0]
>>> table = pd.DataFrame({"seed": range(5), "layer": 0, "head": 0, "metric": "m", "value": values})
>>> row = summarise_seeds(table).iloc[0]
>>> float(row["mean"]), float(row["var"]), int(row["n_seeds"])
(3.0, 2.5, 5)
>>> round(float(row["ci_low"]), 3), round(float(row["ci_high"]), 3), row["interval_method"]
(1.037, 4.963, 't')
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from interp.errors import InterpError, check_choice

__all__ = [
    "FEW_SEEDS",
    "FewSeedsWarning",
    "PAIRED_METHODS",
    "PairedDifference",
    "bh_qvalues",
    "overlap_p_value",
    "paired_difference",
    "summarise_seeds",
    "t_interval",
    "wilson_interval",
]

FEW_SEEDS = 5  # below this the interval is wide and its coverage rests on the values being near-normal
PAIRED_METHODS = ("auto", "mcnemar", "bootstrap")


class FewSeedsWarning(UserWarning):
    """A seed interval was computed from fewer than :data:`FEW_SEEDS` seeds."""


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval of the mean over axis 0 (seed), for every column (cell) at once.

    ``mean +- t_{n-1, (1+confidence)/2} * sd / sqrt(n)``: exact for normal values at every n.
    NaN where fewer than 2 values (no spread to measure).

    >>> low, high = t_interval(np.array([[1.0], [2.0], [3.0]]))
    >>> round(float(low[0]), 3), round(float(high[0]), 3)
    (-0.484, 4.484)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n = values.shape[0]
    if n < 2:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan.copy()
    mean = values.mean(axis=0)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n)
    return mean - half, mean + half


def summarise_seeds(
    table: pd.DataFrame, keys: tuple[str, ...] = ("layer", "head", "metric"), confidence: float = 0.95
) -> pd.DataFrame:
    """Collapse a long (seed, *keys, value) table into mean, var (ddof=1), ci_low, ci_high, n_seeds, interval_method.

    The interval is the Student-t interval (:func:`t_interval`); a quantity measured once (OV
    copying depends on the weights alone) gets no interval (NaN, ``interval_method`` ``"none"``).
    """
    wide = table.pivot_table(index="seed", columns=list(keys), values="value", aggfunc="mean", dropna=False)
    rows = []
    # Metrics measured on different numbers of seeds (OV copying: one) are summarised apart.
    counts = wide.notna().sum(axis=0)
    for n_seeds, columns in counts.groupby(counts).groups.items():
        if n_seeds == 0:
            continue
        block = wide[columns].dropna(axis=0, how="all").to_numpy(dtype=np.float64)
        if 1 < n_seeds < FEW_SEEDS:
            warnings.warn(
                f"95% intervals from {n_seeds} seeds: use at least {FEW_SEEDS} for intervals worth printing",
                FewSeedsWarning,
                stacklevel=2,
            )
        low, high = t_interval(block, confidence)
        frame = pd.DataFrame(list(columns), columns=list(keys))
        frame["mean"] = block.mean(axis=0)
        frame["var"] = block.var(axis=0, ddof=1) if n_seeds > 1 else 0.0
        frame["ci_low"], frame["ci_high"], frame["n_seeds"] = low, high, int(n_seeds)
        frame["interval_method"] = "t" if n_seeds > 1 else "none"
        rows.append(frame)
    return pd.concat(rows, ignore_index=True).sort_values(list(keys)).reset_index(drop=True)


def wilson_interval(successes: float | int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``scipy.stats.binomtest(...).proportion_ci``).

    >>> tuple(round(bound, 4) for bound in wilson_interval(8, 10))
    (0.4902, 0.9433)
    """
    if total == 0:
        return (math.nan, math.nan)
    count = int(round(successes))
    if not 0 <= count <= total or abs(count - successes) > 1e-6:
        raise InterpError(f"wilson_interval needs a whole number of successes in 0..{total}, got {successes!r}")
    interval = stats.binomtest(count, total).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(interval.low), float(interval.high))


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over paired items, its interval, a two-sided p-value, and how they were made."""

    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    method: str  # "mcnemar" or "bootstrap"
    n: int  # paired items

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}{key}": value for key, value in self.__dict__.items()}


def _binary(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0.0, 1.0)).all())


def _tango_interval(gain: int, loss: int, n: int, confidence: float) -> tuple[float, float]:
    """Tango's (1998) score interval for a paired difference of proportions, ``(gain - loss) / n``.

    ``T(delta) = (gain - loss - n delta) / sqrt(n (2 q(delta) + delta (1 - delta)))`` with ``q`` the
    restricted maximum-likelihood discordance under ``delta``; the interval is ``|T| <= z``
    (Tango, Stat. Med. 17:891-908). Unlike treating the discordant count as fixed, it keeps its
    coverage when few items change (simulated in tests/test_stats.py).
    """
    z = float(stats.norm.ppf(0.5 + confidence / 2))

    def score(delta: float) -> float:
        a, b, c = 2 * n, -gain - loss + (2 * n - gain + loss) * delta, -loss * delta * (1 - delta)
        discordance = (math.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a)
        variance, numerator = n * (2 * discordance + delta * (1 - delta)), gain - loss - n * delta
        if variance <= 0:
            return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
        return numerator / math.sqrt(variance)

    observed, edge = (gain - loss) / n, 1e-12
    low = -1.0 if score(-1 + edge) <= z else optimize.brentq(lambda delta: score(delta) - z, -1 + edge, observed)
    high = 1.0 if score(1 - edge) >= -z else optimize.brentq(lambda delta: score(delta) + z, observed, 1 - edge)
    return float(low), float(high)


def _mcnemar(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Exact McNemar p-value (``gain ~ Bin(gain + loss, 1/2)`` under no difference) and Tango's interval."""
    gain, loss = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    # Bin(n, 1/2) is symmetric, so the exact two-sided p-value is twice the smaller tail (binomtest's, faster).
    p_value = 1.0 if gain + loss == 0 else min(1.0, 2 * float(stats.binom.cdf(min(gain, loss), gain + loss, 0.5)))
    low, high = _tango_interval(gain, loss, len(a), confidence)
    return low, high, p_value


def _bootstrap(
    differences: np.ndarray, strata: np.ndarray, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float, float]:
    """Percentile interval and bootstrap p-value of the stratum-averaged mean difference.

    Items are resampled within each stratum (one stratum: the plain paired bootstrap), all
    resamples of a stratum at once.  Differences of 0/1 outcomes take three values, so a
    resample is then a multinomial count of each value (the same distribution, far fewer draws).
    """
    generator = np.random.default_rng(seed)
    labels = np.unique(strata)
    resampled = np.zeros(n_resamples)
    for label in labels:
        part = differences[strata == label]
        values, counts = np.unique(part, return_counts=True)
        if len(values) <= 16:
            remaining, left = np.full(n_resamples, len(part)), len(part)
            for value, count in zip(
                values[:-1], counts[:-1], strict=True
            ):  # multinomial as a chain of binomials, every resample at once
                drawn = generator.binomial(remaining, count / left)
                resampled += drawn * value / len(part)
                remaining, left = remaining - drawn, left - count
            resampled += remaining * values[-1] / len(part)
        else:
            resampled += part[generator.integers(0, len(part), size=(n_resamples, len(part)))].mean(axis=1)
    resampled /= len(labels)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    # Two-sided: how often the resampled mean falls on the far side of 0 (the inverted percentile interval).
    below, above = (np.sum(resampled <= 0) + 1) / (n_resamples + 1), (np.sum(resampled >= 0) + 1) / (n_resamples + 1)
    return float(low), float(high), float(min(1.0, 2 * min(below, above)))


def paired_difference(
    a: Any,
    b: Any,
    *,
    method: str = "auto",
    strata: Any = None,
    confidence: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
) -> PairedDifference:
    """Compare two measurements of the same items: ``mean(a - b)``, its interval and a p-value.

    Signature: ``paired_difference(a, b, *, method="auto", strata=None, confidence=0.95,
    n_resamples=10000, seed=0) -> PairedDifference(mean_difference, ci_low, ci_high, p_value,
    method, n)``.

    - ``a``, ``b``: per-item values in the same item order (e.g. 0/1 correctness of the pruned
      and the unpruned model, or per-item losses), equal length.
    - ``method="mcnemar"`` (0/1 values only): exact McNemar p-value and Tango's score interval
      of the difference in accuracy; ``"bootstrap"``: percentile interval over
      ``n_resamples`` resamples of the items and the matching bootstrap p-value; ``"auto"``:
      McNemar when both are 0/1 and no strata are given, else bootstrap.
    - ``strata``: a label per item (e.g. its task); the difference is then the mean over strata
      of each stratum's mean difference (every task weighs the same) and items are resampled
      within their stratum.

    >>> result = paired_difference([1, 1, 1, 0, 1, 1], [1, 0, 1, 0, 1, 1])
    >>> round(result.mean_difference, 3), result.method, result.p_value
    (0.167, 'mcnemar', 1.0)
    >>> paired_difference([0.5, 0.7, 0.9], [0.4, 0.6, 0.9], method="bootstrap").ci_low >= 0
    True
    """
    check_choice("paired method", method, PAIRED_METHODS)
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise InterpError(
            f"paired_difference needs two equally long, non-empty vectors, got {a.size} and {b.size} items"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InterpError("paired_difference got NaN or infinite values; drop those items first")
    if not 0 < confidence < 1:
        raise InterpError(f"confidence must be between 0 and 1, got {confidence!r}")
    labels = np.zeros(a.size, dtype=np.int64) if strata is None else np.asarray(strata).ravel()
    if labels.shape != a.shape:
        raise InterpError(f"strata has {labels.size} labels for {a.size} items")
    if method == "auto":
        method = "mcnemar" if strata is None and _binary(a) and _binary(b) else "bootstrap"
    if method == "mcnemar":
        if not (_binary(a) and _binary(b)) or strata is not None:
            raise InterpError("the McNemar test needs 0/1 outcomes and no strata; use method='bootstrap'")
        low, high, p_value = _mcnemar(a, b, confidence)
        mean = float((a - b).mean())
    else:
        differences = a - b
        means = [differences[labels == label].mean() for label in np.unique(labels)]
        mean = float(np.mean(means))
        low, high, p_value = _bootstrap(differences, labels, confidence, n_resamples, seed)
    return PairedDifference(mean, float(low), float(high), float(p_value), method, int(a.size))


def bh_qvalues(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (``scipy.stats.false_discovery_control``); NaN p-values stay NaN.

    A q-value below 0.05 keeps the expected share of false discoveries among the rejected at 5%.

    >>> bh_qvalues([0.01, 0.04, 0.03, float("nan")]).round(3).tolist()
    [0.03, 0.04, 0.04, nan]
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    q_values = np.full(p_values.shape, np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        q_values[finite] = stats.false_discovery_control(p_values[finite], method="bh")
    return q_values


def overlap_p_value(important: np.ndarray, induction: np.ndarray) -> float:
    """Exact P(a uniformly random set of ``important.sum()`` heads overlaps ``induction`` at least as much).

    The overlap of a random k-subset with a fixed K-subset of N heads is hypergeometric, so the
    tail is ``hypergeom.sf(observed - 1, N, K, k)``.

    >>> round(overlap_p_value(np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0])), 4)
    0.1667
    """
    important, induction = np.asarray(important).astype(bool), np.asarray(induction).astype(bool)
    if important.shape != induction.shape:
        raise InterpError(f"overlap masks differ in shape: {important.shape} vs {induction.shape}")
    observed = int((important & induction).sum())
    return float(stats.hypergeom.sf(observed - 1, important.size, int(induction.sum()), int(important.sum())))
