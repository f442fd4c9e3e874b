"""Layer-dropping and LASER sweeps over a task suite, and the summary of the three pruning claims.

- **Layer dropping** (Gromov et al. 2024, https://arxiv.org/abs/2403.17887): for each block
  size ``n``, drop ``l*(n) .. l*(n) + n - 1`` (smallest angular distance, measured on the task
  prompts or a text sample; :mod:`interp.pruning.layers`) and, as the baseline, the deepest ``n`` layers
  before the final one; evaluate every task and the next-token loss on a text sample. Layers
  are skipped through hooks (:func:`interp.pruning.layers.skip_layer_hooks`); one pruned model is then
  really cut (:func:`interp.pruning.layers.drop_layers`), saved in Hugging Face format, reloaded, and
  compared with the original in parameters, memory and forward time.
- **LASER** (Sharma et al. 2023, https://arxiv.org/abs/2312.13558): every (layer, matrix, rho)
  of a grid; one SVD per matrix serves every rho; the forward resumes at the reduced layer from
  cached clean residuals. The configuration is selected on the first 20% of a task's evaluated
  items (best accuracy, ties by lower loss) and reported on the other 80% beside the
  unmodified model.

Each finished cell is one JSON file; a rerun skips it.  A cell's folder is named by a digest of
everything that makes it (the model's weights, dtype and kind of device; the settings; the
package version; for layer dropping also the tasks' contents and shots, which the distances and
every cell read), and a LASER cell's name carries its task's content digest.

>>> LaserSweepConfig(rhos=(0.5, 1.5))
Traceback (most recent call last):
...
interp.errors.InterpError: rho=1.5 is outside (0, 1]; use a fraction of the full rank such as 0.1
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
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
from interp.losses import next_token_loss
from interp.models.context import model_context
from interp.pruning.thresholds import threshold_table
from interp.store import (
    DamagedResult,
    atomic_directory,
    cache_key,
    read_json,
    read_json_if_intact,
    read_table_if_present,
    results_folder,
    run_metadata,
    write_json,
    write_table,
)
from interp.tasks.evaluation import (
    EncodedPrompts,
    encode_prompts,
    iterate_batches,
    multiple_choice_metrics,
    pad_id_of,
    score_sequences,
    sum_by_row,
    summarise,
    target_logprob_readout,
)
from interp.tasks.prompts import PromptConfig, Task, build_prompts, load_task, resolve_task_names
from interp.timing import PhaseTimer

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.loading import ModelRecord

__all__ = ["LASER_RHOS", "LaserSweepConfig", "LayerSweepConfig", "run_laser_sweep", "run_layer_sweep",
           "select_laser"]

LASER_RHOS = (0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05, 0.01)  # the reference grid (0.005 left out: rank < 3 here)


def _safe(text: Any) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in str(text))


def _tasks(tasks: str | Sequence[str], shots: Sequence[Any], prompt_config: PromptConfig
           ) -> tuple[list[Task], list[int]]:
    """The tasks and shots, checked, and every prompt built once: bad input fails before the model loads."""
    shots = check_shots(shots)
    loaded = [load_task(name) for name in (resolve_task_names(tasks) if isinstance(tasks, str) else list(tasks))]
    check_task_labels(loaded)
    for task in loaded:
        for k in shots:
            build_prompts(task, k, prompt_config)
    return loaded, shots


def _encode(bridge: "TransformerBridge", tasks: list[Task], shots: list[int], prompt_config: PromptConfig
            ) -> dict[tuple[str, int], EncodedPrompts]:
    return {(task.name, k): encode_prompts(bridge.tokenizer, build_prompts(task, k, prompt_config), bridge.cfg.n_ctx,
                                           task.name) for task in tasks for k in shots}


def _settings(config: Any, left_out: Sequence[str]) -> dict[str, Any]:
    return {name: value for name, value in asdict(config).items() if name not in left_out}


def _summary(logprob_sums: torch.Tensor, n_tokens: torch.Tensor, encoded: EncodedPrompts) -> dict[str, float]:
    """Accuracy summary and per-item correctness (``item_correct``), for intervals paired with the unpruned model."""
    from interp.pruning.thresholds import encode_items

    metrics = multiple_choice_metrics(logprob_sums, n_tokens, encoded)
    return {**summarise(metrics), "item_correct": encode_items(metrics["correct"])}


# --------------------------------------------------------------------------- layer dropping


@dataclass(frozen=True)
class LayerSweepConfig:
    """Settings for the layer-dropping sweep."""

    block_sizes: tuple[int, ...] | None = None  # layers dropped; None: 1 .. n_layers - 1
    distance_source: str = "tasks"  # angular distances on the task prompts (tasks) or a text sample (text)
    text_windows: int = 16  # windows of held-out text for the text loss (and distances with source=text)
    text_length: int = 128  # tokens per window
    save_pruned: bool = True  # cut, save, reload and time one pruned model
    tolerance: float | int = 1.0  # accuracy points; also picks the saved model (largest n within it)
    batch_size: int = 8  # sequences per forward
    max_items: int | None = None  # items per task (None: every non-demo item)
    seed: int = 0  # demo split, demonstrations and distractors
    n_choices: int = 4  # candidates for items without fixed choices

    def __post_init__(self) -> None:
        check_choice("distance_source", self.distance_source, ("tasks", "text"))
        for size in self.block_sizes or ():
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise InterpError(f"block size {size!r} must be a positive number of layers")
        for name in ("text_windows", "text_length", "batch_size"):
            if getattr(self, name) < 1:
                raise InterpError(f"{name} must be positive, got {getattr(self, name)}")

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(n_choices=self.n_choices, seed=self.seed, max_items=self.max_items)


def _text_windows(bridge: "TransformerBridge", config: LayerSweepConfig) -> torch.Tensor:
    from interp.toy.dynamics import icl_windows
    from interp.toy.training import read_corpus

    documents = read_corpus()
    held_out = documents[int(0.95 * len(documents)):]  # the tail `interp train` never sees
    length = min(config.text_length, model_context(bridge).tokens)  # never a window longer than the model reads
    return icl_windows(bridge, held_out, length, config.text_windows)


def _text_loss(bridge: "TransformerBridge", windows: torch.Tensor, hooks: list, batch_size: int) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size].to(bridge.cfg.device)
            logits = bridge.run_with_hooks(chunk, fwd_hooks=hooks, return_type="logits").float()
            losses = next_token_loss(logits, chunk)  # (batch, position - 1)
            total, count = total + float(losses.sum()), count + losses.numel()
    return total / count


def _parameter_bytes(model: torch.nn.Module) -> tuple[int, int]:
    parameters = sum(parameter.numel() for parameter in model.parameters())
    memory = sum(tensor.numel() * tensor.element_size() for tensor in [*model.parameters(), *model.buffers()])
    return parameters, memory


def _forward_seconds(model: torch.nn.Module, tokens: torch.Tensor, repeats: int = 3) -> float:
    times = []
    with torch.no_grad():
        model(tokens)  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            model(tokens)
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def _save_pruned_model(spec: str, layers: list[int], out: Path, windows: torch.Tensor, bridge: "TransformerBridge",
                       encoded: EncodedPrompts, batch_size: int) -> dict[str, Any]:
    """Cut ``layers`` from a plain copy of model ``spec``, save it (whole or not at all), reload it; compare."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp.models.loading import load_model, resolve_source
    from interp.pruning.layers import drop_layers, skip_layer_hooks

    source, _ = resolve_source(spec)
    original = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    pruned = drop_layers(original, layers)
    directory = out / "pruned_model"

    def write(folder: Path) -> None:
        pruned.save_pretrained(folder)
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)

    atomic_directory(directory, write, replace=True)
    reloaded = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    sample = windows[: min(8, len(windows))]
    hooked = score_sequences(bridge, encoded, batch_size, skip_layer_hooks(layers))
    bridge_pruned, _ = load_model(str(directory), device=str(bridge.cfg.device))
    loaded = score_sequences(bridge_pruned, encoded, batch_size)
    original_parameters, original_bytes = _parameter_bytes(original)
    pruned_parameters, pruned_bytes = _parameter_bytes(reloaded)
    original_seconds, pruned_seconds = _forward_seconds(original, sample), _forward_seconds(reloaded, sample)
    return {"directory": directory.name, "dropped_layers": layers,
            "n_layers_original": int(original.config.num_hidden_layers),
            "n_layers_pruned": int(reloaded.config.num_hidden_layers),
            "parameters_original": original_parameters, "parameters_pruned": pruned_parameters,
            "memory_bytes_original": original_bytes, "memory_bytes_pruned": pruned_bytes,
            "forward_seconds_original": original_seconds, "forward_seconds_pruned": pruned_seconds,
            "forward_batch": list(sample.shape),
            "max_logprob_difference_reloaded_vs_hooks": float((hooked.logprob_sum - loaded.logprob_sum).abs().max())}


