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

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from interp.tasks.evaluation import evaluate_prompts
from interp.tasks.prompts import (
    PromptConfig,
    Task,
    build_prompts_over_seeds,
    class_labels,
    label_mapping,
    load_task,
    resolve_task_names,
)

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = ["DEFAULT_DEMO_SEEDS", "evaluate_over_demo_seeds", "run_accuracy", "seed_spread"]

DEFAULT_DEMO_SEEDS = (0, 1, 2, 3, 4)  # five, as Crosbie & Shutova


def _seed_row(bridge: "TransformerBridge", task: Task, shots: int, config: PromptConfig, seed: int,
              batch_size: int) -> dict:
    """One demonstration seed's accuracy row (see :func:`evaluate_over_demo_seeds`)."""
    prompts = build_prompts_over_seeds(task, shots, config, [seed])[seed]
    balanced = class_labels(task) is not None if config.balanced_demos is None else config.balanced_demos
    mapping = label_mapping(task, config) if class_labels(task) is not None or config.labels != "original" else {}
    summary = evaluate_prompts(bridge, prompts, batch_size, task.name)
    return {"task": task.name, "shots": shots, "demo_seed": seed, "labels": config.labels, "balanced_demos": balanced,
            "label_map": ",".join(f"{label}={shown}" for label, shown in mapping.items()), **summary}


def _seeds_for(shots: int, demo_seeds: Sequence[int]) -> list[int]:
    """Zero-shot prompts have no demonstrations: one seed is enough."""
    return list(demo_seeds)[:1] if shots == 0 else list(demo_seeds)


def evaluate_over_demo_seeds(bridge: "TransformerBridge", task: Task, shots: int, config: PromptConfig = PromptConfig(),
                             demo_seeds: Sequence[int] = DEFAULT_DEMO_SEEDS, batch_size: int = 8) -> pd.DataFrame:
    """One row per demonstration seed: accuracy with its Wilson interval, normalised accuracy, gold loss.

    Columns also record what made the prompts: ``task, shots, demo_seed, labels, balanced_demos,
    label_map`` (``original=shown`` pairs, so an SUL run names its words).
    """
    return pd.DataFrame([_seed_row(bridge, task, shots, config, seed, batch_size)
                         for seed in _seeds_for(shots, demo_seeds)])


def seed_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (n-1), min and max of ``accuracy`` over demonstration seeds, per task, shots, labels."""
    keys = [key for key in ("task", "shots", "labels") if key in table.columns]
    grouped = table.groupby(keys, sort=False)["accuracy"]
    spread = grouped.agg(accuracy_mean="mean", accuracy_sd="std", accuracy_min="min", accuracy_max="max",
                         n_seeds="count").reset_index()
    spread["n_seeds"] = spread["n_seeds"].astype(float)
    return spread



def run_accuracy(model: "str | tuple[TransformerBridge, Any]", tasks: str, shots: Sequence[int], out: Path,
                 config: PromptConfig = PromptConfig(), demo_seeds: Sequence[int] = DEFAULT_DEMO_SEEDS,
                 batch_size: int = 8, device: str = "auto") -> dict[str, pd.DataFrame]:
    """``interp accuracy``: every (task, shots, demonstration seed) into ``out/accuracy_seeds`` and the spread
    into ``out/accuracy_spread`` (parquet + CSV), settings in ``out/accuracy.json``.

    Each (task, shots, seed) row is kept as it finishes in ``out/accuracy_cells/`` with the key of
    everything that made it (model weights, task content, prompt settings, version); a rerun reuses
    the rows whose key matches, so an interrupted run resumes.

    >>> run_accuracy("toy-attn-2l", "repetition", [0, 2], "out/toy", PromptConfig(max_items=4))  # doctest: +SKIP
    """
    from interp.jobs import ModelHandle, check_shots, check_task_labels, method_version, task_key
    from interp.store import read_json_if_intact, results_folder, run_metadata, write_json, write_table

    loaded = [load_task(name) for name in resolve_task_names(tasks)]  # unknown tasks fail before the model loads
    check_task_labels(loaded)
    shots = check_shots(shots)
    handle = ModelHandle(model, device=device)
    with results_folder(Path(out)) as folder:
        rows = []
        for task in loaded:
            for k in shots:
                for seed in _seeds_for(k, demo_seeds):
                    key = {"job": "accuracy", "model": handle.key, "task": task_key(task), "shots": k,
                           "demo_seed": seed, "prompts": asdict(config), "version": method_version()}
                    path = folder / "accuracy_cells" / f"{_safe(task.name)}__{k}shot__seed{seed}.json"
                    stored = read_json_if_intact(path)
                    if stored is None or stored.get("key") != json.loads(json.dumps(key, default=str)):
                        stored = {"key": key, "row": _seed_row(handle.load()[0], task, k, config, seed, batch_size)
                                  | {"chance": task.chance(config.n_choices)}}
                        write_json(stored, path)
                    rows.append(stored["row"])
        table = pd.DataFrame(rows)
        tables = {"accuracy_seeds": table, "accuracy_spread": seed_spread(table)}
        for name, frame in tables.items():
            write_table(frame, folder / name)
        described = [task_key(task) | {"source": task.source} for task in loaded]
        record = handle.loaded[1] if handle.loaded is not None else handle.key
        write_json(run_metadata(record, tasks=described, shots=shots, demo_seeds=list(demo_seeds),
                                prompts=asdict(config), batch_size=batch_size), folder / "accuracy.json")
    return tables


def _safe(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_" else "_" for character in name)
