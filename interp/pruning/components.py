"""Iterative head and FFN pruning by a ranking (Bansal et al. ACL 2023, sections 4-6).

Remove the ``x%`` lowest-ranked heads (or FFNs, or both) and evaluate every task and shot
count. A component is removed by masking its output through a hook: ``hook_z`` for a head
(multiplying its attention probabilities by 0 equals zeroing ``z_h``; see docs/methods.md) and
``hook_mlp_out`` for an FFN (skipping the FFN with its layer norm), replaced by zero or by its
mean over the task's tokens (``ablation``).

The rankings that order the components are :mod:`interp.pruning.rankings`; the sweep over
(ranking, percentage, task, shots) is :func:`interp.pruning.job.run_pruning`.

Work is shared: masks are deduplicated (0% is one evaluation for every ranking); the masks of a
group share one clean forward per batch, whose per-block residuals
(:class:`interp.hooks.ResumedRun`) let every masked copy start at the first layer that any copy
of the group masks, with the copies stacked along the batch.

>>> pruning_mask(np.array([[0.3, 0.1], [0.2, 0.4]]), 50).tolist()
[[False, True], [True, False]]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InterpError, check_choice
from interp.hooks import ResumedRun, component_mask_hooks, mlp_out_hook, z_hook
from interp.tasks.evaluation import (
    EncodedPrompts,
    iterate_batches,
    logits_to_target_logprobs,
    multiple_choice_metrics,
    pad_id_of,
    sum_by_row,
    summarise,
    target_logprob_readout,
)
from interp.tasks.prompts import PromptConfig

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "ABLATIONS",
    "DEFAULT_RANKINGS",
    "INDUCTION_RANKINGS",
    "STUDIES",
    "PruningConfig",
    "mask_summaries",
    "masked_scores",
    "masked_scores_reference",
    "prune_count",
    "pruning_mask",
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

    def grid(self, study: str) -> list[tuple[float | int, float | int]]:
        """(head %, FFN %) cells of ``study``; they must hold the unpruned 0%, which drops and thresholds are measured
        from.

        >>> PruningConfig(percents=(10, 20)).grid("heads")
        Traceback (most recent call last):
        ...
        interp.errors.InterpError: percents (10, 20) lack 0, the unpruned baseline that accuracy drops and thresholds
        are measured from; add it, e.g. 0,10,20
        """
        check_choice("study", study, STUDIES)
        if study != "combined":
            percents = self.percents or DEFAULT_PERCENTS[study]
            checked = {"percents": percents}
            cells = [(percent, 0) if study == "heads" else (0, percent) for percent in percents]
        else:
            checked = {"head_percents": self.head_percents, "ffn_percents": self.ffn_percents}
            cells = [(head, ffn) for head in self.head_percents for ffn in self.ffn_percents]
        for name, values in checked.items():
            if 0 not in values:
                example = ",".join(str(value) for value in (0, *values))
                raise InterpError(f"{name} {tuple(values)} lack 0, the unpruned baseline that accuracy drops and "
                                  f"thresholds are measured from; add it, e.g. {example}")
        return cells


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
        raise InterpError(f"head masks of shape {tuple(head_masks.shape)} do not fit (mask, {n_layers} layers, "
                          f"{n_heads} heads)")
    if tuple(ffn_masks.shape) != (head_masks.shape[0], n_layers):
        raise InterpError(f"FFN masks of shape {tuple(ffn_masks.shape)} do not fit ({head_masks.shape[0]} masks, "
                          f"{n_layers} layers)")
    return head_masks, ffn_masks


def masked_scores(bridge: "TransformerBridge", encoded: EncodedPrompts, head_masks: Bool[Tensor, "mask layer head"],
                  ffn_masks: Bool[Tensor, "mask layer"], means: tuple[Tensor, Tensor] | None = None,
                  batch_size: int = 8, masks_per_forward: int = 10,
                  progress: Callable[[int], None] | None = None, share_context: bool = True) -> Float[Tensor,
                                                                                                      "mask sequence"]:
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
                            means: tuple[Tensor, Tensor] | None = None, batch_size: int = 8) -> Float[Tensor,
                                                                                                      " sequence"]:
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
    return torch.tensor([len(tokens) - start for tokens,
                         start in zip(encoded.tokens, encoded.context_lengths, strict=True)],
                        dtype=torch.float64)


def mask_summaries(logprob_sums: Tensor, encoded: EncodedPrompts) -> list[dict[str, float]]:
    """Accuracy, loss and their intervals under each mask (rows of ``logprob_sums``), and per-item correctness.

    ``item_correct`` (``"0110..."`` in item order) lets pruned and unpruned cells be compared item by
    item (:func:`interp.pruning.thresholds.paired_effects`).
    """
    from interp.pruning.thresholds import encode_items

    metrics = multiple_choice_metrics(logprob_sums, _n_tokens(encoded), encoded)
    return [{**summarise({key: value[index] for key, value in metrics.items()}),
             "item_correct": encode_items(metrics["correct"][index])} for index in range(len(logprob_sums))]