def _layer_distances(bridge: "TransformerBridge", encoded: dict, windows: torch.Tensor, config: LayerSweepConfig,
                     setting: Path) -> torch.Tensor:
    """d(l, n) for every start l and block size n: cached in the setting's folder, measured once."""
    from interp.pruning.layers import angular_distances, distance_table

    n_layers = int(bridge.cfg.n_layers)
    stem = setting / f"layer_distances_{config.distance_source}"
    try:
        table = read_table_if_present(stem)
    except DamagedResult:
        table = None  # measured again below
    if table is not None:
        distances = torch.full((n_layers + 1, n_layers + 1), float("nan"), dtype=torch.float64)
        layers, sizes = torch.tensor(table["layer"].to_numpy().copy()), torch.tensor(table["n"].to_numpy().copy())
        distances[layers, sizes] = torch.tensor(table["distance"].to_numpy().copy())
        return distances
    if config.distance_source == "text":
        samples: Any = windows
    else:
        samples = [batch for value in encoded.values()
                   for batch in iterate_batches(value, value.gold_sequence.tolist(), config.batch_size,
                                                bridge.cfg.device, pad_id_of(bridge.tokenizer))]
    distances = angular_distances(bridge, samples)
    write_table(distance_table(distances).assign(source=config.distance_source), stem)
    return distances


