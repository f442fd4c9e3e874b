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

Each finished cell is one JSON file; a rerun skips it.

>>> LaserSweepConfig(rhos=(0.5, 1.5))
Traceback (most recent call last):
...
interp.errors.InterpError: rho=1.5 is outside (0, 1]; use a fraction of the full rank such as 0.1
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch

from interp.errors import InterpError, check_choice
from interp.output.claims import claims_table
from interp.pruning.thresholds import prunable_percent
from interp.tasks.evaluation import (EncodedPrompts, encode_prompts, iterate_batches, multiple_choice_metrics, pad_id_of,
                               score_sequences, sum_by_row, summarise, target_logprob_readout)
from interp.tasks.prompts import PromptConfig, build_prompts, load_task, resolve_task_names

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = ["LASER_RHOS", "LaserSweepConfig", "LayerSweepConfig", "run_laser_sweep", "run_layer_sweep",
           "select_laser"]

LASER_RHOS = (0.9, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05, 0.01)  # the reference grid (0.005 left out: rank < 3 here)


def _safe(text: Any) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in str(text))


def _setting(config: Any, labels: Sequence[str] = (), shots: Sequence[int] = ()) -> str:
    """A folder name for the evaluation setting, so that cells made under other settings are never mixed in."""
    import hashlib
    import json

    digest = hashlib.sha1(json.dumps([sorted(labels), sorted(shots)]).encode()).hexdigest()[:8] if labels else "any"
    return f"items{config.max_items or 'all'}_choices{config.n_choices}_seed{config.seed}_{digest}"


def _check_shots(shots: Sequence[Any]) -> list[int]:
    for k in shots:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InterpError(f"shots must be integers 0 or more, got {k!r}")
    return list(shots)


def _prepare(model: str, tasks: str | Sequence[str], shots: Sequence[Any], prompt_config: PromptConfig,
             bridge_record: Any, device: str, dtype: str = "float32", device_map: str | None = None
             ) -> tuple[Any, Any, list[str], dict[tuple[str, int], EncodedPrompts]]:
    """Tasks and prompts first (bad input fails before the model loads), then the model and the tokens."""
    names = resolve_task_names(tasks) if isinstance(tasks, str) else list(tasks)
    loaded = {name: load_task(name) for name in names}
    prompts = {(loaded[name].name, k): build_prompts(loaded[name], k, prompt_config) for name in names for k in shots}
    if bridge_record is None:
        from interp.models.loading import load_model
        bridge_record = load_model(model, device=device, dtype=dtype, device_map=device_map)
    bridge, record = bridge_record
    encoded = {key: encode_prompts(bridge.tokenizer, value, bridge.cfg.n_ctx, key[0]) for key, value in prompts.items()}
    return bridge, record, [loaded[name].name for name in names], encoded


def _summary(logprob_sums: torch.Tensor, n_tokens: torch.Tensor, encoded: EncodedPrompts) -> dict[str, float]:
    return summarise(multiple_choice_metrics(logprob_sums, n_tokens, encoded))


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
    return icl_windows(bridge, held_out, min(config.text_length, int(bridge.cfg.n_ctx)), config.text_windows)


def _text_loss(bridge: "TransformerBridge", windows: torch.Tensor, hooks: list, batch_size: int) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size].to(bridge.cfg.device)
            logits = bridge.run_with_hooks(chunk, fwd_hooks=hooks, return_type="logits").float()
            log_probs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, chunk[:, 1:, None])[..., 0]
            total, count = total - float(log_probs.sum()), count + log_probs.numel()
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


