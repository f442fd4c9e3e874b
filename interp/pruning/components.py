"""Iterative head and FFN pruning by a ranking (Bansal et al. ACL 2023, sections 4-6).

Remove the ``x%`` lowest-ranked heads (or FFNs, or both) and evaluate every task and shot
count. A component is removed by masking its output through a hook: ``hook_z`` for a head
(multiplying its attention probabilities by 0 equals zeroing ``z_h``; see docs/methods.md) and
``hook_mlp_out`` for an FFN (skipping the FFN with its layer norm), replaced by zero or by its
mean over the task's tokens (``ablation``).

Rankings (higher = more important; the lowest go first, ties by position):

- ``own``: the task's own importance: gradient importance of heads (Michel/Bansal), the oracle
  of FFNs (accuracy drop when one FFN is removed, ties by the loss increase);
- ``aggregate``: the mean of the raw scores over the tasks of the run (same shots);
- ``most_correlated`` / ``least_correlated``: the ranking of the other task whose scores have
  the highest / lowest Spearman correlation with this task's (cross-task transfer);
  ``task:NAME`` names one;
- ``prefix_matching`` / ``copying``: the head's induction score, read from ``induction_scores``
  in the results folder (heads only);
- ``random:SEED`` (``random`` expands to ``n_random`` seeds): the baseline.

Work is shared: prompts are tokenised once per (task, shots); masks are deduplicated (0% is one
evaluation for every ranking); the masks of a group share one clean forward per batch, whose
per-block residuals (:class:`interp.hooks.ResumedRun`) let every masked copy start at
the first layer that any copy of the group masks, with the copies stacked along the batch.

Every cell (study, ranking, head %, FFN %, task, shots) is written as one JSON file as soon as
its group is done; a rerun skips the cells already on disk.

>>> pruning_mask(np.array([[0.3, 0.1], [0.2, 0.4]]), 50).tolist()
[[False, True], [True, False]]
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InterpError, check_choice
from interp.output.claims import claims_table
from interp.pruning.thresholds import threshold_table
from interp.tasks.evaluation import (EncodedPrompts, encode_prompts, iterate_batches, logits_to_target_logprobs,
                               multiple_choice_metrics, pad_id_of, sum_by_row, summarise, target_logprob_readout,
                               wilson_interval)
from interp.hooks import ResumedRun, component_mask_hooks, mlp_out_hook, z_hook
from interp.tasks.prompts import PromptConfig, build_prompts, load_task, resolve_task_names

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "ABLATIONS",
    "DEFAULT_RANKINGS",
    "STUDIES",
    "PruningConfig",
    "masked_scores",
    "masked_scores_reference",
    "prune_count",
    "pruning_mask",
    "run_pruning",
]

STUDIES = ("heads", "ffns", "combined")
ABLATIONS = ("zero", "mean")
INDUCTION_RANKINGS = ("prefix_matching", "copying")
FIXED_RANKINGS = ("own", "aggregate", "most_correlated", "least_correlated", *INDUCTION_RANKINGS, "random")
DEFAULT_RANKINGS = {
    "heads": ("own", "aggregate", "most_correlated", "least_correlated", "prefix_matching", "copying", "random"),
    "ffns": ("own", "aggregate", "most_correlated", "least_correlated", "random"),
    "combined": ("own",),
}
DEFAULT_PERCENTS = {"heads": tuple(range(0, 100, 10)), "ffns": tuple(range(0, 100, 10))}
COMBINED_HEAD_PERCENTS = tuple(range(0, 80, 10))  # Bansal's grid: heads 0..70%
COMBINED_FFN_PERCENTS = tuple(range(0, 60, 10))  # x FFNs 0..50%


def _check_percents(name: str, values: Sequence[Any]) -> tuple[float | int, ...]:
    if len(values) == 0:
        raise InterpError(f"{name} is empty; give percentages such as 0,10,20")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 100:
            raise InterpError(f"{name}: {value!r} is not a percentage in [0, 100)")
    return tuple(sorted(set(int(value) if float(value).is_integer() else float(value) for value in values)))


def _check_ranking_name(name: str) -> None:
    if name in FIXED_RANKINGS:
        return
    if name.startswith("task:") and name.removeprefix("task:"):
        return
    if name.startswith("random:") and name.removeprefix("random:").isdigit():
        return
    raise InterpError(f"unknown ranking {name!r}; choose from {', '.join(FIXED_RANKINGS)}, task:NAME or random:SEED")


@dataclass(frozen=True)
class PruningConfig:
    """Settings for a pruning sweep.

    >>> PruningConfig(percents=(0, 120))
    Traceback (most recent call last):
    ...
    interp.errors.InterpError: percents: 120 is not a percentage in [0, 100)
    """

    percents: tuple[float | int, ...] | None = None  # heads/ffns study; None: 0, 10, ..., 90 (Bansal)
    head_percents: tuple[float | int, ...] = COMBINED_HEAD_PERCENTS  # combined grid rows
    ffn_percents: tuple[float | int, ...] = COMBINED_FFN_PERCENTS  # combined grid columns
    rankings: tuple[str, ...] | None = None  # None: DEFAULT_RANKINGS of the study
    ablation: str = "zero"  # what a removed component outputs: zero or its task mean
    n_random: int = 3  # seeds behind the plain "random" ranking
    tolerance: float | int = 1.0  # accuracy points a pruned model may lose and still count as unharmed
    head_importance: str = "gradient"  # gradient or gradient_l2 (Michel's per-layer normalisation)
    ffn_importance: str = "oracle"  # oracle (Bansal: accuracy drop when skipped) or gradient
    batch_size: int = 8  # sequences per forward (times the masks of a group)
    masks_per_forward: int = 10  # masked copies stacked in one resumed forward
    max_items: int | None = None  # items per task (None: every non-demo item)
    seed: int = 0  # demo split, demonstrations and distractors
    n_choices: int = 4  # candidates for items without fixed choices

    def __post_init__(self) -> None:
        if self.percents is not None:
            object.__setattr__(self, "percents", _check_percents("percents", self.percents))
        object.__setattr__(self, "head_percents", _check_percents("head_percents", self.head_percents))
        object.__setattr__(self, "ffn_percents", _check_percents("ffn_percents", self.ffn_percents))
        for name in self.rankings or ():
            _check_ranking_name(name)
        check_choice("ablation", self.ablation, ABLATIONS)
        check_choice("head_importance", self.head_importance, ("gradient", "gradient_l2"))
        check_choice("ffn_importance", self.ffn_importance, ("oracle", "gradient"))
        if self.n_random < 1:
            raise InterpError(f"n_random must be positive, got {self.n_random}")
        if not 0 <= self.tolerance < 100:
            raise InterpError(f"tolerance {self.tolerance!r} must be accuracy points in [0, 100)")
        for name in ("batch_size", "masks_per_forward"):
            if getattr(self, name) < 1:
                raise InterpError(f"{name} must be positive, got {getattr(self, name)}")

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(n_choices=self.n_choices, seed=self.seed, max_items=self.max_items)

    def study_rankings(self, study: str) -> tuple[str, ...]:
        names = self.rankings or DEFAULT_RANKINGS[study]
        expanded: list[str] = []
        for name in names:
            expanded += [f"random:{seed}" for seed in range(self.n_random)] if name == "random" else [name]
        return tuple(dict.fromkeys(expanded))


# --------------------------------------------------------------------------- which components go


def prune_count(n_components: int, percent: float | int) -> int:
    """How many of ``n_components`` make up ``percent``%: ``floor(percent * n / 100)``.

    >>> prune_count(270, 10), prune_count(30, 25)
    (27, 7)
    """
    _check_percents("percent", [percent])
    return math.floor(percent * n_components / 100 + 1e-9)  # 1e-9: 30% of 10 is 3, not 2


def pruning_mask(scores: np.ndarray, percent: float | int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask (True = removed) of the ``percent``% lowest ``scores``; ties by ``tiebreak``, then position."""
    scores = np.asarray(scores, dtype=np.float64)
    flat = scores.ravel()
    if not np.isfinite(flat).all():
        raise InterpError("ranking scores contain NaN or infinity; recompute the ranking")
    secondary = np.zeros_like(flat) if tiebreak is None else np.asarray(tiebreak, dtype=np.float64).ravel()
    if secondary.shape != flat.shape:
        raise InterpError(f"tiebreak of shape {np.shape(tiebreak)} does not match scores of shape {scores.shape}")
    order = np.lexsort((np.arange(flat.size), secondary, flat))  # last key is the primary one
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[: prune_count(flat.size, percent)]] = True
    return mask.reshape(scores.shape)


