"""Summaries over seeds: mean, variance (as the paper reports) and a bootstrap 95% interval.

>>> import pandas as pd
>>> table = pd.DataFrame({"seed": [0, 1, 2, 3], "layer": 0, "head": 0, "metric": "m", "value": [1.0, 2.0, 3.0, 4.0]})
>>> summary = summarise_seeds(table)
>>> float(summary["mean"].iloc[0]), float(summary["var"].iloc[0]), int(summary["n_seeds"].iloc[0])
(2.5, 1.6666666666666667, 4)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["bootstrap_interval", "summarise_seeds"]


def bootstrap_interval(
    values: np.ndarray, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over axis 0, for every column at once.

    ``values`` is (seed, cell). Each resample is a vector of counts over seeds, so all the
    resampled means come out of one matrix product instead of a loop.
    """
    n_seeds = values.shape[0]
    if n_seeds < 2:
        return values[0].copy(), values[0].copy()
    generator = np.random.default_rng(seed)
    counts = generator.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_resamples)  # (resample, seed)
    means = counts @ values / n_seeds  # (resample, cell)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
    return low, high


def summarise_seeds(table: pd.DataFrame, keys: tuple[str, ...] = ("layer", "head", "metric"), seed: int = 0) -> pd.DataFrame:
    """Collapse a long (seed, *keys, value) table into mean, var (ddof=1), ci_low, ci_high, n_seeds."""
    wide = table.pivot_table(index="seed", columns=list(keys), values="value", aggfunc="mean", dropna=False)
    rows = []
    # Metrics measured on different numbers of seeds (OV copying: one) are summarised apart.
    counts = wide.notna().sum(axis=0)
    for n_seeds, columns in counts.groupby(counts).groups.items():
        if n_seeds == 0:
            continue
        block = wide[columns].dropna(axis=0, how="all").to_numpy(dtype=np.float64)
        low, high = bootstrap_interval(block, seed=seed)
        frame = pd.DataFrame(list(columns), columns=list(keys))
        frame["mean"] = block.mean(axis=0)
        frame["var"] = block.var(axis=0, ddof=1) if n_seeds > 1 else 0.0
        frame["ci_low"], frame["ci_high"], frame["n_seeds"] = low, high, int(n_seeds)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True).sort_values(list(keys)).reset_index(drop=True)
