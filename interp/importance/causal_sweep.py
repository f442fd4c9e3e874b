"""The causal-test sweep: every (task, shots, ablation, ranking, k, draw) cell, resumable, then paired statistics.

``interp ablate`` runs :func:`run_causal`.  Each cell is one JSON file written atomically as soon
as its (task, shots, ablation) group is done, holding the removed heads and the per-item
correctness and gold log-probability; the file name carries a hash of everything that made it
(model spec, task content, prompt settings), and a rerun skips every cell already on disk whose
heads are the ones wanted (so new ``induction_scores`` recompute the induction rankings' cells).

Tables (parquet + CSV) and ``causal.json`` (estimators and settings):

- ``causal_items``: one row per (task, shots, ablation, ranking, percent, draw, item): correct,
  gold_logprob and the unablated model's values;
- ``causal_effects``: per cell and metric (``accuracy``, ``gold_logprob``), the ablated and clean
  means and the mean paired change over items with its 95% interval (task ``all``: pooled over
  tasks, every task weighing the same);
- ``causal_vs_random``: per ranking cell, its change, the random band (mean, sd, min, max of the
  change over draws) and the paired ranking-minus-random difference over items with its interval;
- ``causal_repeated``: the same for the mean loss on repeats 2..R of repeated random tokens
  (paired over sequences), and on repeat 1.

Statistics come from :func:`interp.stats.paired_difference`: McNemar's exact test with Tango's
interval for a 0/1 accuracy change on one task, a percentile bootstrap over items otherwise.

>>> CausalConfig(percents=(0, 10))
Traceback (most recent call last):
...
interp.errors.InterpError: percents: 0 is not a percentage in (0, 100]
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from interp.errors import InterpError, check_choice
from interp.importance.causal import (
    ABLATION_KINDS,
    head_count,
    head_set_scores,
    random_heads_mask,
    repeated_loss_by_head_set,
    top_heads_mask,
)
from interp.tasks.prompts import PromptConfig, build_prompts, load_task, resolve_task_names

if TYPE_CHECKING:
    from interp.induction.sequences import SequenceConfig

__all__ = ["CAUSAL_RANKINGS", "CausalConfig", "causal_tables", "merge_causal", "run_causal"]

CAUSAL_RANKINGS = ("prefix_matching", "copying", "own")
INDUCTION_RANKINGS = ("prefix_matching", "copying")
CLEAN = "none"  # ranking and ablation name of the unablated model's cell


@dataclass(frozen=True)
class CausalConfig:
    """Settings of the causal test."""

    # k as % of all heads: Crosbie & Shutova's 1% up to Bansal-scale 20%
    percents: tuple[float | int, ...] = (1, 5, 10, 20)
    ablations: tuple[str, ...] = ("zero", "mean")  # how a head is removed (ABLATION_KINDS)
    rankings: tuple[str, ...] = CAUSAL_RANKINGS  # which top-k sets are compared with random ones
    n_random: int = 5  # random draws per k: enough for a band, each draw costs as much as a ranking
    max_items: int | None = 40  # items per task: the CPU budget of the issue (None: every non-demo item)
    seed: int = 0  # demo split, demonstrations, distractors; random draws use their own seeds
    n_choices: int = 4  # candidates for items without fixed choices
    batch_size: int = 8  # prompts per forward (each stacked once per head set in a group)
    sets_per_forward: int = 16  # head sets stacked in one resumed forward
    repeat_seeds: int = 10  # repeated random sequences (Olsson protocol: 25 tokens x 4) for the loss
    n_resamples: int = 10000  # bootstrap resamples of the paired intervals

    def __post_init__(self) -> None:
        percents = tuple(self.percents)
        for value in percents:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
                raise InterpError(f"percents: {value!r} is not a percentage in (0, 100]")
        object.__setattr__(self, "percents", tuple(sorted(set(percents))))
        for name in self.ablations:
            check_choice("ablation", name, tuple(ABLATION_KINDS))
        for name in self.rankings:
            check_choice("ranking", name, CAUSAL_RANKINGS)
        if not self.percents or not self.ablations:
            raise InterpError("give at least one percentage and one ablation")
        for name in ("n_random", "batch_size", "sets_per_forward", "repeat_seeds", "n_resamples"):
            if getattr(self, name) < 1:
                raise InterpError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_items is not None and self.max_items < 2:
            raise InterpError(f"max_items must be at least 2 (paired intervals), got {self.max_items}")

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(n_choices=self.n_choices, seed=self.seed, max_items=self.max_items)

    def sequences(self) -> "SequenceConfig":
        from interp.induction.sequences import SequenceConfig

        return SequenceConfig(protocol="olsson", num_seeds=self.repeat_seeds)


# ---------------------------------------------------------------------------------- cells


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _safe(text: str) -> str:
    return "".join(character if character.isalnum() or character in "-_" else "_" for character in str(text))


@dataclass(frozen=True)
class _Cell:
    """One (scope, ablation, ranking, percent, draw) measurement; scope = (task, shots) or the repeated tokens."""

    scope: str
    ablation: str
    ranking: str
    percent: float | int
    draw: int

    def path(self, folder: Path, key: str) -> Path:
        return folder / (f"{_safe(self.scope)}__{self.ablation}__{_safe(self.ranking)}"
                         f"__p{self.percent:g}__d{self.draw}__{key}.json")


def _wanted_cells(scope: str, config: CausalConfig, rankings: Sequence[str]) -> list[_Cell]:
    cells = [_Cell(scope, CLEAN, CLEAN, 0, 0)]
    for ablation in config.ablations:
        for percent in config.percents:
            cells += [_Cell(scope, ablation, ranking, percent, 0) for ranking in rankings]
            cells += [_Cell(scope, ablation, "random", percent, draw) for draw in range(config.n_random)]
    return cells


def _cell_heads(cell: _Cell, scores: dict[str, np.ndarray], shape: tuple[int, int], config: CausalConfig) -> np.ndarray:
    """The removed heads of ``cell`` as a (layer, head) mask."""
    if cell.ranking == CLEAN:
        return np.zeros(shape, dtype=bool)
    count = head_count(shape[0] * shape[1], cell.percent)
    if cell.ranking == "random":
        return random_heads_mask(shape, count, cell.draw, config.seed)
    return top_heads_mask(scores[cell.ranking], count)


def _is_done(path: Path, heads: np.ndarray | None) -> bool:
    """A cell file exists and (when the wanted heads are known) removed exactly those heads."""
    if not path.exists():
        return False
    if heads is None:
        return True
    from interp.store import read_json

    return sorted(map(tuple, read_json(path)["heads"])) == sorted(map(tuple, np.argwhere(heads).tolist()))


def _induction_scores(results: Path, rankings: Sequence[str]) -> dict[str, np.ndarray]:
    """(layer, head) grids of the induction rankings' scores (mean over seeds) from ``results/induction_scores``."""
    from interp.store import read_table_if_present

    needed = [name for name in rankings if name in INDUCTION_RANKINGS]
    if not needed:
        return {}
    table = read_table_if_present(results / "induction_scores")
    if table is None:
        raise InterpError(f"rankings {', '.join(needed)} need induction_scores in {results}; run "
                          f"`interp induction --model MODEL --out {results}` first (or pass --results FOLDER)")
    grids = {}
    for name in needed:
        rows = table[table["metric"] == name].dropna(subset=["layer", "head"])
        if rows.empty:
            raise InterpError(f"{results}/induction_scores has no {name!r} rows; rerun `interp induction`")
        grids[name] = rows.pivot_table(index="layer", columns="head", values="mean").sort_index().to_numpy()
    return grids