def _save_pruned_model(model: str, layers: list[int], out: Path, windows: torch.Tensor, bridge: "TransformerBridge",
                       encoded: EncodedPrompts, batch_size: int) -> dict[str, Any]:
    """Cut ``layers`` from a plain copy of ``model``, save it, reload it; compare with the original."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp.pruning.layers import drop_layers, skip_layer_hooks
    from interp.models.loading import _resolve_source, load_model

    source, _ = _resolve_source(model)
    original = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    pruned = drop_layers(original, layers)
    directory = out / "pruned_model"
    pruned.save_pretrained(directory)
    AutoTokenizer.from_pretrained(source).save_pretrained(directory)
    reloaded = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    sample = windows[: min(8, len(windows))]
    hooked = score_sequences(bridge, encoded, batch_size, skip_layer_hooks(layers))
    bridge_pruned, _ = load_model(str(directory), device=str(bridge.cfg.device))
    loaded = score_sequences(bridge_pruned, encoded, batch_size)
    (original_parameters, original_bytes), (pruned_parameters, pruned_bytes) = _parameter_bytes(original), _parameter_bytes(reloaded)
    original_seconds, pruned_seconds = _forward_seconds(original, sample), _forward_seconds(reloaded, sample)
    return {"directory": str(directory), "dropped_layers": layers, "n_layers_original": int(original.config.num_hidden_layers),
            "n_layers_pruned": int(reloaded.config.num_hidden_layers),
            "parameters_original": original_parameters, "parameters_pruned": pruned_parameters,
            "memory_bytes_original": original_bytes, "memory_bytes_pruned": pruned_bytes,
            "forward_seconds_original": original_seconds, "forward_seconds_pruned": pruned_seconds,
            "forward_batch": list(sample.shape),
            "max_logprob_difference_reloaded_vs_hooks": float((hooked.logprob_sum - loaded.logprob_sum).abs().max())}


def run_layer_sweep(model: str, tasks: str | Sequence[str], shots: Sequence[Any], out: Path,
                    config: LayerSweepConfig = LayerSweepConfig(), *, device: str = "auto", dtype: str = "float32",
                    device_map: str | None = None, bridge_record: Any = None, figures: bool = True,
                    show_progress: bool = True) -> dict[str, pd.DataFrame]:
    """Drop blocks of layers (l* and the baseline), evaluate tasks and text loss; write ``out/layer_*``."""
    from tqdm.auto import tqdm

    from interp.pruning.layers import (angular_distances, baseline_layers, distance_table, pruned_layers,
                               skip_layer_hooks)
    from interp.store import read_json, read_table, run_metadata, write_json, write_table

    out = Path(out)
    shots = _check_shots(shots)
    bridge, record, labels, encoded = _prepare(model, tasks, shots, config.prompt_config(), bridge_record, device, dtype, device_map)
    n_layers = int(bridge.cfg.n_layers)
    sizes = config.block_sizes or tuple(range(1, n_layers))
    for size in sizes:
        if size > n_layers - 1:
            raise InterpError(f"block size {size} is outside 1..{n_layers - 1} for a {n_layers}-layer model "
                              "(the baseline keeps the final layer)")
    setting = out / "pruning" / "layers" / (_setting(config, labels, shots) + f"_text{config.text_windows}x{config.text_length}")
    folder = setting / "cells"
    windows = _text_windows(bridge, config)
    distance_stem = setting / f"layer_distances_{config.distance_source}"
    if distance_stem.with_suffix(".parquet").exists():
        table = read_table(distance_stem)
        distances = torch.full((n_layers + 1, n_layers + 1), float("nan"), dtype=torch.float64)
        distances[torch.tensor(table["layer"].to_numpy().copy()), torch.tensor(table["n"].to_numpy().copy())] = torch.tensor(
            table["distance"].to_numpy().copy())
    else:
        if config.distance_source == "text":
            samples: Any = windows
        else:
            samples = [batch for value in encoded.values()
                       for batch in iterate_batches(value, value.gold_sequence.tolist(), config.batch_size,
                                                    bridge.cfg.device, pad_id_of(bridge.tokenizer))]
        distances = angular_distances(bridge, samples)
        write_table(distance_table(distances).assign(source=config.distance_source), distance_stem)
    write_table(distance_table(distances).assign(source=config.distance_source), out / f"layer_distances_{config.distance_source}")
    plans = [("unpruned", 0, [])]
    for size in sizes:
        plans.append(("angular", size, pruned_layers(distances, size)))
        plans.append(("baseline", size, baseline_layers(n_layers, size)))
    todo = [(method, size, layers) for method, size, layers in plans
            if not (folder / f"{method}__n{size}__{config.distance_source}.json").exists()]
    for method, size, layers in tqdm(todo, desc="layer dropping", disable=not show_progress):
        started = time.perf_counter()
        hooks = skip_layer_hooks(layers)
        rows = []
        for (label, k), value in encoded.items():
            scores = score_sequences(bridge, value, config.batch_size, hooks)
            rows.append({"task": label, "shots": k, **_summary(scores.logprob_sum, scores.n_tokens, value)})
        write_json({"model": record.name, "method": method, "n": size, "layers": layers, "fraction_dropped": size / n_layers,
                    "distance_source": config.distance_source, "text_loss": _text_loss(bridge, windows, hooks, config.batch_size),
                    "tasks": rows, "seconds": time.perf_counter() - started},
                   folder / f"{method}__n{size}__{config.distance_source}.json")
    rows = []
    for method, size, layers in plans:
        cell = read_json(folder / f"{method}__n{size}__{config.distance_source}.json")
        for task_row in cell["tasks"]:
            if task_row["task"] in labels and task_row["shots"] in shots:
                rows.append({"method": method, "n": size, "fraction_dropped": cell["fraction_dropped"],
                             "layers": ",".join(map(str, layers)), "text_loss": cell["text_loss"], **task_row})
    sweep = pd.DataFrame(rows)
    unpruned = sweep[sweep["method"] == "unpruned"]
    sweep = pd.concat([sweep, unpruned.assign(method="angular"), unpruned.assign(method="baseline")])
    sweep = sweep[sweep["method"] != "unpruned"].sort_values(["method", "n", "task", "shots"]).reset_index(drop=True)
    tables = {"layer_pruning": sweep}
    tables["layer_pruning_thresholds"] = _layer_thresholds(sweep, config.tolerance, n_layers)
    for name, frame in tables.items():
        write_table(frame, out / name)
    saved_path = setting / "layer_pruning_saved.json"
    if config.save_pruned and not saved_path.exists():
        angular = tables["layer_pruning_thresholds"]
        best = angular[(angular["method"] == "angular") & (angular["task"] == "average")]["prunable_n"]
        size = max(1, int(best.min()) if len(best) else 1)
        first = next(iter(encoded.values()))
        write_json(run_metadata(record, n=size, **_save_pruned_model(model, pruned_layers(distances, size), out, windows,
                                                                        bridge, first, config.batch_size)), saved_path)
    if saved_path.exists():
        tables["layer_pruning_saved"] = pd.DataFrame([{key: value for key, value in read_json(saved_path).items()
                                                       if not isinstance(value, (dict, list))}])
        write_table(tables["layer_pruning_saved"], out / "layer_pruning_saved")
    write_json(run_metadata(record, tasks=labels, shots=shots, config=asdict(config)), out / "layer_pruning.json")
    if figures:
        from interp.output.figures import angular_distance_figure, layer_drop_figure, save_figure

        save_figure(angular_distance_figure(distance_table(distances), f"Angular distance d(l, n) on {config.distance_source}"),
                    out / "figures" / f"layer_distances_{config.distance_source}")
        save_figure(layer_drop_figure(sweep, "Dropping blocks of layers: l* (angular distance) vs the deepest layers"),
                    out / "figures" / "layer_pruning")
    claims_table(out)
    return tables


def _layer_thresholds(sweep: pd.DataFrame, tolerance: float, n_layers: int) -> pd.DataFrame:
    """Largest n (all smaller n too) whose accuracy stays within ``tolerance`` points of the unpruned model."""

    rows = []
    for (method, shots), group in sweep.groupby(["method", "shots"]):
        curves = {task: part.sort_values("n") for task, part in group.groupby("task")}
        average = group.groupby("n")["accuracy"].mean().reset_index()
        for task, curve in [*curves.items(), ("average", average)]:
            n = prunable_percent(curve["n"].to_numpy(float), curve["accuracy"].to_numpy(float), tolerance)
            rows.append({"method": method, "shots": shots, "task": task, "prunable_n": int(n),
                         "prunable_fraction": int(n) / n_layers, "tolerance_points": tolerance})
    return pd.DataFrame(rows)


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
        from interp.pruning.laser import MATRICES, _check_rho

        if not self.rhos:
            raise InterpError("rhos is empty; give shares of the rank such as 0.9,0.1")
        for rho in self.rhos:
            _check_rho(rho)
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


def _split_summary(logprob_sums: torch.Tensor, n_tokens: torch.Tensor, encoded: EncodedPrompts, n_select: int) -> dict[str, float]:
    metrics = multiple_choice_metrics(logprob_sums, n_tokens, encoded)
    return {"select_accuracy": float(metrics["correct"][:n_select].mean()), "select_loss": float(metrics["gold_loss"][:n_select].mean()),
            "report_accuracy": float(metrics["correct"][n_select:].mean()), "report_loss": float(metrics["gold_loss"][n_select:].mean()),
            "accuracy": float(metrics["correct"].mean()), "loss": float(metrics["gold_loss"].mean())}


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
                     "baseline_report_accuracy": baseline["report_accuracy"], "baseline_report_loss": baseline["report_loss"],
                     "report_accuracy_gain": chosen["report_accuracy"] - baseline["report_accuracy"],
                     "report_loss_change": chosen["report_loss"] - baseline["report_loss"]})
    return pd.DataFrame(rows)


def run_laser_sweep(model: str, tasks: str | Sequence[str], shots: Sequence[Any], out: Path,
                    config: LaserSweepConfig = LaserSweepConfig(), *, device: str = "auto", dtype: str = "float32",
                    device_map: str | None = None, bridge_record: Any = None, figures: bool = True,
                    show_progress: bool = True) -> dict[str, pd.DataFrame]:
    """Sweep (layer, matrix, rho) per (task, shots); write ``out/laser*`` tables and heatmaps."""
    from tqdm.auto import tqdm

    from interp.store import read_json, run_metadata, write_json, write_table

    out = Path(out)
    shots = _check_shots(shots)
    bridge, record, labels, encoded = _prepare(model, tasks, shots, config.prompt_config(), bridge_record, device, dtype, device_map)
    n_layers = int(bridge.cfg.n_layers)
    layers = config.layers if config.layers is not None else tuple(range(n_layers // 2, n_layers))
    for layer in layers:
        if layer >= n_layers:
            raise InterpError(f"layer {layer} is outside 0..{n_layers - 1}")
    for matrix in config.matrices:
        _matrix_target(bridge, layers[0], matrix)  # an architecture without the matrix fails before the sweep
    folder = out / "pruning" / "laser" / _setting(config) / "cells"
    rho_tag = "_".join(_safe(rho) for rho in config.rhos)
    path = lambda label, k, layer, matrix: folder / f"{_safe(label)}__{k}shot__L{layer}__{matrix}__{rho_tag}.json"  # noqa: E731
    todo = [(key, layer, matrix) for key in encoded for layer in [-1, *layers] for matrix in (["none"] if layer < 0 else config.matrices)
            if not path(*key, layer, matrix).exists()]
    for (label, k), layer, matrix in tqdm(todo, desc="LASER", disable=not show_progress):
        value = encoded[(label, k)]
        n_select = max(1, math.floor(config.select_fraction * value.n_items))
        n_tokens = torch.tensor([len(tokens) - start for tokens, start in zip(value.tokens, value.context_lengths)],
                                dtype=torch.float64)
        started = time.perf_counter()
        if layer < 0:  # the unmodified model
            sums = score_sequences(bridge, value, config.batch_size).logprob_sum.unsqueeze(0)
            rhos = [1.0]
        else:
            sums, rhos = _laser_cell(bridge, value, layer, matrix, config), list(config.rhos)
        rows = [{"task": label, "shots": k, "layer": layer, "matrix": matrix, "rho": rho, "n_select": n_select,
                 "n_report": value.n_items - n_select, **_split_summary(sums[index], n_tokens, value, n_select)}
                for index, rho in enumerate(rhos)]
        write_json({"model": record.name, "rows": rows, "seconds": time.perf_counter() - started}, path(label, k, layer, matrix))
    rows = [row for key in encoded for layer in [-1, *layers] for matrix in (["none"] if layer < 0 else config.matrices)
            for row in read_json(path(*key, layer, matrix))["rows"]]
    table = pd.DataFrame(rows)
    baseline = table[table["matrix"] == "none"].set_index(["task", "shots"])
    keys = list(zip(table["task"], table["shots"]))
    table["loss_delta"] = table["report_loss"].to_numpy() - baseline.loc[keys, "report_loss"].to_numpy()
    table["accuracy_delta"] = table["report_accuracy"].to_numpy() - baseline.loc[keys, "report_accuracy"].to_numpy()
    tables = {"laser": table, "laser_selected": select_laser(table)}
    for name, frame in tables.items():
        write_table(frame, out / name)
    write_json(run_metadata(record, tasks=labels, shots=shots, layers=list(layers), config=asdict(config)), out / "laser.json")
    if figures:
        from interp.output.figures import laser_heatmap_figure, save_figure

        for matrix in config.matrices:
            save_figure(laser_heatmap_figure(table[table["layer"] >= 0], matrix,
                                             f"LASER on {matrix}: change in answer log-loss (held-out 80%, mean over tasks)"),
                        out / "figures" / f"laser_{matrix}")
    claims_table(out)
    return tables