def _check_masks(bridge: "TransformerBridge", head_masks: Tensor, ffn_masks: Tensor) -> tuple[Tensor, Tensor]:
    n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
    head_masks, ffn_masks = torch.as_tensor(head_masks, dtype=torch.bool), torch.as_tensor(ffn_masks, dtype=torch.bool)
    if head_masks.dim() != 3 or tuple(head_masks.shape[1:]) != (n_layers, n_heads):
        raise InterpError(f"head masks of shape {tuple(head_masks.shape)} do not fit (mask, {n_layers} layers, {n_heads} heads)")
    if tuple(ffn_masks.shape) != (head_masks.shape[0], n_layers):
        raise InterpError(f"FFN masks of shape {tuple(ffn_masks.shape)} do not fit ({head_masks.shape[0]} masks, {n_layers} layers)")
    return head_masks, ffn_masks


def masked_scores(bridge: "TransformerBridge", encoded: EncodedPrompts, head_masks: Bool[Tensor, "mask layer head"],
                  ffn_masks: Bool[Tensor, "mask layer"], means: tuple[Tensor, Tensor] | None = None,
                  batch_size: int = 8, masks_per_forward: int = 10,
                  progress: Callable[[int], None] | None = None, share_context: bool = True) -> Float[Tensor, "mask sequence"]:
    """Summed continuation log-probability of every sequence under every mask (True = removed).

    ``share_context``: one batch row per prompt, its choices sharing the context (see tasks.evaluation).

    ``means`` (per-layer mean ``z`` and FFN output) switches from zero to mean ablation.
    Identical masks are evaluated once; an empty mask is the clean forward.
    """
    head_masks, ffn_masks = _check_masks(bridge, head_masks, ffn_masks)
    n_layers = ffn_masks.shape[1]
    flat = torch.cat([head_masks.flatten(1), ffn_masks], dim=1)  # (mask, component)
    unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
    layer_of = torch.cat([torch.arange(n_layers).repeat_interleave(head_masks.shape[2]), torch.arange(n_layers)])
    first_layer = torch.where(unique, layer_of, n_layers).min(dim=1).values  # n_layers: nothing removed
    masked = [index for index in torch.argsort(first_layer, stable=True).tolist() if first_layer[index] < n_layers]
    groups = [masked[start : start + masks_per_forward] for start in range(0, len(masked), masks_per_forward)]
    unique_heads = unique[:, : -n_layers].reshape(-1, n_layers, head_masks.shape[2])
    unique_ffns = unique[:, -n_layers:]
    results = torch.zeros(len(unique), encoded.n_sequences, dtype=torch.float64)
    for batch in iterate_batches(encoded, list(range(encoded.n_sequences)), batch_size, bridge.cfg.device,
                                 pad_id_of(bridge.tokenizer), share_context):
        run = ResumedRun(bridge, batch.tokens, target_logprob_readout(bridge, batch), batch.forward_kwargs())
        ids = batch.sequence_ids.cpu()
        results[:, ids] = sum_by_row(run.clean, batch).double().cpu()  # empty masks keep this
        for group in groups:
            start = int(first_layer[group].min())
            hooks = component_mask_hooks(unique_heads[group], unique_ffns[group], means, start)
            sums = sum_by_row(run.resume(start, len(group), hooks), batch).double().cpu()  # (copies, batch)
            results[torch.tensor(group).unsqueeze(1), ids.unsqueeze(0)] = sums
        if progress is not None:
            progress(1)
    return results[inverse]