# ----------------------------------------------------------------------------------- the sweep


def _task_key(model: str, task: Any, shots: int, config: CausalConfig) -> str:
    content = [[item.input, item.answer, item.choices, item.aliases] for item in task.items]
    return _hash({"model": model, "task": _hash(content), "shots": shots, "prompts": asdict(config.prompt_config())})


def _repeated_key(model: str, config: CausalConfig) -> str:
    return _hash({"model": model, "sequences": asdict(config.sequences())})


def _write_task_cells(bridge: Any, record: Any, encoded: Any, cells: list[_Cell], heads: dict[_Cell, np.ndarray],
                      folder: Path, key: str, config: CausalConfig, means: dict[str, Any]) -> None:
    """Score every cell of one (task, shots) (one stacked sweep per ablation) and write each cell file."""
    from interp.store import write_json
    from interp.tasks.evaluation import multiple_choice_metrics

    n_tokens = torch.tensor([len(tokens) - start for tokens,
                             start in zip(encoded.tokens, encoded.context_lengths, strict=True)],
                            dtype=torch.float64)
    for ablation in dict.fromkeys(cell.ablation for cell in cells):
        group = [cell for cell in cells if cell.ablation == ablation]
        started = time.perf_counter()
        masks = torch.from_numpy(np.stack([heads[cell] for cell in group]))
        sums = head_set_scores(bridge, encoded, masks, ablation if ablation != CLEAN else "zero", means.get(ablation),
                               config.batch_size, config.sets_per_forward)
        metrics = multiple_choice_metrics(sums, n_tokens, encoded)
        gold = sums[:, encoded.gold_sequence]
        seconds = (time.perf_counter() - started) / len(group)
        for index, cell in enumerate(group):
            write_json({"model": record.name, "scope": cell.scope, "ablation": cell.ablation, "ranking": cell.ranking,
                        "percent": cell.percent, "k": int(heads[cell].sum()), "draw": cell.draw,
                        "heads": np.argwhere(heads[cell]).tolist(), "correct": metrics["correct"][index].tolist(),
                        "gold_logprob": gold[index].tolist(), "seconds": seconds}, cell.path(folder, key))


