"""The pruning job: remove the lowest-ranked heads, FFNs or both, for every ranking, percentage, task and shots.

``interp prune heads|ffns|combined`` and :func:`run_pruning` write into one results folder:

- ``pruning/{study}/{setting}/cells/*.json``: one evaluated cell (ranking, head %, FFN %, task,
  shots) each, written as soon as its group of masks is done; a rerun skips the cells on disk;
- ``pruning_rankings``: the own-importance scores the rankings are built from, per setting;
- ``pruning_{study}`` (tidy table), ``pruning_{study}_thresholds``, ``pruning_claims``,
  ``pruning_{study}.json`` (metadata: the key, the settings, the phases' times) and figures.

Everything that makes a cell is in its path: ``setting`` ends in a digest of the model (weights,
dtype, kind of device), of every setting that changes the numbers and of the package version;
a cell's name carries its task's content digest, and the rankings that depend on more than the
task carry a digest of what they read (the run's task set for the cross-task rankings, the
induction scores for ``prefix_matching`` and ``copying``).  So a folder shared by two models or
two task files of one name never hands one's cells to the other.

>>> from interp.pruning.job import run_pruning                       # doctest: +SKIP
>>> result = run_pruning("heads", "toy-attn-2l", "antonyms", [0], "results/toy-attn-2l")  # doctest: +SKIP
>>> result.tables["pruning_heads_thresholds"]                        # doctest: +SKIP
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from interp.errors import InterpError, check_choice
from interp.jobs import (
    FIGURE_FORMATS,
    JobResult,
    ModelHandle,
    WorkEstimate,
    check_shots,
    check_task_labels,
    draw_figures,
    method_version,
    task_key,
)
from interp.pruning.components import (
    INDUCTION_RANKINGS,
    STUDIES,
    PruningConfig,
    mask_summaries,
    masked_scores,
    pruning_mask,
)
from interp.pruning.rankings import Rankings, component_scores, ranking_rows
from interp.store import (
    DamagedResult,
    cache_key,
    read_json_if_intact,
    read_table_if_present,
    results_folder,
    run_metadata,
    write_json,
    write_table,
)
from interp.tasks.prompts import Task, build_prompts, load_task, resolve_task_names
from interp.timing import PhaseTimer

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.loading import ModelRecord
    from interp.reach.executors import Executor

__all__ = ["run_pruning"]

COMPONENTS = {"heads": ("head",), "ffns": ("ffn",), "combined": ("head", "ffn")}
_CROSS_TASK = ("aggregate", "most_correlated", "least_correlated")  # rankings that depend on the run's task set
_NOT_IN_KEY = ("percents", "head_percents", "ffn_percents", "rankings", "n_random",  # name the cells instead
               "tolerance",  # read only when thresholds are drawn from the cells
               "batch_size", "masks_per_forward")  # batching: changes the numbers' rounding only
_RANKING_COLUMNS = ["task", "task_sha256", "shots", "component", "layer", "head", "value", "tiebreak", "setting"]


def _safe(text: Any) -> str:
    return "".join(character if character.isalnum() or character in "-_" else "_" for character in str(text))


@dataclass
class _Plan:
    """What one run of a study does: its tasks, rankings, cells and the cells not on disk yet."""

    study: str
    tasks: list[Task]
    shots: list[int]
    rankings: tuple[str, ...]
    setting: str
    key: dict[str, Any]
    induction: pd.DataFrame | None
    cells: dict[tuple, Path] = field(default_factory=dict)  # (task, shots, ranking, head %, FFN %) -> file

    @property
    def labels(self) -> list[str]:
        return [task.name for task in self.tasks]

    def todo(self) -> list[tuple]:
        return [cell for cell, path in self.cells.items() if read_json_if_intact(path) is None]


# --------------------------------------------------------------------------- plan


def _induction_scores(results: Path, rankings: tuple[str, ...], explicit: bool, model_key: dict[str, str],
                      echo: Callable[[str], None]) -> tuple[pd.DataFrame | None, tuple[str, ...]]:
    """The induction scores the induction rankings read, checked to be this model's; or those rankings left out."""
    wanted = [name for name in rankings if name in INDUCTION_RANKINGS]
    if not wanted:
        return None, rankings
    table, problem = read_table_if_present(results / "induction_scores"), None
    if table is None:
        problem = f"there are no induction_scores in {results}"
    else:
        stored = ((read_json_if_intact(results / "induction_metadata.json") or {}).get("key") or {}).get("model")
        made_by = stored["identity"] if stored else None
        other_model = made_by != model_key["identity"] if made_by else set(table["model"]) != {model_key["name"]}
        if other_model:
            problem = (f"the induction_scores in {results} were made by {', '.join(map(str, set(table['model'])))}"
                       f"{f' ({made_by})' if made_by else ''}, not by {model_key['name']} ({model_key['identity']})")
    if problem is None:
        return table, rankings
    if explicit:
        raise InterpError(f"ranking {wanted[0]!r} needs this model's induction scores, but {problem}; "
                          f"run `interp induction --model {model_key['name']} --out {results}` first")
    echo(f"left out the rankings {', '.join(wanted)}: {problem} (run `interp induction` into it to have them)")
    return None, tuple(name for name in rankings if name not in INDUCTION_RANKINGS)