def masked_scores_reference(bridge: "TransformerBridge", encoded: EncodedPrompts, head_mask: Tensor, ffn_mask: Tensor,
                            means: tuple[Tensor, Tensor] | None = None, batch_size: int = 8) -> Float[Tensor, " sequence"]:
    """The naive way, for tests and the benchmark: one full forward per batch for one mask, head by head."""
    out = torch.zeros(encoded.n_sequences, dtype=torch.float64)
    hooks = []
    for layer, head in torch.nonzero(torch.as_tensor(head_mask)).tolist():
        def remove_head(z, hook, head=head, layer=layer):
            z = z.clone()
            z[:, :, head] = 0.0 if means is None else means[0][layer, head]
            return z
        hooks.append((z_hook(layer), remove_head))
    for layer in torch.nonzero(torch.as_tensor(ffn_mask)).flatten().tolist():
        def remove_ffn(mlp_out, hook, layer=layer):
            return torch.zeros_like(mlp_out) if means is None else means[1][layer].expand_as(mlp_out).clone()
        hooks.append((mlp_out_hook(layer), remove_ffn))
    with torch.no_grad():
        for batch in iterate_batches(encoded, list(range(encoded.n_sequences)), batch_size, bridge.cfg.device,
                                     pad_id_of(bridge.tokenizer)):
            logits = bridge.run_with_hooks(batch.tokens, fwd_hooks=hooks, return_type="logits")
            values = logits_to_target_logprobs(logits[batch.target_rows, batch.target_positions], batch)
            out[batch.sequence_ids.cpu()] = sum_by_row(values, batch).double().cpu()
    return out