def _write_repeated_cells(bridge: Any, record: Any, cells: list[_Cell], heads: dict[_Cell, np.ndarray], folder: Path,
                          key: str, config: CausalConfig) -> None:
    """Loss on repeated random tokens with each cell's heads removed (one stacked sweep per ablation)."""
    from interp.store import write_json

    for ablation in dict.fromkeys(cell.ablation for cell in cells):
        group = [cell for cell in cells if cell.ablation == ablation]
        started = time.perf_counter()
        masks = torch.from_numpy(np.stack([heads[cell] for cell in group]))
        losses, seeds = repeated_loss_by_head_set(bridge, masks, config.sequences(), ablation if ablation != CLEAN
                                                  else "zero",
                                                  config.sets_per_forward)
        seconds = (time.perf_counter() - started) / len(group)
        for index, cell in enumerate(group):
            write_json({"model": record.name, "scope": cell.scope, "ablation": cell.ablation, "ranking": cell.ranking,
                        "percent": cell.percent, "k": int(heads[cell].sum()), "draw": cell.draw,
                        "heads": np.argwhere(heads[cell]).tolist(), "seeds": seeds,
                        "loss_repeat_1": losses[index, :, 0].tolist(),
                        "loss_repeats_later": losses[index, :, 1].tolist(),
                        "seconds": seconds}, cell.path(folder, key))


@dataclass
class _Plan:
    """The cells of one (task, shots) and of its own-ranking repeated-token runs, with what they need."""

    name: str
    label: str
    shots: int
    key: str
    repeated_key: str
    cells: list[_Cell]
    repeated_cells: list[_Cell]
    todo: bool = False


def _plans(model: str, names: Sequence[str], loaded: dict, shots: Sequence[int], config: CausalConfig,
           scores: dict[str, np.ndarray], shape: tuple[int, int] | None, folder: Path) -> list[_Plan]:
    plans = []
    base = _repeated_key(model, config)
    for name in names:
        label = loaded[name].name
        for k in shots:
            key = _task_key(model, loaded[name], k, config)
            scope = f"{label}__{k}shot"
            own = [ranking for ranking in config.rankings if ranking == "own"]
            plan = _Plan(name, label, k, key, _hash([base, key]), _wanted_cells(scope, config, config.rankings),
                         [cell for cell in _wanted_cells(f"repeated__{scope}", config, own) if cell.ranking == "own"])
            known = lambda cell: (None if cell.ranking == "own" or shape is None  # noqa: E731
                                  else _cell_heads(cell, scores, shape, config))
            plan.todo = (any(not _is_done(cell.path(folder / "cells", key), known(cell)) for cell in plan.cells)
                         or any(not _is_done(cell.path(folder / "repeated", plan.repeated_key), None)
                                for cell in plan.repeated_cells))
            plans.append(plan)
    return plans


