"""The importance job: one method over (task, shots), each result keyed and saved as it finishes, then combined.

``interp importance`` and :func:`run_importance` write into one results folder:

- ``importance/{task}__{k}shot__{method}.{parquet,csv}`` and ``.json``: one result and its
  metadata, which holds the result's key (the model's weights, dtype and kind of device; the
  task file's content; shots; method; every setting that changes the numbers; the package
  version).  The JSON is written last: a result counts as done when its JSON's key is the one
  wanted and its table reads; any other stored result of that name is computed again (and said);
- ``importance.{parquet,csv}``, ``task_accuracy`` and ``attribution_vs_ablation``: every result in
  the folder made by this model and version (others are left out, and said), so runs of several
  methods, tasks or shots accumulate without mixing models.

>>> from interp.importance.job import run_importance                  # doctest: +SKIP
>>> result = run_importance("toy-attn-2l", "antonyms", [0, 1], "gradient", "results/toy-attn-2l")  # doctest: +SKIP
>>> result.tables["importance"].query("metric == 'gradient'").nlargest(3, "value")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from interp.errors import InterpError, check_choice
from interp.importance.methods import (
    METHODS,
    ImportanceConfig,
    ablation_steps,
    attribution_agreement,
    importance_table,
)
from interp.jobs import JobResult, ModelHandle, WorkEstimate, check_shots, check_task_labels, method_version, task_key
from interp.store import (
    DamagedResult,
    key_difference,
    read_json_if_intact,
    read_table,
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

__all__ = ["BATCHING_FIELDS", "merge_importance", "result_stem", "run_importance"]

BATCHING_FIELDS = ("batch_size", "ablations_per_forward")  # batching: changes the numbers' rounding only
_ABLATION_FIELDS = ("ablations", "layers")  # settings only the exact ablation reads
_ACCURACY_COLUMNS = ("task", "shots", "method", "estimator", "prepend_bos", "accuracy", "accuracy_ci_low",
                     "accuracy_ci_high", "accuracy_interval_method", "accuracy_norm", "loss", "n_items", "chance")


def result_stem(out: Path, task: str, shots: int, method: str) -> Path:
    """``out/importance/{task}__{shots}shot__{method}``: one result's files, without suffix."""
    safe = "".join(character if character.isalnum() or character in "-_" else "_" for character in task)
    return Path(out) / "importance" / f"{safe}__{shots}shot__{method}"


def _result_key(model_key: dict[str, str], task: Task, shots: int, method: str, config: ImportanceConfig
                ) -> dict[str, Any]:
    settings = {name: value for name, value in asdict(config).items() if name not in BATCHING_FIELDS
                and (method == "ablation" or name not in _ABLATION_FIELDS)}
    return {"job": "importance", "model": model_key, "task": task_key(task), "shots": shots, "method": method,
            "settings": settings, "version": method_version()}


def _is_done(stem: Path, key: dict[str, Any], echo: Callable[[str], None]) -> bool:
    """Whether the stored result under ``stem`` is intact and made by ``key``; says why when one is recomputed."""
    metadata = read_json_if_intact(stem.with_suffix(".json"))
    if metadata is None:
        return False
    difference = key_difference(metadata.get("key"), key)
    if difference is None:
        try:
            read_table(stem)
            return True
        except DamagedResult as error:
            difference = str(error)
    echo(f"computing {stem.name} again: {difference}")
    return False