def _n_tokens(encoded: EncodedPrompts) -> Tensor:
    return torch.tensor([len(tokens) - start for tokens, start in zip(encoded.tokens, encoded.context_lengths)],
                        dtype=torch.float64)


def _summaries(logprob_sums: Tensor, encoded: EncodedPrompts) -> list[dict[str, float]]:
    metrics = multiple_choice_metrics(logprob_sums, _n_tokens(encoded), encoded)
    return [summarise({key: value[index] for key, value in metrics.items()}) for index in range(len(logprob_sums))]


# --------------------------------------------------------------------------- rankings


def _component_scores(bridge: "TransformerBridge", encoded: EncodedPrompts, config: PruningConfig,
                      means: tuple[Tensor, Tensor] | None, components: Sequence[str] = ("head", "ffn")
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Own importance: {"head": (scores (layer, head), tiebreak), "ffn": (scores (layer,), tiebreak)}."""
    from interp.importance.methods import _l2_normalise, gradient_importance

    scores = {}
    if "head" in components or config.ffn_importance == "gradient":
        gradient = gradient_importance(bridge, encoded, config.batch_size)
        heads = gradient["head_gradient"]
        if config.head_importance == "gradient_l2":
            heads = _l2_normalise(heads)
        if "head" in components:
            scores["head"] = (heads.numpy(), np.zeros(heads.shape))
    if "ffn" not in components:
        pass
    elif config.ffn_importance == "gradient":
        scores["ffn"] = (gradient["ffn_gradient"].numpy(), np.zeros(len(gradient["ffn_gradient"])))
    else:  # Bansal's oracle: accuracy drop with one FFN removed, ties by the loss increase
        n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
        ffn_masks = torch.cat([torch.zeros(1, n_layers, dtype=torch.bool), torch.eye(n_layers, dtype=torch.bool)])
        sums = masked_scores(bridge, encoded, torch.zeros(n_layers + 1, n_layers, n_heads, dtype=torch.bool), ffn_masks,
                             means, config.batch_size, config.masks_per_forward)
        summary = pd.DataFrame(_summaries(sums, encoded))
        scores["ffn"] = ((summary["accuracy"].iloc[0] - summary["accuracy"].iloc[1:]).to_numpy(),
                         (summary["loss"].iloc[1:] - summary["loss"].iloc[0]).to_numpy())
    return scores


def _ranking_rows(task: str, shots: int, scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    frames = []
    for component, (values, tiebreak) in scores.items():
        if component == "head":
            layers, heads = np.meshgrid(np.arange(values.shape[0]), np.arange(values.shape[1]), indexing="ij")
        else:
            layers, heads = np.arange(len(values)), np.full(len(values), -1)
        frames.append(pd.DataFrame({"task": task, "shots": shots, "component": component, "layer": layers.ravel(),
                                    "head": heads.ravel(), "value": values.ravel(), "tiebreak": tiebreak.ravel()}))
    return pd.concat(frames, ignore_index=True)


class _Rankings:
    """Resolves a ranking name to (scores, tiebreak, source) for a (task, shots, component)."""

    def __init__(self, table: pd.DataFrame, shape: dict[str, tuple[int, ...]], induction: pd.DataFrame | None):
        self.table, self.shape, self.induction = table, shape, induction

    def own(self, task: str, shots: int, component: str) -> tuple[np.ndarray, np.ndarray]:
        part = self.table[(self.table["task"] == task) & (self.table["shots"] == shots)
                          & (self.table["component"] == component)].sort_values(["layer", "head"])
        return part["value"].to_numpy().reshape(self.shape[component]), part["tiebreak"].to_numpy().reshape(self.shape[component])

    def resolve(self, name: str, task: str, shots: int, component: str, tasks: Sequence[str]
                ) -> tuple[np.ndarray, np.ndarray, str] | None:
        shape = self.shape[component]
        if name == "own":
            return (*self.own(task, shots, component), task)
        if name == "aggregate":
            owned = [self.own(other, shots, component) for other in tasks]
            return (np.mean([values for values, _ in owned], axis=0), np.mean([tie for _, tie in owned], axis=0),
                    "mean over " + ",".join(tasks))
        if name.startswith("task:"):
            other = name.removeprefix("task:")
            if other not in tasks:
                raise InterpError(f"ranking {name!r}: task {other!r} is not among the run's tasks ({', '.join(tasks)})")
            return (*self.own(other, shots, component), other)
        if name in ("most_correlated", "least_correlated"):
            from scipy import stats

            others = [other for other in tasks if other != task]
            if not others:
                return None  # one task: no transfer to measure
            mine = self.own(task, shots, component)[0].ravel()
            correlations = [stats.spearmanr(mine, self.own(other, shots, component)[0].ravel())[0] for other in others]
            correlations = np.nan_to_num(np.asarray(correlations, dtype=float), nan=0.0)
            chosen = others[int(np.argmax(correlations) if name == "most_correlated" else np.argmin(correlations))]
            return (*self.own(chosen, shots, component), chosen)
        if name in INDUCTION_RANKINGS:
            if component != "head":
                raise InterpError(f"ranking {name!r} scores heads only; FFN studies take own, aggregate, "
                                  "most_correlated, least_correlated, task:NAME or random")
            if self.induction is None:
                raise InterpError(f"ranking {name!r} needs induction_scores in the results folder; run `interp induction` first")
            grid = self.induction[self.induction["metric"] == name].pivot_table(index="layer", columns="head", values="mean")
            if grid.shape != shape:
                raise InterpError(f"induction_scores has a {grid.shape} grid of {name!r}; the model has {shape}")
            return grid.to_numpy(), np.zeros(shape), "induction_scores"
        seed = int(name.removeprefix("random:"))
        generator = np.random.default_rng([seed, 4])
        return generator.random(shape), np.zeros(shape), f"seed {seed}"


# --------------------------------------------------------------------------- the sweep


def _safe(text: str) -> str:
    return "".join(character if character.isalnum() or character in "-_" else "_" for character in str(text))


def _cells(study: str, config: PruningConfig) -> list[tuple[Any, Any]]:
    """(head %, FFN %) pairs of a study."""
    if study == "heads":
        return [(percent, 0) for percent in (config.percents or DEFAULT_PERCENTS["heads"])]
    if study == "ffns":
        return [(0, percent) for percent in (config.percents or DEFAULT_PERCENTS["ffns"])]
    return [(head, ffn) for head in config.head_percents for ffn in config.ffn_percents]


_CROSS_TASK = ("aggregate", "most_correlated", "least_correlated")  # rankings that depend on the run's task set


def _cell_path(folder: Path, task: str, shots: int, ranking: str, head: Any, ffn: Any, tasks: Sequence[str]) -> Path:
    """One cell's file. Cross-task rankings also key on the task set: the aggregate of {A} is not that of {A, B}."""
    if ranking in _CROSS_TASK:
        ranking = f"{ranking}-{hashlib.sha256(','.join(sorted(tasks)).encode()).hexdigest()[:8]}"
    return folder / "cells" / f"{_safe(task)}__{shots}shot__{_safe(ranking)}__h{head}_f{ffn}.json"


def run_pruning(study: str, model: str, tasks: str | Sequence[str], shots: Sequence[Any], out: Path,
                config: PruningConfig = PruningConfig(), *, results: Path | None = None, device: str = "auto",
                dtype: str = "float32", device_map: str | None = None, bridge_record: Any = None, figures: bool = True,
                show_progress: bool = True) -> dict[str, pd.DataFrame]:
    """Sweep (ranking, percentages, task, shots) of one study; write each cell as it finishes; resume.

    Writes ``out/pruning/{study}/{setting}/cells/*.json`` (one per cell), then ``out/pruning_{study}``
    (tidy table), ``out/pruning_{study}_thresholds`` and ``out/pruning_rankings`` (the
    importance scores used), and figures into ``out/figures``. ``results`` is the folder with
    ``induction_scores`` (default ``out``).
    """
    from tqdm.auto import tqdm

    from interp.store import read_json, read_table, run_metadata, write_json, write_table

    check_choice("study", study, STUDIES)
    out, results = Path(out), Path(results or out)
    names = resolve_task_names(tasks) if isinstance(tasks, str) else list(tasks)
    loaded = {name: load_task(name) for name in names}
    labels = [loaded[name].name for name in names]
    for k in shots:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InterpError(f"shots must be integers 0 or more, got {k!r}")
    rankings = config.study_rankings(study)
    if study == "ffns" and any(name in INDUCTION_RANKINGS for name in rankings):
        bad = next(name for name in rankings if name in INDUCTION_RANKINGS)
        raise InterpError(f"ranking {bad!r} scores heads only; FFN studies take own, aggregate, most_correlated, "
                          "least_correlated, task:NAME or random")
    # Cells made under other evaluation settings live in another folder and are never mixed in.
    setting = (f"{config.ablation}_items{config.max_items or 'all'}_choices{config.n_choices}_seed{config.seed}_"
               f"{config.head_importance}_{config.ffn_importance}")
    if len(labels) == 1:  # no other task to transfer from
        rankings = tuple(name for name in rankings if name not in ("most_correlated", "least_correlated"))
    folder = out / "pruning" / study / setting
    grid = _cells(study, config)
    todo = [(name, label, k, ranking, head, ffn) for name, label in zip(names, labels) for k in shots
            for ranking in rankings for head, ffn in grid
            if not _cell_path(folder, label, k, ranking, head, ffn, labels).exists()]
    if todo:
        prompt_sets = {(label, k): build_prompts(loaded[name], k, config.prompt_config())
                       for name, label in zip(names, labels) for k in shots}  # bad input fails before the model loads
        induction = read_table(results / "induction_scores") if (results / "induction_scores.parquet").exists() \
            or (results / "induction_scores.csv").exists() else None
        if bridge_record is None:
            from interp.models.loading import load_model
            bridge_record = load_model(model, device=device, dtype=dtype, device_map=device_map)
        bridge, record = bridge_record
        n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
        encoded = {key: encode_prompts(bridge.tokenizer, prompts, bridge.cfg.n_ctx, key[0])
                   for key, prompts in prompt_sets.items()}  # tokenised once for every mask
        means = {}
        if config.ablation == "mean":
            from interp.importance.methods import activation_means
            means = {key: activation_means(bridge, value, config.batch_size) for key, value in encoded.items()}
        ranking_stem = out / "pruning_rankings"
        stored = read_table(ranking_stem) if ranking_stem.with_suffix(".parquet").exists() else pd.DataFrame(
            columns=["task", "shots", "component", "layer", "head", "value", "tiebreak", "setting"])
        if "setting" not in stored.columns:  # a table from before settings were recorded: start afresh
            stored = pd.DataFrame(columns=["task", "shots", "component", "layer", "head", "value", "tiebreak", "setting"])
        stored = stored[stored["setting"] == setting] if len(stored) else stored
        components = {"heads": ("head",), "ffns": ("ffn",), "combined": ("head", "ffn")}[study]
        missing = {key: [component for component in components
                         if stored[(stored["task"] == key[0]) & (stored["shots"] == key[1])
                                   & (stored["component"] == component)].empty] for key in encoded}
        needed = [key for key, parts in missing.items() if parts]
        for key in tqdm(needed, desc="importance rankings", disable=not show_progress or not needed):
            rows = _ranking_rows(*key, _component_scores(bridge, encoded[key], config, means.get(key), missing[key]))
            rows["setting"] = setting
            stored = pd.concat([stored, rows], ignore_index=True) if len(stored) else rows
            others = read_table(ranking_stem) if ranking_stem.with_suffix(".parquet").exists() else stored.iloc[:0]
            others = others if "setting" in others.columns else stored.iloc[:0]
            write_table(pd.concat([others[others["setting"] != setting], stored], ignore_index=True), ranking_stem)
        ranker = _Rankings(stored, {"head": (n_layers, n_heads), "ffn": (n_layers,)}, induction)
        groups: dict[tuple, list] = {}
        for name, label, k, ranking, head, ffn in todo:
            groups.setdefault((label, k, ranking), []).append((head, ffn))
        n_batches = {key: math.ceil(value.n_sequences / config.batch_size) for key, value in encoded.items()}
        bar = tqdm(total=sum(n_batches[key[:2]] for key in groups), disable=not show_progress,
                   desc=f"pruning {study}", unit="batch")
        for (label, k, ranking), percents in groups.items():
            bar.set_postfix_str(f"{label} {k}-shot {ranking}")
            started = time.perf_counter()
            head_rank = ranker.resolve(ranking, label, k, "head", labels) if study != "ffns" else None
            ffn_rank = ranker.resolve(ranking, label, k, "ffn", labels) if study != "heads" else None
            if (study != "ffns" and head_rank is None) or (study != "heads" and ffn_rank is None):
                bar.update(n_batches[(label, k)])
                continue  # e.g. cross-task rankings with one task
            head_masks = torch.stack([torch.from_numpy(pruning_mask(head_rank[0], head, head_rank[1])) if head_rank
                                      else torch.zeros(n_layers, n_heads, dtype=torch.bool) for head, _ in percents])
            ffn_masks = torch.stack([torch.from_numpy(pruning_mask(ffn_rank[0], ffn, ffn_rank[1])) if ffn_rank
                                     else torch.zeros(n_layers, dtype=torch.bool) for _, ffn in percents])
            sums = masked_scores(bridge, encoded[(label, k)], head_masks, ffn_masks, means.get((label, k)),
                                 config.batch_size, config.masks_per_forward, progress=bar.update)
            seconds = (time.perf_counter() - started) / len(percents)
            source = (head_rank or ffn_rank)[2]
            for (head, ffn), summary, head_mask, ffn_mask in zip(percents, _summaries(sums, encoded[(label, k)]),
                                                                  head_masks, ffn_masks):
                cell = {"model": record.name, "study": study, "ranking": ranking, "ranking_source": source,
                        "task": label, "shots": k, "head_percent": head, "ffn_percent": ffn,
                        "heads_removed": int(head_mask.sum()), "ffns_removed": int(ffn_mask.sum()),
                        "ablation": config.ablation, **summary, "seconds": seconds}
                write_json(cell, _cell_path(folder, label, k, ranking, head, ffn, labels))
        bar.close()
        write_json(run_metadata(record, study=study, tasks=labels, shots=list(shots), config=asdict(config)),
                   out / f"pruning_{study}.json")
    wanted = [_cell_path(folder, label, k, ranking, head, ffn, labels)
              for label in labels for k in shots for ranking in rankings for head, ffn in grid]
    table = pd.DataFrame([read_json(path) for path in wanted if path.exists()])
    tables = {f"pruning_{study}": table}
    if not table.empty:
        table = table.sort_values(["ranking", "task", "shots", "head_percent", "ffn_percent"]).reset_index(drop=True)
        tables[f"pruning_{study}"] = table
        if study != "combined":
            column = "head_percent" if study == "heads" else "ffn_percent"
            tables[f"pruning_{study}_thresholds"] = threshold_table(table.rename(columns={column: "percent"}), "percent",
                                                                     config.tolerance)
        for name, frame in tables.items():
            write_table(frame, out / name)
        if figures:
            _write_figures(study, tables, out / "figures")

        claims_table(out)
    return tables


def _write_figures(study: str, tables: dict[str, pd.DataFrame], folder: Path) -> None:
    """The same figures the report draws from these tables (one definition, in figures_all)."""
    from interp.output.figures import save_figure
    from interp.output.catalogue import known_pruning_figures

    name = f"pruning_{study}"
    for entry in known_pruning_figures(name, tables[name]) or []:
        save_figure(entry.figure, folder / entry.name)