def _run_plan(bridge: Any, record: Any, plan: _Plan, task: Any, config: CausalConfig, scores: dict[str, np.ndarray],
              folder: Path) -> None:
    """Measure the missing cells of one (task, shots)."""
    from interp.importance.methods import activation_means, gradient_importance
    from interp.tasks.evaluation import encode_prompts

    shape = (int(bridge.cfg.n_layers), int(bridge.cfg.n_heads))
    encoded = encode_prompts(bridge.tokenizer, build_prompts(task, plan.shots, config.prompt_config()),
                             bridge.cfg.n_ctx,
                             plan.label)
    scores = dict(scores)
    if "own" in config.rankings:
        scores["own"] = gradient_importance(bridge, encoded, config.batch_size)["head_gradient"].numpy()
    heads = {cell: _cell_heads(cell, scores, shape, config) for cell in plan.cells + plan.repeated_cells}
    todo = [cell for cell in plan.cells if not _is_done(cell.path(folder / "cells", plan.key), heads[cell])]
    if todo:
        means = {name: activation_means(bridge, encoded, config.batch_size) for name in config.ablations
                 if ABLATION_KINDS[name].needs_means and any(cell.ablation == name for cell in todo)}
        _write_task_cells(bridge, record, encoded, todo, heads, folder / "cells", plan.key, config, means)
    todo = [cell for cell in plan.repeated_cells
            if not _is_done(cell.path(folder / "repeated", plan.repeated_key), heads[cell])]
    if todo:
        _write_repeated_cells(bridge, record, todo, heads, folder / "repeated", plan.repeated_key, config)


def run_causal(model: str, tasks: str | Sequence[str], shots: Sequence[int], out: Path,
               config: CausalConfig = CausalConfig(), *, results: Path | None = None, device: str = "auto",
               bridge_record: Any = None, figures: bool = True, show_progress: bool = True,
               compute: bool = True) -> dict[str, pd.DataFrame]:
    """Run every missing cell of the causal test, then write the tables, metadata and figure.

    ``results`` is the folder holding ``induction_scores`` (default ``out``).  ``compute=False``
    only tabulates the cells already finished (e.g. while a long run is still going).  Returns the tables.
    """
    from tqdm.auto import tqdm

    out, results = Path(out), Path(results or out)
    names = resolve_task_names(tasks) if isinstance(tasks, str) else list(tasks)
    loaded = {name: load_task(name) for name in names}  # an unknown task fails before any work
    for k in shots:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InterpError(f"shots must be integers 0 or more, got {k!r}")
    scores = _induction_scores(results, config.rankings)
    shape = next(iter(scores.values())).shape if scores else None
    folder = out / "causal"
    plans = _plans(model, names, loaded, shots, config, scores, shape, folder)
    random_cells = _wanted_cells("repeated", config, [ranking for ranking in config.rankings if ranking != "own"])
    repeated_key = _repeated_key(model, config)
    for plan in plans:  # bad prompts (too few demonstrations, say) fail before the model loads
        build_prompts(loaded[plan.name], plan.shots, config.prompt_config())
    record = None
    known = lambda cell: None if shape is None else _cell_heads(cell, scores, shape, config)  # noqa: E731
    if compute and (any(plan.todo for plan in plans)
                    or any(not _is_done(cell.path(folder / "repeated", repeated_key), known(cell))
                           for cell in random_cells)):
        if bridge_record is None:
            from interp.models.loading import load_model

            bridge_record = load_model(model, device=device)
        bridge, record = bridge_record
        model_shape = (int(bridge.cfg.n_layers), int(bridge.cfg.n_heads))
        if shape is not None and tuple(shape) != model_shape:
            raise InterpError(f"induction_scores in {results} score a {shape} (layer, head) grid; {model} has "
                              f"{model_shape}")
        heads = {cell: _cell_heads(cell, scores, model_shape, config) for cell in random_cells}
        todo = [cell for cell in random_cells
                if not _is_done(cell.path(folder / "repeated", repeated_key), heads[cell])]
        if todo:
            _write_repeated_cells(bridge, record, todo, heads, folder / "repeated", repeated_key, config)
        for plan in tqdm([plan for plan in plans if plan.todo], desc="causal test", unit="task",
                         disable=not show_progress):
            _run_plan(bridge, record, plan, loaded[plan.name], config, scores, folder)
    tables = causal_tables(folder, plans, random_cells, repeated_key, config)
    _write_outputs(out, tables, model, record, names, shots, config, figures)
    return tables