def _compute(bridge: "TransformerBridge", record: "ModelRecord", todo: list[tuple[Task, int, dict]], method: str,
             config: ImportanceConfig, out: Path, *, progress: bool, echo: Callable[[str], None],
             confirm: bool) -> None:
    """Score each (task, shots) of ``todo`` and save it at once: table first, the keyed JSON last."""
    from tqdm.auto import tqdm

    from interp.tasks.evaluation import encode_prompts

    prepared = [(task, k, key, encode_prompts(bridge.tokenizer, build_prompts(task, k, config.prompt_config()),
                                              bridge.cfg.n_ctx, task.name)) for task, k, key in todo]
    n_layers = int(bridge.cfg.n_layers) if config.layers is None else len(config.layers)

    def steps(encoded) -> int:  # progress steps of one result (ablation: one per layer, kind and batch)
        return ablation_steps(encoded, config, n_layers) if method == "ablation" else 1

    def work(encoded) -> int:  # proportional to its time: forwards over its sequences
        return steps(encoded) * (1 if method == "ablation" else encoded.n_sequences)

    estimate = WorkEstimate(f"{method} importance of {len(todo)} (task, shots)",
                            sum(work(item[3]) for item in prepared), confirm, echo)
    with tqdm(total=sum(steps(item[3]) for item in prepared), disable=not progress, desc=f"{method} importance",
              unit="step") as bar:
        for task, k, key, encoded in prepared:
            bar.set_postfix_str(f"{task.name} {k}-shot")
            started = time.perf_counter()
            table, summary = importance_table(bridge, encoded, method, config, progress=bar.update)
            for position, (column, value) in enumerate((("model", record.name), ("task", task.name), ("shots", k),
                                                        ("method", method))):
                table.insert(position, column, value)
            stem = result_stem(out, task.name, k, config.result_label(method))  # other estimators sit beside it
            write_table(table, stem)
            write_json(run_metadata(record, key=key, task=task.name, source=task.source, shots=k, method=method,
                                    chance=task.chance(config.n_choices), **summary, config=asdict(config),
                                    seconds=time.perf_counter() - started), stem.with_suffix(".json"))
            estimate.done(work(encoded))


def _combine(out: Path, model_key: dict[str, str], echo: Callable[[str], None]) -> dict[str, pd.DataFrame]:
    """The folder's results of this model and version: importance rows, task accuracy, attribution agreement."""
    frames, accuracy, other = [], [], []
    for path in sorted((out / "importance").glob("*.json")):
        metadata = read_json_if_intact(path)
        key = (metadata or {}).get("key") or {}
        if key.get("model") != model_key or key.get("version") != method_version():
            other.append(path.stem)
            continue
        try:
            frames.append(read_table(path.with_suffix("")))
        except DamagedResult as error:
            echo(f"left out {path.stem}: {error}")
            continue
        accuracy.append({column: metadata.get(column) for column in _ACCURACY_COLUMNS})
    if other:
        echo(f"left out {len(other)} result(s) in {out / 'importance'} made by another model or version "
             f"(e.g. {other[0]}); the combined tables hold {model_key['name']}'s only")
    if not frames:
        raise InterpError(f"{out / 'importance'} holds no intact result of {model_key['name']}; run the command again")
    tables = {"importance": pd.concat(frames, ignore_index=True), "task_accuracy": pd.DataFrame(accuracy)}
    agreement = attribution_agreement(tables["importance"])
    if not agreement.empty:
        tables["attribution_vs_ablation"] = agreement
    return tables


def run_importance(model: "str | tuple[TransformerBridge, ModelRecord]", tasks: str | Sequence[str],
                   shots: Sequence[int], method: str, out: Path, config: ImportanceConfig = ImportanceConfig(), *,
                   device: str = "auto", dtype: str = "float32", device_map: Any = None, progress: bool = True,
                   echo: Callable[[str], None] = print, confirm: bool = False, executor: "Executor | None" = None
                   ) -> JobResult:
    """Importance of every head and FFN by ``method`` for each (task, shots); reuse what the folder holds; combine.

    Returns the combined tables (``importance``, ``task_accuracy``, ``attribution_vs_ablation``
    when both estimates are there); no figures (``interp crossref`` draws them).
    """
    check_choice("method", method, METHODS)
    shots, out, timer = check_shots(shots), Path(out), PhaseTimer()
    loaded = [load_task(name) for name in (resolve_task_names(tasks) if isinstance(tasks, str) else list(tasks))]
    check_task_labels(loaded)
    with results_folder(out, echo):
        handle = ModelHandle(model, device, dtype, device_map)
        with timer.phase("load"):
            model_key = handle.key
        todo = []
        for task in loaded:
            for k in shots:
                key = _result_key(model_key, task, k, method, config)
                build_prompts(task, k, config.prompt_config())  # every input is checked before the model loads
                if not _is_done(result_stem(out, task.name, k, config.result_label(method)), key, echo):
                    todo.append((task, k, key))
        if todo and executor is not None and executor.distributed:  # Ray tasks, each (task, shots) one unit
            from interp.reach.executors import worker_echo

            with timer.phase("score"):
                executor.run(handle, todo, functools.partial(_compute, method=method, config=config, out=out,
                                                             progress=False, echo=worker_echo, confirm=True), echo=echo)
        elif todo:
            with timer.phase("load"):
                bridge, record = handle.load()
            with timer.phase("score"):
                _compute(bridge, record, todo, method, config, out, progress=progress, echo=echo, confirm=confirm)
        with timer.phase("write"):
            tables = _combine(out, model_key, echo)
            for name, table in tables.items():
                write_table(table, out / name)
        metadata = run_metadata(model_key, job="importance", method=method, tasks=[task.name for task in loaded],
                                shots=shots, config=asdict(config), computed=len(todo), timing=timer.as_dict())
        write_json(metadata, out / "importance.json")
    paths = [out / f"{name}.{suffix}" for name in tables for suffix in ("parquet", "csv")] + [out / "importance.json"]
    echo(f"wrote {out / 'importance.parquet'} ({len(tables['importance'])} rows) and {out / 'task_accuracy.parquet'}")
    echo(timer.summary())
    return JobResult(tables, paths=paths, metadata=metadata)


