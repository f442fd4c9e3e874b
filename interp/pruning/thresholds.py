"""How much can be pruned: the largest percentage whose accuracy stays within a tolerance of the model's.

Bansal et al. read their "~70% of heads" off a curve of accuracy against the percentage pruned;
a threshold is the largest percentage ``x`` such that every percentage up to ``x`` keeps accuracy
within ``tolerance`` points of the unpruned model (see ``docs/methods.md``).

>>> prunable_percent([0, 10, 20, 30], [0.80, 0.80, 0.795, 0.70], tolerance=1)
20
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from interp.errors import InterpError
from interp.tasks.evaluation import wilson_interval

__all__ = ["prunable_percent", "threshold_table"]


def prunable_percent(percents: Any, accuracy: Any, tolerance: float | int = 1.0,
                     baseline: float | None = None) -> float | int:
    """The largest ``x`` such that every ``x' <= x`` keeps accuracy within ``tolerance`` points of the baseline.

    The baseline is the accuracy at 0% unless given; 0% always counts (it is the model itself).
    """
    order = np.argsort(np.asarray(percents, dtype=np.float64), kind="stable")
    percents = np.asarray(percents, dtype=np.float64)[order]
    accuracy = np.asarray(accuracy, dtype=np.float64)[order]
    if baseline is None:
        if percents[0] != 0:
            raise InterpError(f"no 0% cell among percents {percents.tolist()}; pass the unpruned baseline")
        baseline = accuracy[0]
    floor = baseline - tolerance / 100 - 1e-12  # 1e-12: accuracies are ratios of integers
    best = 0.0
    for percent, value in zip(percents, accuracy):
        if percent == 0:
            continue
        if value < floor:
            break
        best = percent
    return int(best) if float(best).is_integer() else best


def _threshold_row(percents: np.ndarray, accuracy: np.ndarray, n_items: int, tolerance: float | int) -> dict[str, Any]:
    """Threshold and an interval: the same rule on each cell's Wilson 95% bounds (n = ``n_items``)."""
    baseline = float(accuracy[percents == 0][0])
    low = np.array([wilson_interval(value * n_items, n_items)[0] for value in accuracy])
    high = np.array([wilson_interval(value * n_items, n_items)[1] for value in accuracy])
    return {"baseline_accuracy": baseline, "prunable_percent": prunable_percent(percents, accuracy, tolerance, baseline),
            "prunable_ci_low": prunable_percent(percents, low, tolerance, baseline),
            "prunable_ci_high": prunable_percent(percents, high, tolerance, baseline), "n_items": int(n_items)}


def threshold_table(table: pd.DataFrame, percent_column: str = "percent", tolerance: float | int = 1.0) -> pd.DataFrame:
    """Per (ranking, task, shots) and on the task average: the largest prunable percentage and its interval.

    The average curve is the mean accuracy over tasks; its interval uses the pooled item count.
    """
    rows = []
    for (ranking, shots), group in table.groupby(["ranking", "shots"], sort=False):
        if 0 not in set(group[percent_column]):
            continue
        for task, part in group.groupby("task", sort=False):
            part = part.sort_values(percent_column)
            rows.append({"ranking": ranking, "shots": shots, "task": task,
                         **_threshold_row(part[percent_column].to_numpy(float), part["accuracy"].to_numpy(float),
                                          int(part["n_items"].iloc[0]), tolerance)})
        complete = group.groupby(percent_column)["task"].nunique() == group["task"].nunique()
        average = group[group[percent_column].isin(complete[complete].index)]
        curve = average.groupby(percent_column).agg(accuracy=("accuracy", "mean")).reset_index()
        n_items = int(average.drop_duplicates("task")["n_items"].sum())
        rows.append({"ranking": ranking, "shots": shots, "task": "average",
                     **_threshold_row(curve[percent_column].to_numpy(float), curve["accuracy"].to_numpy(float),
                                      n_items, tolerance)})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["tolerance_points"] = tolerance
    return frame


# --------------------------------------------------------------------------- masked evaluation