def _layer_plans(distances: torch.Tensor, sizes: Sequence[int], n_layers: int) -> list[tuple[str, int, list[int]]]:
    """(method, n, dropped layers): the unpruned model, then l*(n) and the deepest-n baseline for every n."""
    from interp.pruning.layers import baseline_layers, pruned_layers

    plans = [("unpruned", 0, [])]
    for size in sizes:
        plans += [("angular", size, pruned_layers(distances, size)),
                  ("baseline", size, baseline_layers(n_layers, size))]
    return plans


def _evaluate_layer_plans(bridge: "TransformerBridge", record: "ModelRecord", todo: list, encoded: dict,
                          windows: torch.Tensor,
                          config: LayerSweepConfig, cells: dict, *, progress: bool, echo: Callable[[str], None],
                          confirm: bool) -> None:
    """Evaluate each plan of ``todo`` on every task and the text; each plan's cell saved as it finishes."""
    from tqdm.auto import tqdm

    from interp.pruning.layers import skip_layer_hooks

    estimate = WorkEstimate(f"layer dropping: {len(todo)} settings", len(todo), confirm, echo)
    n_layers = int(bridge.cfg.n_layers)
    for method, size, layers in tqdm(todo, desc="layer dropping", disable=not progress):
        started = time.perf_counter()
        hooks = skip_layer_hooks(layers)
        rows = []
        for (label, k), value in encoded.items():
            scores = score_sequences(bridge, value, config.batch_size, hooks)
            rows.append({"task": label, "shots": k, **_summary(scores.logprob_sum, scores.n_tokens, value)})
        text_loss = _text_loss(bridge, windows, hooks, config.batch_size)
        write_json({"model": record.name, "method": method, "n": size, "layers": layers,
                    "fraction_dropped": size / n_layers, "distance_source": config.distance_source,
                    "text_loss": text_loss, "tasks": rows, "seconds": time.perf_counter() - started},
                   cells[(method, size)])
        estimate.done(1)