_PROMPT_FIELDS = ("max_items", "seed", "n_choices", "prepend_bos")  # what makes two runs' items the same prompts
_ROW_KEYS = ["task", "shots", "method", "estimator", "component", "layer", "head", "metric"]


def merge_importance(sources: Sequence[Path], out: Path, echo: Callable[[str], None] = print) -> JobResult:
    """One folder's combined tables from runs split by task, shots or method (other sessions, machines).

    Each source is a folder ``interp importance`` wrote. The runs must be of one model (same weights'
    identity) and the same items; a row two runs both hold is taken from the first source.
    """
    sources, out = [Path(folder) for folder in sources], Path(out)
    if len(sources) < 2:
        raise InterpError(f"--merge: give at least two run folders, got {len(sources)}")
    metadata = []
    for folder in sources:
        meta = read_json_if_intact(folder / "importance.json")
        if meta is None:
            raise InterpError(f"--merge: {folder} holds no intact importance.json (not an `interp importance` run)")
        metadata.append(meta)
    identity = lambda meta: {name: meta["model"].get(name) for name in ("name", "identity")}  # noqa: E731
    for folder, meta in zip(sources[1:], metadata[1:], strict=True):
        if identity(meta) != identity(metadata[0]):
            raise InterpError(f"--merge: {folder} holds {identity(meta)}, {sources[0]} {identity(metadata[0])}; "
                              f"merge runs of one model")
        for name in _PROMPT_FIELDS:
            if meta["config"].get(name) != metadata[0]["config"].get(name):
                raise InterpError(f"--merge: {folder} ran with {name}={meta['config'].get(name)!r}, {sources[0]} "
                                  f"with {metadata[0]['config'].get(name)!r}: not the same items")
    importance = pd.concat([read_table(folder / "importance") for folder in sources], ignore_index=True)
    accuracy = pd.concat([read_table(folder / "task_accuracy") for folder in sources], ignore_index=True)
    tables = {"importance": importance.drop_duplicates([key for key in _ROW_KEYS if key in importance],
                                                       ignore_index=True),
              "task_accuracy": accuracy.drop_duplicates(["task", "shots", "method", "estimator"], ignore_index=True)}
    agreement = attribution_agreement(tables["importance"])
    if not agreement.empty:
        tables["attribution_vs_ablation"] = agreement
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        write_table(table, out / name)
    parts = [{name: meta.get(name) for name in ("method", "tasks", "shots")} for meta in metadata]
    meta = run_metadata(metadata[0]["model"], job="importance", method="merged", config=metadata[0]["config"],
                        tasks=list(dict.fromkeys(tables["task_accuracy"]["task"])),
                        shots=sorted(set(tables["task_accuracy"]["shots"].astype(int))), merged_from=parts)
    write_json(meta, out / "importance.json")
    echo(f"merged {len(sources)} runs into {out}: {len(tables['importance'])} importance rows")
    return JobResult(tables, paths=[out / "importance.json"], metadata=meta)