# ---------------------------------------------------------------------------------- the tables


def _read_cells(folder: Path, cells: Sequence[_Cell], key: str) -> list[dict]:
    from interp.store import read_json

    return [read_json(cell.path(folder, key)) for cell in cells if cell.path(folder, key).exists()]


def _item_table(folder: Path, plans: Sequence[_Plan]) -> pd.DataFrame:
    """One row per (task, shots, ablation, ranking, percent, draw, item), with the clean values beside."""
    frames = []
    for plan in plans:
        rows = _read_cells(folder / "cells", plan.cells, plan.key)
        clean = next((row for row in rows if row["ranking"] == CLEAN), None)
        if clean is None:
            continue
        for row in rows:
            if row["ranking"] == CLEAN:
                continue
            frames.append(pd.DataFrame({
                "task": plan.label, "shots": plan.shots, "ablation": row["ablation"], "ranking": row["ranking"],
                "percent": float(row["percent"]), "k": row["k"], "draw": row["draw"],
                                        "item": np.arange(len(row["correct"])),
                "correct": row["correct"], "gold_logprob": row["gold_logprob"],
                "clean_correct": clean["correct"], "clean_gold_logprob": clean["gold_logprob"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _paired_row(ablated: np.ndarray, clean: np.ndarray, strata: np.ndarray | None, config: CausalConfig) -> dict:
    from interp.stats import paired_difference

    result = paired_difference(ablated, clean, strata=strata, n_resamples=config.n_resamples)
    return {"change": result.mean_difference, "ci_low": result.ci_low, "ci_high": result.ci_high,
            "p_value": result.p_value,
            "interval_method": result.method, "n": result.n}


_METRICS = {"accuracy": ("correct", "clean_correct"), "gold_logprob": ("gold_logprob", "clean_gold_logprob")}


def _pooled(items: pd.DataFrame) -> pd.DataFrame:
    """Every (shots) slice again under task ``all``: items of every task together, strata = task."""
    return pd.concat([items, items.assign(stratum=items["task"], task="all")], ignore_index=True)


def _effects(items: pd.DataFrame, config: CausalConfig) -> pd.DataFrame:
    rows = []
    keys = ["task", "shots", "ablation", "ranking", "percent", "k", "draw"]
    for values, part in _pooled(items.assign(stratum=None)).groupby(keys, sort=True, dropna=False):
        strata = part["stratum"].to_numpy() if values[0] == "all" else None
        for metric, (column, clean) in _METRICS.items():
            rows.append({**dict(zip(keys, values, strict=True)), "metric": metric, "ablated": part[column].mean(),
                         "clean": part[clean].mean(),
                         **_paired_row(part[column].to_numpy(), part[clean].to_numpy(), strata, config)})
    return pd.DataFrame(rows)


def _versus_random(items: pd.DataFrame, effects: pd.DataFrame, config: CausalConfig) -> pd.DataFrame:
    """Each ranking's change beside the random band, and the paired ranking-minus-random difference over items."""
    keys = ["task", "shots", "ablation", "percent"]
    changes: dict[tuple, list[dict]] = {}
    for row in effects.to_dict("records"):
        changes.setdefault((*(row[key] for key in keys), row["ranking"], row["metric"]), []).append(row)
    rows = []
    for values, part in _pooled(items.assign(stratum=None)).groupby(keys, sort=True):
        random = part[part["ranking"] == "random"]
        if random.empty:
            continue
        for ranking, chosen in part[part["ranking"] != "random"].groupby("ranking"):
            chosen = chosen.sort_values(["task", "item"])
            strata = chosen["stratum"].to_numpy() if values[0] == "all" else None
            order = pd.MultiIndex.from_frame(chosen[["task", "item"]])
            for metric, (column, _) in _METRICS.items():
                average = random.groupby(["task", "item"])[column].mean().reindex(order).to_numpy()  # mean over draws
                band = np.array([row["change"] for row in changes[(*values, "random", metric)]])
                own = changes[(*values, ranking, metric)][0]
                difference = _paired_row(chosen[column].to_numpy(), average, strata, config)
                rows.append({**dict(zip(keys, values, strict=True)), "ranking": ranking, "k": int(chosen["k"].iloc[0]),
                             "metric": metric,
                             "change": own["change"], "change_ci_low": own["ci_low"], "change_ci_high": own["ci_high"],
                             "random_mean": band.mean(), "random_sd": band.std(ddof=1) if len(band) > 1 else np.nan,
                             "random_min": band.min(), "random_max": band.max(), "n_draws": len(band),
                             "difference": difference["change"], "difference_ci_low": difference["ci_low"],
                             "difference_ci_high": difference["ci_high"], "difference_p_value": difference["p_value"],
                             "difference_method": difference["interval_method"], "n": difference["n"]})
    return _with_task_q_values(pd.DataFrame(rows))


def _with_task_q_values(table: pd.DataFrame) -> pd.DataFrame:
    """``difference_q_value``: Benjamini-Hochberg over the tasks of each (shots, ablation, percent, ranking,
    metric), since a per-task verdict is one of as many tests as tasks (NaN on the pooled row ``all``)."""
    from interp.stats import bh_qvalues

    if table.empty:
        return table
    table = table.assign(difference_q_value=np.nan)
    per_task = table["task"] != "all"
    for _, part in table[per_task].groupby(["shots", "ablation", "percent", "ranking", "metric"]):
        table.loc[part.index, "difference_q_value"] = bh_qvalues(part["difference_p_value"].to_numpy())
    return table


_REPEATED_METRICS = ("loss_repeats_later", "loss_repeat_1")


def _repeated_table(folder: Path, plans: Sequence[_Plan], random_cells: Sequence[_Cell], repeated_key: str,
                    config: CausalConfig) -> pd.DataFrame:
    """Change of the loss on repeats 2..R (and on repeat 1) per cell, paired over sequences, and vs the random band."""
    shared = _read_cells(folder, random_cells, repeated_key)
    clean = next((row for row in shared if row["ranking"] == CLEAN), None)
    if clean is None:
        return pd.DataFrame()
    cells = [row for row in shared if row["ranking"] != CLEAN]
    for plan in plans:
        cells += [dict(row, scope=f"{plan.label}__{plan.shots}shot") for row in _read_cells(folder, plan.repeated_cells,
                                                                                              plan.repeated_key)]
    random: dict[tuple, list[np.ndarray]] = {}
    for row in cells:
        if row["ranking"] == "random":
            for metric in _REPEATED_METRICS:
                random.setdefault((row["ablation"], float(row["percent"]), metric), []).append(np.asarray(row[metric]))
    rows = []
    for row in cells:
        for metric in _REPEATED_METRICS:
            ablated, reference = np.asarray(row[metric]), np.asarray(clean[metric])
            entry = {"scope": row["scope"], "ablation": row["ablation"], "ranking": row["ranking"],
                     "percent": float(row["percent"]), "k": row["k"], "draw": row["draw"], "metric": metric,
                     "ablated": ablated.mean(), "clean": reference.mean(),
                     **_paired_row(ablated, reference, None, config)}
            draws = random.get((row["ablation"], float(row["percent"]), metric))
            if row["ranking"] != "random" and draws:
                difference = _paired_row(ablated, np.mean(draws, axis=0), None, config)
                entry.update(difference=difference["change"], difference_ci_low=difference["ci_low"],
                             difference_ci_high=difference["ci_high"], difference_p_value=difference["p_value"])
            rows.append(entry)
    return _with_random_band(pd.DataFrame(rows))


def _with_random_band(table: pd.DataFrame) -> pd.DataFrame:
    """The repeated-token rows with the band of their random draws (mean, sd, min, max, count) beside each."""
    band = (table[table["ranking"] == "random"].groupby(["ablation", "percent", "metric"])["change"]
            .agg(random_mean="mean", random_sd="std", random_min="min", random_max="max",
                 n_draws="count").reset_index())
    return table.merge(band, on=["ablation", "percent", "metric"], how="left")


def causal_tables(folder: Path, plans: Sequence[_Plan], random_cells: Sequence[_Cell], repeated_key: str,
                  config: CausalConfig) -> dict[str, pd.DataFrame]:
    """The tidy tables of every finished cell of ``plans`` (see the module docstring)."""
    items = _item_table(folder, plans)
    if items.empty:
        return {}
    effects = _effects(items, config)
    tables = {"causal_items": items, "causal_effects": effects,
              "causal_vs_random": _versus_random(items, effects, config)}
    repeated = _repeated_table(folder / "repeated", plans, random_cells, repeated_key, config)
    if not repeated.empty:
        tables["causal_repeated"] = repeated
    return tables


ESTIMATORS = {
    "change": "mean over items of (ablated - unablated), paired by item",
    "accuracy_interval": "one task: exact McNemar p-value and Tango's score interval (interp.stats.paired_difference, "
                         "mcnemar)",
    "logprob_interval": "percentile bootstrap over items (interp.stats.paired_difference, bootstrap)",
    "pooled_over_tasks": "task 'all': mean over tasks of each task's mean change; items resampled within their task",
    "random_band": "mean, sd (ddof=1), min and max over random draws of the mean change",
    "ranking_minus_random": "paired over items: ranking's value minus the mean over draws of the random sets' value; "
                            "bootstrap interval (McNemar when both are 0/1)",
    "per_task_q_value": "difference_q_value: Benjamini-Hochberg over the tasks of one (shots, ablation, percent, "
                        "ranking, metric)",
    "repeated_tokens": "mean loss per sequence on repeats 2..4 (and on repeat 1), paired over sequences, bootstrap",
    "head_count": "k = max(1, round-half-up(percent x n_heads / 100)); top-k by score, ties by earlier head",
}


def _write_outputs(out: Path, tables: dict[str, pd.DataFrame], model: str, record: Any, names: Sequence[str],
                   shots: Sequence[int], config: CausalConfig, figures: bool, **extra: Any) -> None:
    from interp.store import read_json, run_metadata, write_json, write_table

    for name, table in tables.items():
        write_table(table, out / name)
    meta_path = out / "causal.json"
    previous = read_json(meta_path) if meta_path.exists() else {}
    write_json(run_metadata(record if record is not None else previous.get("model", model), model_spec=model,
                            tasks=list(names), shots=list(shots), config=asdict(config), estimators=ESTIMATORS,
                            sequences=asdict(config.sequences()), confidence=0.95, **extra), meta_path)
    if figures and tables:
        from interp.output.catalogue import causal_entries
        from interp.output.figures import save_figures

        entries = causal_entries(tables.get("causal_vs_random"), tables.get("causal_repeated"))
        save_figures({out / "figures" / entry.name: entry.figure for entry in entries}, ("html", "png"))  # one browser


# ------------------------------------------------------------------------------ merging runs

# Settings two runs must share for their items to be the same prompts and their statistics comparable;
# percents, rankings and random draws may differ (that is what a split run splits).
_SHARED_SETTINGS = ("max_items", "seed", "n_choices", "repeat_seeds", "n_resamples")
_ITEM_KEYS = ["task", "shots", "ablation", "ranking", "percent", "draw", "item"]
_REPEATED_KEYS = ["scope", "ablation", "ranking", "percent", "draw", "metric"]
_LOGPROB_TOLERANCE = 1e-3  # the same cell from two runs: batching changes only the rounding


def _merged_config(sources: Sequence[Path], metadata: Sequence[dict]) -> CausalConfig:
    first = metadata[0]["config"]
    for folder, meta in zip(sources[1:], metadata[1:], strict=True):
        if meta.get("model_spec") != metadata[0].get("model_spec"):
            raise InterpError(f"--merge: {folder} is a run of {meta.get('model_spec')!r}, {sources[0]} of "
                              f"{metadata[0].get('model_spec')!r}; merge runs of one model")
        for name in _SHARED_SETTINGS:
            if meta["config"][name] != first[name]:
                raise InterpError(f"--merge: {folder} ran with {name}={meta['config'][name]!r}, {sources[0]} with "
                                  f"{first[name]!r}; only percents, rankings and random draws may differ")
    union = lambda name: tuple(dict.fromkeys(v for meta in metadata for v in meta["config"][name]))  # noqa: E731
    settings = {name: first[name] for name in _SHARED_SETTINGS}
    return CausalConfig(percents=union("percents"), ablations=union("ablations"), rankings=union("rankings"),
                        n_random=max(meta["config"]["n_random"] for meta in metadata), **settings)


def _deduplicated(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The item rows of every run, each cell once; a cell two runs both hold must agree."""
    items = pd.concat(frames, ignore_index=True)
    for columns in (_ITEM_KEYS, ["task", "shots", "item"]):  # the same cell, and the same unablated model
        values = ["correct", "gold_logprob"] if columns is _ITEM_KEYS else ["clean_correct", "clean_gold_logprob"]
        grouped = items.astype({name: float for name in values}).groupby(columns)[values]
        spread = grouped.max() - grouped.min()
        bad = spread[(spread[values[0]] != 0) | (spread[values[1]] > _LOGPROB_TOLERANCE)]
        if not bad.empty:
            where = dict(zip(columns, bad.index[0], strict=True))
            raise InterpError(f"--merge: the runs disagree on {where} ({', '.join(values)}): they were not made "
                              f"from the same model and items; merge runs of one model, task set and seed")
    return items.drop_duplicates(_ITEM_KEYS).reset_index(drop=True)


def merge_causal(sources: Sequence[Path], out: Path, *, figures: bool = True) -> dict[str, pd.DataFrame]:
    """One set of causal-test tables from runs split by task, shots, percent or ranking (other sessions, machines).

    Each source is a folder ``interp ablate`` wrote (``causal_items``, ``causal_repeated``,
    ``causal.json``). The item rows are pooled (a cell two runs share must agree), and every
    statistic is recomputed from them, so the result equals one run over the union.
    """
    from interp.store import read_json, read_table, read_table_if_present

    sources = [Path(folder) for folder in sources]
    if len(sources) < 2:
        raise InterpError(f"--merge: give at least two run folders, got {len(sources)}")
    missing = [str(folder) for folder in sources if not (folder / "causal.json").exists()]
    if missing:
        raise InterpError(f"--merge: {', '.join(missing)} holds no causal.json (not an `interp ablate` run)")
    metadata = [read_json(folder / "causal.json") for folder in sources]
    config = _merged_config(sources, metadata)
    items = _deduplicated([read_table(folder / "causal_items") for folder in sources])
    effects = _effects(items, config)
    tables = {"causal_items": items, "causal_effects": effects, "causal_vs_random": _versus_random(items, effects,
                                                                                                   config)}
    repeated = [table for folder in sources if (table := read_table_if_present(folder / "causal_repeated")) is not None]
    if repeated:
        rows = pd.concat(repeated, ignore_index=True).drop_duplicates(_REPEATED_KEYS)
        rows = rows.drop(columns=[column for column in rows if column.startswith("random_") or column == "n_draws"])
        tables["causal_repeated"] = _with_random_band(rows)
    record = next((meta["model"] for meta in metadata if isinstance(meta.get("model"), dict)), metadata[0]["model"])
    tasks = list(dict.fromkeys(task for meta in metadata for task in meta["tasks"]))
    shots = sorted({k for meta in metadata for k in meta["shots"]})
    parts = [{name: meta[name] for name in ("tasks", "shots")} | {name: meta["config"][name] for name in
                                                                   ("percents", "rankings", "ablations", "n_random")}
             for meta in metadata]
    _write_outputs(Path(out), tables, metadata[0]["model_spec"], record, tasks, shots, config, figures,
                   merged_from=parts)
    return tables