def _layer_sweep_table(plans: list, cells: dict) -> pd.DataFrame:
    """One row per (method, n, task, shots); the unpruned row stands at n = 0 of both methods."""
    rows = []
    for method, size, layers in plans:
        cell = read_json(cells[(method, size)])
        for task_row in cell["tasks"]:
            rows.append({"method": method, "n": size, "fraction_dropped": cell["fraction_dropped"],
                         "layers": ",".join(map(str, layers)), "text_loss": cell["text_loss"], **task_row})
    sweep = pd.DataFrame(rows)
    unpruned = sweep[sweep["method"] == "unpruned"]
    sweep = pd.concat([sweep, unpruned.assign(method="angular"), unpruned.assign(method="baseline")])
    return sweep[sweep["method"] != "unpruned"].sort_values(["method", "n", "task", "shots"]).reset_index(drop=True)


def _saved_model(bridge: "TransformerBridge", record: "ModelRecord", distances: torch.Tensor, thresholds: pd.DataFrame,
                 encoded: dict, windows: torch.Tensor, config: LayerSweepConfig, setting: Path, out: Path
                 ) -> pd.DataFrame | None:
    """Cut the largest l* block within the tolerance once per setting and tolerance; its comparison in one row."""
    from interp.pruning.layers import pruned_layers

    path = setting / f"layer_pruning_saved_tolerance{_safe(config.tolerance)}.json"
    if config.save_pruned and read_json_if_intact(path) is None:
        best = thresholds[(thresholds["method"] == "angular") & (thresholds["task"] == "average")]["prunable_n"]
        size = max(1, int(best.min()) if len(best) else 1)
        comparison = _save_pruned_model(record.name, pruned_layers(distances, size), out, windows, bridge,
                                        next(iter(encoded.values())), config.batch_size)
        write_json(run_metadata(record, n=size, **comparison), path)
    saved = read_json_if_intact(path)
    if saved is None:
        return None
    return pd.DataFrame([{name: value for name, value in saved.items() if not isinstance(value, (dict, list))}])


def _layer_setting(model_key: dict, tasks: list[Task], shots: list[int], config: LayerSweepConfig) -> tuple[str, dict]:
    """The setting's folder name and its key: the model, the tasks' contents, the shots, the settings, the version."""
    key = {"job": "layer_pruning", "model": model_key, "tasks": [task_key(task) for task in tasks], "shots": shots,
           "settings": _settings(config, ("block_sizes", "save_pruned", "tolerance", "batch_size")),
           "version": method_version()}
    readable = (f"items{config.max_items or 'all'}_choices{config.n_choices}_seed{config.seed}_"
                f"text{config.text_windows}x{config.text_length}")
    return f"{readable}_{cache_key(key)[:10]}", key


def _block_sizes(config: LayerSweepConfig, n_layers: int) -> tuple[int, ...]:
    """The block sizes to drop (every size the model allows, unless configured); an error for one it cannot drop."""
    sizes = config.block_sizes or tuple(range(1, n_layers))
    for size in sizes:
        if size > n_layers - 1:
            raise InterpError(f"block size {size} is outside 1..{n_layers - 1} for a {n_layers}-layer model "
                              "(the baseline keeps the final layer)")
    return sizes


