"""How much can be pruned: the largest percentage whose accuracy stays within a tolerance of the model's.

Bansal et al. read their "~70% of heads" off a curve of accuracy against the percentage pruned;
a threshold is the largest percentage ``x`` such that every percentage up to ``x`` keeps accuracy
within ``tolerance`` points of the unpruned model (see ``docs/methods.md``).

A pruned and the unpruned model answer the *same* items, so their difference is measured item
by item (:func:`interp.stats.paired_difference`: exact McNemar p-value and Tango's score interval
per task; a bootstrap stratified by task for the task average, every task weighing the same).
The threshold's interval applies the same rule to each cell's interval of the difference:
``prunable_ci_low`` is the largest ``x`` whose cells are all *confidently* within tolerance (the
interval's low end), ``prunable_ci_high`` the largest whose cells are all not confidently outside
it (the high end).  Cells saved before per-item results were kept (no ``item_correct``) fall back
to each cell's Wilson bounds against the baseline's point value, and say so in ``interval_method``.

>>> prunable_percent([0, 10, 20, 30], [0.80, 0.80, 0.795, 0.70], tolerance=1)
20
>>> effects = paired_effects(pd.DataFrame({"ranking": "own", "task": "t", "shots": 0, "percent": [0, 10],
...                                         "accuracy": [0.75, 0.5], "n_items": 4, "item_correct": ["1110", "1010"]}))
>>> effects[["task", "percent", "accuracy_change", "interval_method"]].values.tolist()[0]
['t', 10, -0.25, 'paired: exact McNemar p, Tango score CI']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from interp.errors import InterpError
from interp.stats import paired_difference, wilson_interval

__all__ = ["PAIRED_INTERVAL", "decode_items", "encode_items", "paired_effects", "prunable_percent", "threshold_table"]

PAIRED_INTERVAL = "paired: exact McNemar p, Tango score CI"
AVERAGE_INTERVAL = "paired: bootstrap over items, stratified by task"
UNPAIRED_INTERVAL = "unpaired: Wilson bounds of each cell vs the baseline's point value (cells lack per-item results)"
GROUP = ["ranking", "shots"]


def encode_items(correct: Any) -> str:
    """Per-item 0/1 correctness (any 1-d array, tensor or list) as ``0``/``1`` characters in item order.

    >>> encode_items([1.0, 0.0, 1.0]), decode_items("101").tolist()
    ('101', [1.0, 0.0, 1.0])
    """
    return "".join("1" if value else "0" for value in np.asarray(correct).ravel().tolist())


def decode_items(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.float64) - ord("0")


def prunable_percent(
    percents: Any, accuracy: Any, tolerance: float | int = 1.0, baseline: float | None = None
) -> float | int:
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
    for percent, value in zip(percents, accuracy, strict=True):
        if percent == 0:
            continue
        if value < floor:
            break
        best = percent
    return int(best) if float(best).is_integer() else best


def _has_items(rows: pd.DataFrame) -> bool:
    return "item_correct" in rows.columns and bool(
        rows["item_correct"].map(lambda text: isinstance(text, str) and text != "").all()
    )


def _effect(cell: pd.Series, baseline: pd.Series) -> dict[str, Any]:
    """The pruned cell minus the baseline on the same items."""
    if cell["n_items"] != baseline["n_items"] or not _has_items(pd.DataFrame([cell, baseline])):
        return {
            "accuracy_change": cell["accuracy"] - baseline["accuracy"],
            "change_ci_low": np.nan,
            "change_ci_high": np.nan,
            "p_value": np.nan,
            "interval_method": "none (no per-item results)",
        }
    result = paired_difference(
        decode_items(cell["item_correct"]), decode_items(baseline["item_correct"]), method="mcnemar"
    )
    return {
        "accuracy_change": result.mean_difference,
        "change_ci_low": result.ci_low,
        "change_ci_high": result.ci_high,
        "p_value": result.p_value,
        "interval_method": PAIRED_INTERVAL,
    }


def _average_effect(cells: pd.DataFrame, baselines: pd.DataFrame, seed: int) -> dict[str, Any]:
    """Mean over tasks of each task's change, with a bootstrap stratified by task."""
    change = float((cells["accuracy"].to_numpy() - baselines["accuracy"].to_numpy()).mean())
    if not (_has_items(cells) and _has_items(baselines)):
        return {
            "accuracy_change": change,
            "change_ci_low": np.nan,
            "change_ci_high": np.nan,
            "p_value": np.nan,
            "interval_method": "none (no per-item results)",
        }
    pruned = [decode_items(text) for text in cells["item_correct"]]
    clean = [decode_items(text) for text in baselines["item_correct"]]
    strata = np.concatenate([np.full(len(values), index) for index, values in enumerate(pruned)])
    result = paired_difference(
        np.concatenate(pruned), np.concatenate(clean), method="bootstrap", strata=strata, n_resamples=2000, seed=seed
    )
    return {
        "accuracy_change": result.mean_difference,
        "change_ci_low": result.ci_low,
        "change_ci_high": result.ci_high,
        "p_value": result.p_value,
        "interval_method": AVERAGE_INTERVAL,
    }