def _check_rankings(study: str, rankings: tuple[str, ...], labels: list[str]) -> None:
    if study == "ffns" and any(name in INDUCTION_RANKINGS for name in rankings):
        bad = next(name for name in rankings if name in INDUCTION_RANKINGS)
        raise InterpError(f"ranking {bad!r} scores heads only; FFN studies take own, aggregate, most_correlated, "
                          "least_correlated, task:NAME or random")
    for name in rankings:
        if name.startswith("task:") and name.removeprefix("task:") not in labels:
            raise InterpError(f"ranking {name!r}: task {name.removeprefix('task:')!r} is not among the run's tasks "
                              f"({', '.join(labels)})")


def _ranking_tag(ranking: str, plan_tasks: list[Task], induction: pd.DataFrame | None) -> str:
    """The ranking's part of a cell name: with a digest of what it reads beyond the task itself."""
    if ranking in _CROSS_TASK:
        return f"{ranking}-{cache_key(sorted(task_key(task)['sha256'] for task in plan_tasks))[:8]}"
    if ranking.startswith("task:"):  # another task's ranking: its items too
        other = next(task for task in plan_tasks if task.name == ranking.removeprefix("task:"))
        return f"{ranking}-{task_key(other)['sha256'][:8]}"
    if ranking in INDUCTION_RANKINGS and induction is not None:
        rows = induction[induction["metric"] == ranking].sort_values(["layer", "head"])
        return f"{ranking}-{cache_key(rows[['layer', 'head', 'mean']].astype(float).values.tolist())[:8]}"
    return ranking