def run_layer_sweep(model: "str | tuple[TransformerBridge, ModelRecord]", tasks: str | Sequence[str],
                    shots: Sequence[Any], out: Path, config: LayerSweepConfig = LayerSweepConfig(), *,
                    device: str = "auto", dtype: str = "float32", device_map: Any = None, figures: bool = True,
                    progress: bool = True, echo: Callable[[str], None] = print, confirm: bool = False) -> JobResult:
    """Drop blocks of layers (l* and the baseline), evaluate tasks and text loss; write ``out/layer_*`` (plan,
    evaluate, write, draw); each evaluated block size is kept, so a rerun continues."""
    from interp.output.claims import claims_table
    from interp.pruning.layers import distance_table

    out, timer = Path(out), PhaseTimer()
    loaded, shots = _tasks(tasks, shots, config.prompt_config())
    with results_folder(out, echo):
        handle = ModelHandle(model, device, dtype, device_map)
        with timer.phase("load"):
            bridge, record = handle.load()
        n_layers = int(bridge.cfg.n_layers)
        sizes = _block_sizes(config, n_layers)
        name, key = _layer_setting(handle.key, loaded, shots, config)
        setting = out / "pruning" / "layers" / name
        with timer.phase("compute"):
            encoded = _encode(bridge, loaded, shots, config.prompt_config())
            windows = _text_windows(bridge, config)
            if windows.shape[1] < config.text_length:
                echo(f"text windows of {windows.shape[1]} tokens, not {config.text_length}: the model reads at most "
                     f"{windows.shape[1]} ({model_context(bridge).source})")
            distances = _layer_distances(bridge, encoded, windows, config, setting)
            plans = _layer_plans(distances, sizes, n_layers)
            cells = {(method, size): setting / "cells" / f"{method}__n{size}__{config.distance_source}.json"
                     for method, size, _ in plans}
            todo = [plan for plan in plans if read_json_if_intact(cells[plan[:2]]) is None]
            _evaluate_layer_plans(bridge, record, todo, encoded, windows, config, cells, progress=progress, echo=echo,
                                  confirm=confirm)
        with timer.phase("write"):
            sweep = _layer_sweep_table(plans, cells)
            distance_name = f"layer_distances_{config.distance_source}"
            tables = {distance_name: distance_table(distances).assign(source=config.distance_source),
                      "layer_pruning": sweep,
                      "layer_pruning_thresholds": _layer_thresholds(sweep, config.tolerance, n_layers)}
            saved = _saved_model(bridge, record, distances, tables["layer_pruning_thresholds"], encoded, windows,
                                 config, setting, out)
            if saved is not None:
                tables["layer_pruning_saved"] = saved
            for name, frame in tables.items():
                write_table(frame, out / name)
            claims_table(out)
        with timer.phase("figures"):
            drawn = _pruning_figures({name: tables[name] for name in ("layer_pruning", distance_name)})
            paths = draw_figures(drawn, out / "figures", figures, FIGURE_FORMATS)
        metadata = run_metadata(record, tasks=[task.name for task in loaded], shots=shots, config=asdict(config),
                                key=key, computed=len(todo), timing=timer.as_dict(),
                                context=model_context(bridge).to_dict(), text_length_used=int(windows.shape[1]))
        write_json(metadata, out / "layer_pruning.json")
    paths += [out / f"{name}.{suffix}" for name in tables for suffix in ("parquet", "csv")]
    paths.append(out / "layer_pruning.json")
    echo(f"wrote {', '.join(tables)} into {out}")
    echo(timer.summary())
    return JobResult(tables, drawn, paths, metadata)


