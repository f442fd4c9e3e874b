"""Accuracy over several demonstration seeds, and its spread: how much a few-shot number owes to which shots.

Crosbie & Shutova (2025) report each few-shot accuracy over five demonstration seeds.  Here the
split into demonstration pool and evaluated items stays fixed (``PromptConfig.seed``) and only the
demonstrations are redrawn (``PromptConfig.demo_seed``), so the seeds differ in nothing else.
Zero-shot prompts have no demonstrations, so they are evaluated once.

>>> table = pd.DataFrame({"task": ["t"] * 3, "shots": [5] * 3, "labels": ["original"] * 3,
...                       "demo_seed": [0, 1, 2], "accuracy": [0.6, 0.7, 0.8]})
>>> spread = seed_spread(table)
>>> spread[["accuracy_mean", "accuracy_sd", "accuracy_min", "accuracy_max", "n_seeds"]].round(2).values.tolist()
[[0.7, 0.1, 0.6, 0.8, 3.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from interp.tasks.evaluation import evaluate_prompts
from interp.tasks.prompts import PromptConfig, Task, build_prompts_over_seeds, class_labels, label_mapping

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = ["DEFAULT_DEMO_SEEDS", "evaluate_over_demo_seeds", "seed_spread"]

DEFAULT_DEMO_SEEDS = (0, 1, 2, 3, 4)  # five, as Crosbie & Shutova


def evaluate_over_demo_seeds(bridge: "TransformerBridge", task: Task, shots: int, config: PromptConfig = PromptConfig(),
                             demo_seeds: Sequence[int] = DEFAULT_DEMO_SEEDS, batch_size: int = 8) -> pd.DataFrame:
    """One row per demonstration seed: accuracy with its Wilson interval, normalised accuracy, gold loss.

    Columns also record what made the prompts: ``task, shots, demo_seed, labels, balanced_demos,
    label_map`` (``original=shown`` pairs, so an SUL run names its words).
    """
    seeds = list(demo_seeds)[:1] if shots == 0 else list(demo_seeds)
    runs = build_prompts_over_seeds(task, shots, config, seeds)
    balanced = class_labels(task) is not None if config.balanced_demos is None else config.balanced_demos
    mapping = label_mapping(task, config) if class_labels(task) is not None or config.labels != "original" else {}
    rows = []
    for seed, prompts in runs.items():
        summary = evaluate_prompts(bridge, prompts, batch_size, task.name)
        rows.append({"task": task.name, "shots": shots, "demo_seed": seed, "labels": config.labels,
                     "balanced_demos": balanced, "label_map": ",".join(f"{k}={v}" for k, v in mapping.items()),
                     **summary})
    return pd.DataFrame(rows)


def seed_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (n-1), min and max of ``accuracy`` over demonstration seeds, per task, shots, labels."""
    keys = [key for key in ("task", "shots", "labels") if key in table.columns]
    grouped = table.groupby(keys, sort=False)["accuracy"]
    spread = grouped.agg(accuracy_mean="mean", accuracy_sd="std", accuracy_min="min", accuracy_max="max",
                         n_seeds="count").reset_index()
    spread["n_seeds"] = spread["n_seeds"].astype(float)
    return spread