def _plan(study: str, tasks: str | Sequence[str], shots: Sequence[Any], out: Path, results: Path, config: PruningConfig,
          model_key: dict[str, str], echo: Callable[[str], None]) -> _Plan:
    """Check every input, key the run, name every cell; nothing is computed here."""
    check_choice("study", study, STUDIES)
    shots = check_shots(shots)
    loaded = [load_task(name) for name in (resolve_task_names(tasks) if isinstance(tasks, str) else list(tasks))]
    labels = check_task_labels(loaded)
    grid = config.grid(study)
    rankings = config.study_rankings(study)
    if len(labels) == 1:  # no other task to transfer from
        rankings = tuple(name for name in rankings if name not in ("most_correlated", "least_correlated"))
    _check_rankings(study, rankings, labels)
    induction, rankings = _induction_scores(results, rankings, config.rankings is not None, model_key, echo)
    for task in loaded:  # every prompt is built (and checked) before the model loads
        for k in shots:
            build_prompts(task, k, config.prompt_config())
    settings = {name: value for name, value in asdict(config).items() if name not in _NOT_IN_KEY}
    key = {"job": f"pruning_{study}", "model": model_key, "settings": settings, "version": method_version()}
    readable = (f"{config.ablation}_items{config.max_items or 'all'}_choices{config.n_choices}_seed{config.seed}_"
                f"{config.head_importance}_{config.ffn_importance}")
    plan = _Plan(study, loaded, shots, rankings, f"{readable}_{cache_key(key)[:10]}", key, induction)
    cells = out / "pruning" / study / plan.setting / "cells"
    for task in loaded:
        task_part = f"{_safe(task.name)}-{task_key(task)['sha256'][:8]}"
        for k in shots:
            for ranking in rankings:
                tag = _safe(_ranking_tag(ranking, loaded, induction))
                for head, ffn in grid:
                    name = f"{task_part}__{k}shot__{tag}__h{head}_f{ffn}.json"
                    plan.cells[(task.name, k, ranking, head, ffn)] = cells / name
    return plan


# --------------------------------------------------------------------------- compute


def _stored_rankings(stem: Path, echo: Callable[[str], None]) -> pd.DataFrame:
    try:
        table = read_table_if_present(stem)
    except DamagedResult as error:
        echo(f"{error}; its rankings are computed again")
        table = None
    if table is None or not set(_RANKING_COLUMNS) <= set(table.columns):  # absent, or from before settings were keyed
        return pd.DataFrame(columns=_RANKING_COLUMNS)
    return table


def _rankings(plan: _Plan, bridge: "TransformerBridge", encoded: dict, means: dict, config: PruningConfig, out: Path,
              progress: bool, echo: Callable[[str], None]) -> Rankings:
    """Own-importance scores of every (task, shots), computed where ``pruning_rankings`` lacks them, then resolvable."""
    from tqdm.auto import tqdm

    stem, digests = out / "pruning_rankings", {task.name: task_key(task)["sha256"] for task in plan.tasks}
    table = _stored_rankings(stem, echo)
    mine = table[(table["setting"] == plan.setting) & table["task"].map(digests).eq(table["task_sha256"])]
    def stored(key: tuple, part: str) -> bool:
        return not mine[(mine["task"] == key[0]) & (mine["shots"] == key[1]) & (mine["component"] == part)].empty

    missing = {key: [part for part in COMPONENTS[plan.study] if not stored(key, part)] for key in encoded}
    needed = [key for key, parts in missing.items() if parts]
    for key in tqdm(needed, desc="importance rankings", disable=not progress or not needed):
        rows = ranking_rows(*key, component_scores(bridge, encoded[key], config, means.get(key), missing[key]))
        rows = rows.assign(task_sha256=digests[key[0]], setting=plan.setting)[_RANKING_COLUMNS]
        mine = pd.concat([mine, rows], ignore_index=True) if len(mine) else rows
        others = _stored_rankings(stem, echo)
        others = others[~((others["setting"] == plan.setting) & others["task"].map(digests).eq(others["task_sha256"]))]
        write_table(pd.concat([others, mine], ignore_index=True) if len(others) else mine, stem)
    n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
    return Rankings(mine, {"head": (n_layers, n_heads), "ffn": (n_layers,)}, plan.induction)