def _pruning_figures(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """The catalogue's figures of these pruning tables, by file stem."""
    from interp.output.catalogue import known_pruning_figures

    return {entry.name: entry.figure for name, table in tables.items()
            for entry in known_pruning_figures(name, table) or []}


def _layer_thresholds(sweep: pd.DataFrame, tolerance: float, n_layers: int) -> pd.DataFrame:
    """Largest n (all smaller n too) whose accuracy stays within ``tolerance`` points of the unpruned model.

    With its interval from the paired comparison of each block size with the unpruned model on the same
    items (:func:`interp.pruning.thresholds.threshold_table`; ``interval_method`` says which).
    """
    table = threshold_table(sweep.rename(columns={"method": "ranking", "n": "percent"}), tolerance=tolerance)
    table = table.rename(columns={"ranking": "method", "prunable_percent": "prunable_n",
                                  "prunable_ci_low": "prunable_n_ci_low",
                                  "prunable_ci_high": "prunable_n_ci_high"})
    for column in ("prunable_n", "prunable_n_ci_low", "prunable_n_ci_high"):
        table[column] = table[column].astype(int)
    table["prunable_fraction"] = table["prunable_n"] / n_layers
    return table


# --------------------------------------------------------------------------- LASER


@dataclass(frozen=True)
class LaserSweepConfig:
    """Settings for the LASER sweep."""

    layers: tuple[int, ...] | None = None  # None: the later half, where Sharma et al. found the gains
    matrices: tuple[str, ...] = ("mlp_in", "mlp_out")  # the MLP matrices: cheapest and most rewarding
    rhos: tuple[float, ...] = LASER_RHOS  # share of the rank kept
    select_fraction: float = 0.2  # first share of items that selects; the rest reports (Sharma et al.)
    batch_size: int = 8  # sequences per forward
    max_items: int | None = None  # items per task (None: every non-demo item)
    seed: int = 0  # demo split, demonstrations and distractors
    n_choices: int = 4  # candidates for items without fixed choices

    def __post_init__(self) -> None:
        from interp.pruning.laser import MATRICES, check_rho

        if not self.rhos:
            raise InterpError("rhos is empty; give shares of the rank such as 0.9,0.1")
        for rho in self.rhos:
            check_rho(rho)
        for matrix in self.matrices:
            check_choice("matrix", matrix, MATRICES)
        if not self.matrices:
            raise InterpError(f"matrices is empty; choose from {', '.join(MATRICES)}")
        if not 0 < self.select_fraction < 1:
            raise InterpError(f"select_fraction {self.select_fraction!r} must be between 0 and 1")
        for layer in self.layers or ():
            if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
                raise InterpError(f"layer {layer!r} must be a layer index 0 or more")

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(n_choices=self.n_choices, seed=self.seed, max_items=self.max_items)


def _matrix_target(bridge: "TransformerBridge", layer: int, matrix: str) -> torch.Tensor:
    from interp.pruning.laser import matrix_parameter

    parameter, third = matrix_parameter(bridge, layer, matrix)
    if third is None:
        return parameter.data
    width = parameter.shape[1] // 3  # GPT-2's fused Conv1D q|k|v
    return parameter.data[:, third * width : (third + 1) * width]


def _laser_cell(bridge: "TransformerBridge", encoded: EncodedPrompts, layer: int, matrix: str, config: LaserSweepConfig
                ) -> torch.Tensor:
    """Summed continuation log-probabilities (rho, sequence): one SVD, one clean run per batch, resumed at ``layer``."""
    from interp.hooks import ResumedRun
    from interp.pruning.laser import LowRankFactors, laser_intervention

    factors = LowRankFactors(_matrix_target(bridge, layer, matrix))
    sums = torch.zeros(len(config.rhos), encoded.n_sequences, dtype=torch.float64)
    for batch in iterate_batches(encoded, list(range(encoded.n_sequences)), config.batch_size, bridge.cfg.device,
                                 pad_id_of(bridge.tokenizer)):
        run = ResumedRun(bridge, batch.tokens, target_logprob_readout(bridge, batch))
        for index, rho in enumerate(config.rhos):
            with laser_intervention(bridge, layer, matrix, rho, factors):
                sums[index, batch.sequence_ids.cpu()] = sum_by_row(run.resume(layer, 1, [])[0], batch).double().cpu()
    return sums


def _split_summary(logprob_sums: torch.Tensor, n_tokens: torch.Tensor, encoded: EncodedPrompts,
                   n_select: int) -> dict[str, float]:
    from interp.pruning.thresholds import encode_items

    metrics = multiple_choice_metrics(logprob_sums, n_tokens, encoded)
    return {"select_accuracy": float(metrics["correct"][:n_select].mean()),
            "select_loss": float(metrics["gold_loss"][:n_select].mean()),
            "report_accuracy": float(metrics["correct"][n_select:].mean()),
            "report_loss": float(metrics["gold_loss"][n_select:].mean()),
            "accuracy": float(metrics["correct"].mean()), "loss": float(metrics["gold_loss"].mean()),
            "report_item_correct": encode_items(metrics["correct"][n_select:])}  # for a gain paired with the baseline


def select_laser(table: pd.DataFrame) -> pd.DataFrame:
    """Per (task, shots): the configuration with the best select accuracy (ties: lower select loss), vs the baseline.

    >>> rows = [dict(task="t", shots=0, layer=-1, matrix="none", rho=1.0, select_accuracy=0.5, select_loss=2.0,
    ...              report_accuracy=0.5, report_loss=2.0),
    ...         dict(task="t", shots=0, layer=3, matrix="mlp_out", rho=0.1, select_accuracy=0.6, select_loss=1.9,
    ...              report_accuracy=0.55, report_loss=1.95)]
    >>> chosen = select_laser(pd.DataFrame(rows)).iloc[0]
    >>> int(chosen["layer"]), chosen["matrix"], round(float(chosen["report_accuracy_gain"]), 3)
    (3, 'mlp_out', 0.05)
    """
    rows = []
    for (task, shots), group in table.groupby(["task", "shots"]):
        baseline = group[group["matrix"] == "none"].iloc[0]
        chosen = group.sort_values(["select_accuracy", "select_loss"], ascending=[False, True], kind="stable").iloc[0]
        rows.append({"task": task, "shots": shots, "layer": int(chosen["layer"]), "matrix": chosen["matrix"],
                     "rho": float(chosen["rho"]), "select_accuracy": chosen["select_accuracy"],
                     "report_accuracy": chosen["report_accuracy"], "report_loss": chosen["report_loss"],
                     "baseline_report_accuracy": baseline["report_accuracy"],
                     "baseline_report_loss": baseline["report_loss"],
                     "report_accuracy_gain": chosen["report_accuracy"] - baseline["report_accuracy"],
                     "report_loss_change": chosen["report_loss"] - baseline["report_loss"],
                     **_paired_gain(chosen, baseline)})
    return pd.DataFrame(rows)


def _paired_gain(chosen: pd.Series, baseline: pd.Series) -> dict[str, Any]:
    """Interval and p-value of the held-out accuracy gain, item by item against the unmodified model."""
    from interp.pruning.thresholds import PAIRED_INTERVAL, decode_items
    from interp.stats import paired_difference

    items = [row.get("report_item_correct") for row in (chosen, baseline)]
    if not all(isinstance(text, str) and text and len(text) == len(items[0]) for text in items):
        return {"gain_ci_low": np.nan, "gain_ci_high": np.nan, "gain_p_value": np.nan,
                "interval_method": "none (no per-item results)"}
    result = paired_difference(decode_items(items[0]), decode_items(items[1]), method="mcnemar")
    return {"gain_ci_low": result.ci_low, "gain_ci_high": result.ci_high, "gain_p_value": result.p_value,
            "interval_method": PAIRED_INTERVAL}


def _laser_setting(model_key: dict, config: LaserSweepConfig) -> tuple[str, dict]:
    """The setting's folder name and key: the model, the settings that change a cell's numbers, the version."""
    settings = _settings(config, ("layers", "matrices", "rhos", "batch_size"))
    key = {"job": "laser", "model": model_key, "settings": settings, "version": method_version()}
    return f"items{config.max_items or 'all'}_choices{config.n_choices}_seed{config.seed}_{cache_key(key)[:10]}", key


def _laser_cells(folder: Path, tasks: list[Task], shots: list[int], layers: Sequence[int], config: LaserSweepConfig
                 ) -> dict[tuple, Path]:
    """(task, shots, layer, matrix) -> cell file; layer -1 with matrix ``none`` is the unmodified model."""
    rho_tag = "_".join(_safe(rho) for rho in config.rhos)
    cells = {}
    for task in tasks:
        task_part = f"{_safe(task.name)}-{task_key(task)['sha256'][:8]}"
        for k in shots:
            for layer in [-1, *layers]:
                for matrix in (["none"] if layer < 0 else config.matrices):
                    name = f"{task_part}__{k}shot__L{layer}__{matrix}__{rho_tag}.json"
                    cells[(task.name, k, layer, matrix)] = folder / name
    return cells


def _evaluate_laser_cells(bridge: "TransformerBridge", record: "ModelRecord", todo: list, encoded: dict, cells: dict,
                          config: LaserSweepConfig, *, progress: bool, echo: Callable[[str], None],
                          confirm: bool) -> None:
    """Evaluate each (task, shots, layer, matrix) of ``todo`` over every rho; each cell saved as it finishes."""
    from tqdm.auto import tqdm

    def work(cell: tuple) -> int:
        return math.ceil(encoded[cell[:2]].n_sequences / config.batch_size) * (1 if cell[2] < 0 else len(config.rhos))

    estimate = WorkEstimate(f"LASER: {len(todo)} cells", sum(work(cell) for cell in todo), confirm, echo)
    for cell in tqdm(todo, desc="LASER", disable=not progress):
        label, k, layer, matrix = cell
        value = encoded[(label, k)]
        n_select = max(1, math.floor(config.select_fraction * value.n_items))
        n_tokens = torch.tensor([len(tokens) - start for tokens, start in zip(value.tokens, value.context_lengths,
                                                                               strict=True)],
                                dtype=torch.float64)
        started = time.perf_counter()
        if layer < 0:  # the unmodified model
            sums, rhos = score_sequences(bridge, value, config.batch_size).logprob_sum.unsqueeze(0), [1.0]
        else:
            sums, rhos = _laser_cell(bridge, value, layer, matrix, config), list(config.rhos)
        rows = [{"task": label, "shots": k, "layer": layer, "matrix": matrix, "rho": rho, "n_select": n_select,
                 "n_report": value.n_items - n_select, **_split_summary(sums[index], n_tokens, value, n_select)}
                for index, rho in enumerate(rhos)]
        write_json({"model": record.name, "rows": rows, "seconds": time.perf_counter() - started}, cells[cell])
        estimate.done(work(cell))


def _laser_tables(cells: dict) -> dict[str, pd.DataFrame]:
    table = pd.DataFrame([row for path in cells.values() for row in read_json(path)["rows"]])
    baseline = table[table["matrix"] == "none"].set_index(["task", "shots"])
    keys = list(zip(table["task"], table["shots"], strict=True))
    table["loss_delta"] = table["report_loss"].to_numpy() - baseline.loc[keys, "report_loss"].to_numpy()
    table["accuracy_delta"] = table["report_accuracy"].to_numpy() - baseline.loc[keys, "report_accuracy"].to_numpy()
    return {"laser": table, "laser_selected": select_laser(table)}


def run_laser_sweep(model: "str | tuple[TransformerBridge, ModelRecord]", tasks: str | Sequence[str],
                    shots: Sequence[Any], out: Path, config: LaserSweepConfig = LaserSweepConfig(), *,
                    device: str = "auto", dtype: str = "float32", device_map: Any = None, figures: bool = True,
                    progress: bool = True, echo: Callable[[str], None] = print, confirm: bool = False) -> JobResult:
    """Sweep (layer, matrix, rho) per (task, shots); write ``out/laser*`` tables and heatmaps (plan, evaluate, write,
    draw); each evaluated (layer, matrix) is kept, so a rerun continues."""
    from interp.output.claims import claims_table

    out, timer = Path(out), PhaseTimer()
    loaded, shots = _tasks(tasks, shots, config.prompt_config())
    with results_folder(out, echo):
        handle = ModelHandle(model, device, dtype, device_map)
        with timer.phase("load"):
            bridge, record = handle.load()
        n_layers = int(bridge.cfg.n_layers)
        layers = config.layers if config.layers is not None else tuple(range(n_layers // 2, n_layers))
        for layer in layers:
            if layer >= n_layers:
                raise InterpError(f"layer {layer} is outside 0..{n_layers - 1}")
        for matrix in config.matrices:
            _matrix_target(bridge, layers[0], matrix)  # an architecture without the matrix fails before the sweep
        name, key = _laser_setting(handle.key, config)
        cells = _laser_cells(out / "pruning" / "laser" / name / "cells", loaded, shots, layers, config)
        with timer.phase("compute"):
            encoded = _encode(bridge, loaded, shots, config.prompt_config())
            todo = [cell for cell, path in cells.items() if read_json_if_intact(path) is None]
            _evaluate_laser_cells(bridge, record, todo, encoded, cells, config, progress=progress, echo=echo,
                                  confirm=confirm)
        with timer.phase("write"):
            tables = _laser_tables(cells)
            for table_name, frame in tables.items():
                write_table(frame, out / table_name)
            claims_table(out)
        with timer.phase("figures"):
            drawn = _pruning_figures({"laser": tables["laser"]})
            paths = draw_figures(drawn, out / "figures", figures, FIGURE_FORMATS)
        metadata = run_metadata(record, tasks=[task.name for task in loaded], shots=shots, layers=list(layers),
                                config=asdict(config), key={**key, "tasks": [task_key(task) for task in loaded]},
                                computed=len(todo), timing=timer.as_dict())
        write_json(metadata, out / "laser.json")
    paths += [out / f"{name}.{suffix}" for name in tables for suffix in ("parquet", "csv")] + [out / "laser.json"]
    echo(f"wrote {', '.join(tables)} into {out}")
    echo(timer.summary())
    return JobResult(tables, drawn, paths, metadata)