def paired_effects(table: pd.DataFrame, percent_columns: Sequence[str] = ("percent",)) -> pd.DataFrame:
    """Every pruned cell's accuracy change against the unpruned cell (all percentages 0) of its (ranking, task, shots).

    Columns: ranking, shots, task, the percent columns, accuracy_change, change_ci_low,
    change_ci_high, p_value, interval_method; ``task == "average"`` rows average the tasks
    measured at that percentage.
    """
    percent_columns = list(percent_columns)
    rows = []
    for (ranking, shots), group in table.groupby(GROUP, sort=False):
        unpruned = (group[percent_columns] == 0).all(axis=1)
        baselines = group[unpruned].drop_duplicates("task").set_index("task")
        cells = group[~unpruned & group["task"].isin(baselines.index)]
        for _, cell in cells.iterrows():
            rows.append(
                {
                    "ranking": ranking,
                    "shots": shots,
                    "task": cell["task"],
                    **{column: cell[column] for column in percent_columns},
                    **_effect(cell, baselines.loc[cell["task"]]),
                }
            )
        for index, (percents, part) in enumerate(cells.groupby(percent_columns, sort=True)):
            if len(part) != part["task"].nunique():
                continue
            percents = percents if isinstance(percents, tuple) else (percents,)
            rows.append(
                {
                    "ranking": ranking,
                    "shots": shots,
                    "task": "average",
                    **dict(zip(percent_columns, percents, strict=True)),
                    **_average_effect(part, baselines.loc[part["task"]].reset_index(), seed=index),
                }
            )
    columns = [
        "ranking",
        "shots",
        "task",
        *percent_columns,
        "accuracy_change",
        "change_ci_low",
        "change_ci_high",
        "p_value",
        "interval_method",
    ]
    return pd.DataFrame(rows, columns=columns)


def _threshold_row(
    percents: np.ndarray,
    accuracy: np.ndarray,
    baseline: float,
    low: np.ndarray,
    high: np.ndarray,
    tolerance: float | int,
    method: str,
    n_items: int,
) -> dict[str, Any]:
    """The rule on the point values, and on the low and high ends of each cell's interval."""
    return {
        "baseline_accuracy": baseline,
        "prunable_percent": prunable_percent(percents, accuracy, tolerance, baseline),
        "prunable_ci_low": prunable_percent(percents, low, tolerance, baseline),
        "prunable_ci_high": prunable_percent(percents, high, tolerance, baseline),
        "n_items": int(n_items),
        "interval_method": method,
    }


def _unpaired_bounds(accuracy: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    bounds = np.array([wilson_interval(round(value * n_items), n_items) for value in accuracy])
    return bounds[:, 0], bounds[:, 1]


def _curve_row(curve: pd.DataFrame, effects: pd.DataFrame, n_items: int, tolerance: float | int) -> dict[str, Any]:
    """A threshold from one curve (percent, accuracy) and its cells' paired effects (percent -> interval)."""
    percents, accuracy = curve["percent"].to_numpy(float), curve["accuracy"].to_numpy(float)
    baseline = float(accuracy[percents == 0][0])
    intervals = effects.set_index("percent").reindex(percents)
    if len(effects) and intervals.loc[percents != 0, "change_ci_low"].notna().all():
        low = np.where(percents == 0, baseline, baseline + intervals["change_ci_low"].to_numpy(float))
        high = np.where(percents == 0, baseline, baseline + intervals["change_ci_high"].to_numpy(float))
        return _threshold_row(
            percents, accuracy, baseline, low, high, tolerance, effects["interval_method"].iloc[0], n_items
        )
    low, high = _unpaired_bounds(accuracy, n_items)
    return _threshold_row(percents, accuracy, baseline, low, high, tolerance, UNPAIRED_INTERVAL, n_items)


def threshold_table(
    table: pd.DataFrame,
    percent_column: str = "percent",
    tolerance: float | int = 1.0,
    effects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per (ranking, task, shots) and on the task average: the largest prunable percentage and its interval.

    The average curve is the mean accuracy over the tasks measured at every percentage.
    ``effects`` (from :func:`paired_effects`) is computed here when not given.
    """
    table = table.rename(columns={percent_column: "percent"})
    effects = paired_effects(table) if effects is None else effects.rename(columns={percent_column: "percent"})
    rows = []
    for (ranking, shots), group in table.groupby(GROUP, sort=False):
        if 0 not in set(group["percent"]):
            continue
        mine = effects[(effects["ranking"] == ranking) & (effects["shots"] == shots)]
        for task, part in group.groupby("task", sort=False):
            rows.append(
                {
                    "ranking": ranking,
                    "shots": shots,
                    "task": task,
                    **_curve_row(
                        part.sort_values("percent"), mine[mine["task"] == task], int(part["n_items"].iloc[0]), tolerance
                    ),
                }
            )
        complete = group.groupby("percent")["task"].nunique() == group["task"].nunique()
        average = group[group["percent"].isin(complete[complete].index)]
        curve = average.groupby("percent").agg(accuracy=("accuracy", "mean")).reset_index()
        n_items = int(average.drop_duplicates("task")["n_items"].sum())
        rows.append(
            {
                "ranking": ranking,
                "shots": shots,
                "task": "average",
                **_curve_row(curve, mine[mine["task"] == "average"], n_items, tolerance),
            }
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["tolerance_points"] = tolerance
    return frame