def _masks(ranks: tuple, percents: list[tuple], n_layers: int, n_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    head_rank, ffn_rank = ranks
    heads = torch.stack([torch.from_numpy(pruning_mask(head_rank[0], head, head_rank[1])) if head_rank
                         else torch.zeros(n_layers, n_heads, dtype=torch.bool) for head, _ in percents])
    ffns = torch.stack([torch.from_numpy(pruning_mask(ffn_rank[0], ffn, ffn_rank[1])) if ffn_rank
                        else torch.zeros(n_layers, dtype=torch.bool) for _, ffn in percents])
    return heads, ffns


def _compute(plan: _Plan, todo: list[tuple], bridge: "TransformerBridge", record: "ModelRecord", config: PruningConfig,
             out: Path, *, progress: bool, echo: Callable[[str], None], confirm: bool) -> None:
    """Evaluate the cells of ``todo``, grouped by (task, shots, ranking); each cell saved as its group finishes.

    A group with any cell missing is evaluated whole, so its masks share forwards exactly as in an
    uninterrupted run (the stacked copies of a forward change the numbers' last bits).
    """
    from tqdm.auto import tqdm

    from interp.importance.methods import activation_means
    from interp.tasks.evaluation import count_batches, encode_prompts

    n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
    encoded = {(task.name, k): encode_prompts(bridge.tokenizer, build_prompts(task, k, config.prompt_config()),
                                              bridge.cfg.n_ctx, task.name) for task in plan.tasks for k in plan.shots}
    means = {key: activation_means(bridge, value, config.batch_size) for key, value in encoded.items()} \
        if config.ablation == "mean" else {}
    ranker = _rankings(plan, bridge, encoded, means, config, out, progress, echo)
    missing = {cell[:3] for cell in todo}
    groups: dict[tuple, list] = {}
    for label, k, ranking, head, ffn in plan.cells:
        if (label, k, ranking) in missing:
            groups.setdefault((label, k, ranking), []).append((head, ffn))
    batches = {key: count_batches(value, config.batch_size, share_context=True) for key, value in encoded.items()}
    estimate = WorkEstimate(f"pruning {plan.study}: {len(todo)} cells", sum(batches[key[:2]] * len(cells) for key, cells
                                                                            in groups.items()), confirm, echo)
    with tqdm(total=sum(batches[key[:2]] for key in groups), disable=not progress, desc=f"pruning {plan.study}",
              unit="batch") as bar:
        for (label, k, ranking), percents in groups.items():
            bar.set_postfix_str(f"{label} {k}-shot {ranking}")
            started = time.perf_counter()
            parts = COMPONENTS[plan.study]
            ranks = tuple(ranker.resolve(ranking, label, k, part, plan.labels) if part in parts else None
                          for part in ("head", "ffn"))
            if any(rank is None for rank, part in zip(ranks, ("head", "ffn"), strict=True) if part in parts):
                bar.update(batches[(label, k)])  # e.g. cross-task rankings with one task
                continue
            head_masks, ffn_masks = _masks(ranks, percents, n_layers, n_heads)
            sums = masked_scores(bridge, encoded[(label, k)], head_masks, ffn_masks, means.get((label, k)),
                                 config.batch_size, config.masks_per_forward, progress=bar.update)
            seconds = (time.perf_counter() - started) / len(percents)
            summaries = mask_summaries(sums, encoded[(label, k)])
            for (head, ffn), summary, head_mask, ffn_mask in zip(percents, summaries, head_masks, ffn_masks,
                                                                  strict=True):
                write_json({"model": record.name, "study": plan.study, "ranking": ranking,
                            "ranking_source": (ranks[0] or ranks[1])[2], "task": label, "shots": k,
                            "head_percent": head, "ffn_percent": ffn, "heads_removed": int(head_mask.sum()),
                            "ffns_removed": int(ffn_mask.sum()),
                            "ablation": config.ablation, **summary, "seconds": seconds},
                           plan.cells[(label, k, ranking, head, ffn)])
            estimate.done(batches[(label, k)] * len(percents))


# --------------------------------------------------------------------------- write and draw


def _tables(plan: _Plan, config: PruningConfig) -> dict[str, pd.DataFrame]:
    from interp.pruning.thresholds import paired_effects, threshold_table

    name = f"pruning_{plan.study}"
    table = pd.DataFrame([cell for path in plan.cells.values() if (cell := read_json_if_intact(path)) is not None])
    if table.empty:
        raise InterpError(f"no {plan.study} pruning cell could be evaluated (rankings {', '.join(plan.rankings)}); "
                          "give more tasks or other rankings")
    table = table.sort_values(["ranking", "task", "shots", "head_percent", "ffn_percent"]).reset_index(drop=True)
    tables = {name: table}
    # every pruned cell against the unpruned one on the same items (a paired interval; NaN for cells without items)
    tables[f"{name}_effects"] = paired_effects(table, ("head_percent", "ffn_percent"))
    if plan.study != "combined":
        column = "head_percent" if plan.study == "heads" else "ffn_percent"
        other = "ffn_percent" if column == "head_percent" else "head_percent"
        effects = tables[f"{name}_effects"].drop(columns=[other]).rename(columns={column: "percent"})
        tables[f"{name}_thresholds"] = threshold_table(table.rename(columns={column: "percent"}), "percent",
                                                       config.tolerance, effects)
    return tables


def _figures(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    from interp.output.catalogue import known_pruning_figures

    return {entry.name: entry.figure for name, table in tables.items()
            for entry in known_pruning_figures(name, table) or []}


def run_pruning(study: str, model: "str | tuple[TransformerBridge, ModelRecord]", tasks: str | Sequence[str],
                shots: Sequence[Any], out: Path, config: PruningConfig = PruningConfig(), *,
                results: Path | None = None, device: str = "auto", dtype: str = "float32",
                device_map: Any = None, figures: bool = True,
                progress: bool = True, echo: Callable[[str], None] = print, confirm: bool = False,
                executor: "Executor | None" = None) -> JobResult:
    """Sweep (ranking, percentages, task, shots) of one study (plan, evaluate, write, draw); resume where it stopped.

    ``results`` is the folder with ``induction_scores`` for the induction rankings (default ``out``).
    """
    out, timer = Path(out), PhaseTimer()
    results = Path(results or out)
    with results_folder(out, echo):
        handle = ModelHandle(model, device, dtype, device_map)
        with timer.phase("load"):
            model_key = handle.key
        plan = _plan(study, tasks, shots, out, results, config, model_key, echo)
        todo = plan.todo()
        if todo and executor is not None and executor.distributed:
            # Ray tasks of whole (task, shots, ranking) groups; the first alone computes the rankings all read
            from interp.reach.executors import worker_echo

            with timer.phase("compute"):
                executor.run(handle, todo, functools.partial(_compute, plan, config=config, out=out, progress=False,
                                                             echo=worker_echo, confirm=True),
                             group_of=lambda cell: cell[:3], first_alone=True, echo=echo)
        elif todo:
            with timer.phase("load"):
                bridge, record = handle.load()
            with timer.phase("compute"):
                _compute(plan, todo, bridge, record, config, out, progress=progress, echo=echo, confirm=confirm)
        with timer.phase("write"):
            tables = _tables(plan, config)
            for name, table in tables.items():
                write_table(table, out / name)
            from interp.output.claims import claims_table

            claims_table(out)
        with timer.phase("figures"):
            drawn = _figures(tables)
            paths = draw_figures(drawn, out / "figures", figures, FIGURE_FORMATS)
        key = {**plan.key, "tasks": [task_key(task) for task in plan.tasks]}
        metadata = run_metadata(model_key, study=study, tasks=plan.labels, shots=plan.shots,
                                rankings=list(plan.rankings), config=asdict(config), key=key, setting=plan.setting,
                                computed_cells=len(todo), timing=timer.as_dict())
        write_json(metadata, out / f"pruning_{study}.json")
    paths += [out / f"{name}.{suffix}" for name in tables for suffix in ("parquet", "csv")]
    paths.append(out / f"pruning_{study}.json")
    echo(f"wrote {', '.join(tables)} into {out}")
    echo(timer.summary())
    return JobResult(tables, drawn, paths, metadata)

