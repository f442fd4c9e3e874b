"""Task importance of every attention head and FFN: gradient, exact ablation, attribution patching.

Three estimates for one (task, shots), each one value per head and per FFN (see
``docs/methods.md``):

- **gradient** (Michel et al. 2019; Bansal et al. 2023): ``I_h = sum_tokens |z_h . dL/dz_h| /
  n_tokens`` with ``z_h`` = ``hook_z`` (head output before W_O) and ``L`` the loss on the gold
  continuation of context + gold answer; FFNs through ``hook_mlp_out``. ``gradient_l2`` adds
  Michel's per-layer L2 normalisation of the head scores.
- **ablation**: the exact change in accuracy, length-normalised accuracy and gold loss when one
  head (or FFN) is replaced by zero, by its mean over the task's tokens, or by its value on
  another item's prompt (resampling). The clean residual entering every block is cached, so an
  ablation in layer ``l`` starts the forward at block ``l``; the ablations of one layer (every
  head and the FFN) share one batched forward, and only the positions that predict a
  continuation token are unembedded.
- **attribution** (Nanda; Syed et al. 2023): first-order estimate of the mean-ablation loss
  change, ``sum (mean - z) . dL/dz`` from the same forward and backward as the gradient scores.

Tables are tidy: one row per (component, layer, head, metric); ``head`` is -1 for FFN rows.

>>> config = ImportanceConfig(ablations=("zero",))
>>> config.ablations
('zero',)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError, check_choice
from interp.hooks import ResumedRun, mask_ffn_hook, mask_heads_hook, mlp_out_hook, n_layers_heads, z_hook
from interp.tasks.evaluation import (
    Batch,
    EncodedPrompts,
    count_batches,
    iterate_batches,
    logits_to_target_logprobs,
    make_batch,
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
    "GRADIENT_POSITIONS",
    "METHODS",
    "ImportanceConfig",
    "ablation_importance",
    "ablation_replacements",
    "attribution_agreement",
    "activation_means",
    "resample_donors",
    "gradient_importance",
    "importance_table",
    "l2_normalise",
    "single_ablation_scores",
]

METHODS = ("gradient", "ablation", "attribution")
GRADIENT_POSITIONS = ("all", "answer")  # tokens gradient importance sums over
ABLATIONS = ("zero", "mean", "resample")


@dataclass(frozen=True)
class ImportanceConfig:
    """Settings for an importance sweep."""

    ablations: tuple[str, ...] = ABLATIONS  # which replacements the exact ablation tries
    batch_size: int = 8  # sequences per forward (ablation: times n_heads + 1 copies)
    ablations_per_forward: int | None = None  # copies sharing one forward; None: a whole layer's
    max_items: int | None = None  # evaluate only this many items per task (None: every non-demo item)
    seed: int = 0  # demo split, demonstrations, distractors and resampling donors
    n_choices: int = 4  # candidates for items without fixed choices
    layers: tuple[int, ...] | None = None  # exact ablation only in these layers (None: all); others stay NaN
    # gradient importance sums |z . dL/dz| over every token of the gold sequence (Bansal et al.'s definition) or
    # only over the positions that predict the answer; the choice reorders the heads (docs/methods.md)
    gradient_positions: str = "all"
    prepend_bos: bool = True  # the model's BOS before every prompt (PromptConfig.prepend_bos; docs/methods.md)

    def __post_init__(self) -> None:
        for ablation in self.ablations:
            check_choice("ablation", ablation, ABLATIONS)
        check_choice("gradient positions", self.gradient_positions, GRADIENT_POSITIONS)
        if self.batch_size < 1:
            raise InterpError(f"batch_size must be positive, got {self.batch_size}")
        if self.ablations_per_forward is not None and self.ablations_per_forward < 1:
            raise InterpError(f"ablations_per_forward must be positive or None, got {self.ablations_per_forward}")

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(n_choices=self.n_choices, seed=self.seed, max_items=self.max_items,
                            prepend_bos=self.prepend_bos)

    def result_label(self, method: str) -> str:
        """``method`` plus the non-default estimator choices (``gradient-answer``, ``ablation-nobos``): a result's
        file name."""
        parts = [method]
        if method == "gradient" and self.gradient_positions != "all":
            parts.append(self.gradient_positions)
        if not self.prepend_bos:
            parts.append("nobos")
        return "-".join(parts)

    def estimator(self, method: str) -> str:
        """The ``estimator`` column of ``method``'s rows: which tokens the gradient sums over, or ``exact``."""
        return {"gradient": self.gradient_positions, "attribution": "all"}.get(method, "exact")


def _gold_loss_per_target(values: Float[Tensor, " target"], batch: Batch) -> Float[Tensor, " batch"]:
    """Per-sequence mean negative log-likelihood of the continuation tokens."""
    return -sum_by_row(values, batch) / sum_by_row(torch.ones_like(values), batch)


# --------------------------------------------------------------------------- gradient / attribution


@dataclass
class _GradientSums:
    """Running sums over the gold sequences' tokens, for all layers at once."""

    abs_head: Tensor  # (layer, head): sum |z . g|
    abs_ffn: Tensor  # (layer,): sum |mlp_out . g|
    dot_head: Tensor  # (layer, head): sum z . g
    dot_ffn: Tensor  # (layer,)
    grad_head: Tensor  # (layer, head, d_head): sum g
    grad_ffn: Tensor  # (layer, d_model)
    act_head: Tensor  # (layer, head, d_head): sum z, for the mean
    act_ffn: Tensor  # (layer, d_model)
    n_tokens: float = 0.0
    n_items: int = 0
    n_scored: float = 0.0  # tokens the gradient scores sum over (``positions``)

    @classmethod
    def zeros(cls, n_layers: int, n_heads: int, d_head: int, d_model: int) -> _GradientSums:
        """Empty sums (float64 on the CPU) for a model of this shape."""
        return cls(
            torch.zeros(n_layers, n_heads, dtype=torch.float64), torch.zeros(n_layers, dtype=torch.float64),
            torch.zeros(n_layers, n_heads, dtype=torch.float64), torch.zeros(n_layers, dtype=torch.float64),
            torch.zeros(n_layers, n_heads, d_head, dtype=torch.float64),
            torch.zeros(n_layers, d_model, dtype=torch.float64),
            torch.zeros(n_layers, n_heads, d_head, dtype=torch.float64),
            torch.zeros(n_layers, d_model, dtype=torch.float64),
        )


def _storing_hook(stored: dict[str, Tensor], name: str) -> Callable:
    """A forward hook that keeps its activation in ``stored[name]`` and passes it on unchanged."""
    def keep(activation: Tensor, hook: Any) -> Tensor:
        stored[name] = activation  # hook.name may be an alias; key by the name asked for
        return activation
    return keep


def _gold_loss_gradients(bridge: "TransformerBridge", batch: Batch,
                         names: list[str]) -> tuple[dict[str, Tensor], tuple[Tensor, ...]]:
    """One forward + backward: the activations at ``names`` and the gold loss's gradients there."""
    stored: dict[str, Tensor] = {}
    with torch.enable_grad():
        logits = bridge.run_with_hooks(batch.tokens, fwd_hooks=[(name, _storing_hook(stored, name)) for name in names],
                                       return_type="logits")
        values = logits_to_target_logprobs(logits[batch.target_rows, batch.target_positions], batch)
        loss = _gold_loss_per_target(values, batch).sum()
        gradients = torch.autograd.grad(loss, [stored[name] for name in names])
    return stored, gradients


def _stacked_on(device: torch.device, tensors) -> Tensor:
    """``torch.stack`` of per-layer tensors moved to one device (layers may be split over GPUs)."""
    return torch.stack([tensor.to(device) for tensor in tensors])


def _add_batch_sums(sums: _GradientSums, batch: Batch, stored: dict[str, Tensor], gradients: tuple[Tensor, ...],
                    n_layers: int, positions: str) -> None:
    """Add one batch's activation . gradient products (and the sums attribution needs) to ``sums``."""
    valid = batch.valid  # (batch, pos)
    z = _stacked_on(valid.device, (stored[z_hook(layer)] for layer in range(n_layers))).detach().double()
    z_grad = _stacked_on(valid.device, gradients[:n_layers]).double()  # (layer, batch, pos, head, d_head)
    mlp = _stacked_on(valid.device, (stored[mlp_out_hook(layer)] for layer in range(n_layers))).detach().double()
    mlp_grad = _stacked_on(valid.device, gradients[n_layers:]).double()  # (layer, batch, pos, d_model)
    mask = valid.double()
    scored = mask if positions == "all" else torch.zeros_like(mask).index_put_(
        (batch.target_rows, batch.target_positions), torch.ones((), dtype=mask.dtype, device=mask.device))
    head_dot = einops.einsum(z, z_grad,
                             "layer batch pos head d_head, layer batch pos head d_head -> layer batch pos head")
    ffn_dot = einops.einsum(mlp, mlp_grad, "layer batch pos d_model, layer batch pos d_model -> layer batch pos")
    sums.abs_head += einops.einsum(head_dot.abs(), scored, "layer batch pos head, batch pos -> layer head").cpu()
    sums.dot_head += einops.einsum(head_dot, mask, "layer batch pos head, batch pos -> layer head").cpu()
    sums.abs_ffn += einops.einsum(ffn_dot.abs(), scored, "layer batch pos, batch pos -> layer").cpu()
    sums.dot_ffn += einops.einsum(ffn_dot, mask, "layer batch pos, batch pos -> layer").cpu()
    sums.grad_head += einops.einsum(z_grad, mask, "layer batch pos head d_head, batch pos -> layer head d_head").cpu()
    sums.grad_ffn += einops.einsum(mlp_grad, mask, "layer batch pos d_model, batch pos -> layer d_model").cpu()
    sums.act_head += einops.einsum(z, mask, "layer batch pos head d_head, batch pos -> layer head d_head").cpu()
    sums.act_ffn += einops.einsum(mlp, mask, "layer batch pos d_model, batch pos -> layer d_model").cpu()
    sums.n_tokens += float(mask.sum())
    sums.n_scored += float(scored.sum())
    sums.n_items += len(batch.sequence_ids)


def _gradient_scores(sums: _GradientSums) -> dict[str, Tensor]:
    """The gradient scores and mean-ablation attributions of the finished sums."""
    mean_head, mean_ffn = sums.act_head / sums.n_tokens, sums.act_ffn / sums.n_tokens
    # sum_tokens (mean - z) . g = mean . sum g - sum z . g  (the mean is fixed over tokens)
    head_attribution = (einops.einsum(mean_head, sums.grad_head, "layer head d_head, layer head d_head -> layer head")
                        - sums.dot_head) / sums.n_items
    ffn_attribution = (einops.einsum(mean_ffn, sums.grad_ffn, "layer d_model, layer d_model -> layer")
                       - sums.dot_ffn) / sums.n_items
    return {
        "head_gradient": sums.abs_head / sums.n_scored,
        "ffn_gradient": sums.abs_ffn / sums.n_scored,
        "head_attribution": head_attribution,
        "ffn_attribution": ffn_attribution,
    }


def gradient_importance(bridge: "TransformerBridge", encoded: EncodedPrompts,
                        batch_size: int = 8, positions: str = "all") -> dict[str, Tensor]:
    """Gradient importance and mean-ablation attribution from one forward + backward per batch.

    Returns tensors ``head_gradient`` (layer, head), ``ffn_gradient`` (layer,),
    ``head_attribution``, ``ffn_attribution``; the loss is each gold sequence's mean
    continuation NLL (summed over items for the gradient scores, averaged for attribution, so
    that attribution estimates the change of the mean gold loss that exact ablation reports).
    ``positions``: the gradient scores average ``|z . dL/dz|`` over every real token (``"all"``,
    Bansal et al.) or only over the positions whose logits predict an answer token
    (``"answer"``); attribution always sums over every token, as mean ablation replaces them all.
    """
    check_choice("gradient positions", positions, GRADIENT_POSITIONS)
    n_layers, n_heads = n_layers_heads(bridge)
    sums = _GradientSums.zeros(n_layers, n_heads, int(bridge.cfg.d_head), int(bridge.cfg.d_model))
    gold = encoded.gold_sequence.tolist()
    names = [z_hook(layer) for layer in range(n_layers)] + [mlp_out_hook(layer) for layer in range(n_layers)]
    for batch in iterate_batches(encoded, gold, batch_size, bridge.cfg.device, pad_id_of(bridge.tokenizer)):
        stored, gradients = _gold_loss_gradients(bridge, batch, names)
        _add_batch_sums(sums, batch, stored, gradients, n_layers, positions)
    return _gradient_scores(sums)


# --------------------------------------------------------------------------- exact ablation


def _collect_activations(bridge: "TransformerBridge", tokens: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Clean hook_z and hook_mlp_out of every layer for ``tokens``."""
    n_layers, _ = n_layers_heads(bridge)
    names = {z_hook(layer) for layer in range(n_layers)} | {mlp_out_hook(layer) for layer in range(n_layers)}
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name in names)
    # .to: on a model split over GPUs each layer's activations sit on its layer's device
    return ([cache[z_hook(layer)].to(tokens.device) for layer in range(n_layers)],
            [cache[mlp_out_hook(layer)].to(tokens.device) for layer in range(n_layers)])


def activation_means(bridge: "TransformerBridge", encoded: EncodedPrompts, batch_size: int = 8
                     ) -> tuple[Float[Tensor, "layer head d_head"], Float[Tensor, "layer d_model"]]:
    """Mean hook_z and hook_mlp_out over every real token of the gold sequences."""
    head_sum, ffn_sum, count = 0.0, 0.0, 0.0
    for batch in iterate_batches(encoded, encoded.gold_sequence.tolist(), batch_size, bridge.cfg.device,
                                 pad_id_of(bridge.tokenizer)):
        z, mlp = _collect_activations(bridge, batch.tokens)
        mask = batch.valid.double()
        head_sum = head_sum + einops.einsum(torch.stack(z).double(), mask,
                                            "layer batch pos head d_head, batch pos -> layer head d_head")
        ffn_sum = ffn_sum + einops.einsum(torch.stack(mlp).double(), mask,
                                          "layer batch pos d_model, batch pos -> layer d_model")
        count += float(mask.sum())
    dtype = next(bridge.parameters()).dtype
    return (head_sum / count).to(dtype), (ffn_sum / count).to(dtype)


def resample_donors(n_items: int, seed: int) -> np.ndarray:
    """Each item's donor: the next item along a seeded random cycle, so never itself.

    >>> donors = resample_donors(5, seed=0)
    >>> bool((donors != np.arange(5)).all()), sorted(donors.tolist())
    (True, [0, 1, 2, 3, 4])
    """
    if n_items < 2:
        raise InterpError(f"resampling ablation needs at least 2 items, got {n_items}")
    order = np.random.default_rng([seed, 7]).permutation(n_items)
    donors = np.empty(n_items, dtype=np.int64)
    donors[order] = np.roll(order, -1)
    return donors


@dataclass
class _Replacements:
    """What each ablation puts in place of a head's z or an FFN's output, for one batch."""

    kind: str
    mean_head: Tensor | None = None  # (layer, head, d_head)
    mean_ffn: Tensor | None = None  # (layer, d_model)
    donor_head: list[Tensor] = field(default_factory=list)  # per layer (batch, pos, head, d_head)
    donor_ffn: list[Tensor] = field(default_factory=list)  # per layer (batch, pos, d_model)

    def head(self, layer: int) -> Tensor:
        if self.kind == "zero":
            return torch.zeros(())
        if self.kind == "mean":
            return self.mean_head[layer]
        return self.donor_head[layer]

    def ffn(self, layer: int) -> Tensor:
        if self.kind == "zero":
            return torch.zeros(())
        if self.kind == "mean":
            return self.mean_ffn[layer]
        return self.donor_ffn[layer]


def ablation_replacements(bridge: "TransformerBridge", encoded: EncodedPrompts, batch: Batch, kind: str,
                          means: tuple[Tensor, Tensor] | None, seed: int) -> _Replacements:
    """The replacement values of ``kind`` for every layer, aligned with ``batch``.

    Resampling takes the clean activation of the donor item's gold sequence at the same
    position; where the donor is shorter, its last real token stands in.
    """
    if kind == "zero":
        return _Replacements(kind)
    if kind == "mean":
        return _Replacements(kind, mean_head=means[0], mean_ffn=means[1])
    donors = resample_donors(encoded.n_items, seed)
    items = torch.zeros(len(batch.tokens), dtype=torch.long)  # each row's prompt (a packed row holds one)
    items[batch.target_rows.cpu()] = encoded.item_of_sequence[batch.sequence_ids.cpu()[batch.slots.cpu()]]
    items = items.numpy()
    donor_items = donors[items]
    unique, inverse = np.unique(donor_items, return_inverse=True)
    donor_batch = make_batch(encoded, encoded.gold_sequence[unique].tolist(), bridge.cfg.device,
                             pad_id_of(bridge.tokenizer))
    z, mlp = _collect_activations(bridge, donor_batch.tokens)
    donor_lengths = donor_batch.valid.sum(-1).long()  # (donor,)
    width = batch.tokens.shape[1]
    # a packed (shared-context) row takes the donor at each token's position in its own sequence
    positions = (torch.arange(width, device=batch.tokens.device).unsqueeze(0) if batch.position_ids is None
                 else batch.position_ids)
    rows = torch.as_tensor(inverse, device=batch.tokens.device)
    # (batch, pos) index into each donor's positions, clamped to its last real token
    gather = torch.minimum(positions, (donor_lengths[rows] - 1).unsqueeze(1))
    donor_width = donor_batch.tokens.shape[1]
    if donor_width < width:
        pad = width - donor_width
        z = [torch.nn.functional.pad(layer_z, (0, 0, 0, 0, 0, pad)) for layer_z in z]
        mlp = [torch.nn.functional.pad(layer_mlp, (0, 0, 0, pad)) for layer_mlp in mlp]
    return _Replacements(
        kind,
        donor_head=[layer_z[rows.unsqueeze(1), gather] for layer_z in z],
        donor_ffn=[layer_mlp[rows.unsqueeze(1), gather] for layer_mlp in mlp],
    )


def _one_head_per_copy(heads: Tensor, n_heads: int) -> Tensor:
    """Head index per copy (-1: none) -> (copies, head) mask."""
    return heads.unsqueeze(1) == torch.arange(n_heads, device=heads.device)


def ablation_steps(encoded: EncodedPrompts, config: ImportanceConfig, n_layers: int) -> int:
    """How many times :func:`ablation_importance` reports progress: once per layer, kind and batch of prompts.

    The batches hold ``batch_size`` prompts (each prompt's choices share one row), not sequences;
    ``n_layers`` is the number of layers ablated.
    """
    return n_layers * len(config.ablations) * count_batches(encoded, config.batch_size, share_context=True)


def ablation_importance(bridge: "TransformerBridge", encoded: EncodedPrompts,
                        config: ImportanceConfig = ImportanceConfig(),
                        means: tuple[Tensor, Tensor] | None = None, progress: Callable[[int], None] | None = None,
                        share_context: bool = True) -> dict[str, dict[str, Tensor]]:
    """Exact single-component ablation scores (``share_context``: one row per prompt, see tasks.evaluation).

    Returns, per ablation kind, tensors ``head_logprob`` (layer, head, sequence) and
    ``ffn_logprob`` (layer, sequence) of summed continuation log-probabilities, plus
    ``clean_logprob`` (sequence,) and ``n_tokens`` (sequence,).
    """
    n_layers, n_heads = n_layers_heads(bridge)
    if "mean" in config.ablations and means is None:
        means = activation_means(bridge, encoded, config.batch_size)
    per_forward = config.ablations_per_forward or (n_heads + 1)
    # Each copy ablates one component of one layer: heads 0..n_heads-1, then the FFN (-1 head).
    components = torch.arange(-1, n_heads).roll(-1)  # [0, 1, ..., n_heads-1, -1]
    results = {kind: {"head_logprob": torch.full((n_layers, n_heads, encoded.n_sequences), math.nan,
                                                 dtype=torch.float64),
                      "ffn_logprob": torch.full((n_layers, encoded.n_sequences), math.nan, dtype=torch.float64)}
               for kind in config.ablations}
    layers = range(n_layers) if config.layers is None else config.layers
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise InterpError(f"layer {layer} does not exist; the model has layers 0..{n_layers - 1}")
    clean = torch.zeros(encoded.n_sequences, dtype=torch.float64)
    n_tokens = torch.zeros(encoded.n_sequences, dtype=torch.float64)
    for batch in iterate_batches(encoded, list(range(encoded.n_sequences)), config.batch_size, bridge.cfg.device,
                                 pad_id_of(bridge.tokenizer), share_context):
        run = ResumedRun(bridge, batch.tokens, target_logprob_readout(bridge, batch), batch.forward_kwargs())
        ids = batch.sequence_ids.cpu()
        clean[ids] = sum_by_row(run.clean, batch).double().cpu()
        n_tokens[ids] = sum_by_row(torch.ones_like(run.clean), batch).double().cpu()
        for kind in config.ablations:
            replacements = ablation_replacements(bridge, encoded, batch, kind, means, config.seed)
            for layer in layers:
                for start in range(0, len(components), per_forward):
                    heads = components[start : start + per_forward]
                    copies = len(heads)
                    hooks = [(z_hook(layer),
                              mask_heads_hook(_one_head_per_copy(heads, n_heads), replacements.head(layer), copies)),
                             (mlp_out_hook(layer), mask_ffn_hook(heads == -1, replacements.ffn(layer), copies))]
                    sums = sum_by_row(run.resume(layer, copies, hooks), batch).double().cpu()  # (copies, batch)
                    for copy, head in enumerate(heads.tolist()):
                        if head >= 0:
                            results[kind]["head_logprob"][layer, head, ids] = sums[copy]
                        else:
                            results[kind]["ffn_logprob"][layer, ids] = sums[copy]
                if progress is not None:
                    progress(1)
    for kind in config.ablations:
        results[kind]["clean_logprob"] = clean
        results[kind]["n_tokens"] = n_tokens
    return results


def single_ablation_scores(bridge: "TransformerBridge", encoded: EncodedPrompts, layer: int, head: int | None,
                           kind: str,
                           means: tuple[Tensor, Tensor] | None = None, batch_size: int = 8, seed: int = 0
                           ) -> Float[Tensor, " sequence"]:
    """Reference: one full ``run_with_hooks`` forward with one head (``head=None``: the FFN) ablated."""
    out = torch.zeros(encoded.n_sequences, dtype=torch.float64)
    for batch in iterate_batches(encoded, list(range(encoded.n_sequences)), batch_size, bridge.cfg.device,
                                 pad_id_of(bridge.tokenizer)):
        replacements = ablation_replacements(bridge, encoded, batch, kind, means, seed)
        if head is None:
            hooks = [(mlp_out_hook(layer), mask_ffn_hook(torch.tensor([True]), replacements.ffn(layer), 1))]
        else:
            head_mask = _one_head_per_copy(torch.tensor([head]), int(bridge.cfg.n_heads))
            hooks = [(z_hook(layer), mask_heads_hook(head_mask, replacements.head(layer), 1))]
        with torch.no_grad():
            logits = bridge.run_with_hooks(batch.tokens, fwd_hooks=hooks, return_type="logits")
        values = logits_to_target_logprobs(logits[batch.target_rows, batch.target_positions], batch)
        out[batch.sequence_ids.cpu()] = sum_by_row(values, batch).double().cpu()
    return out


# --------------------------------------------------------------------------- tables and sweeps


def _rows(values: Tensor, component: str, metric: str) -> pd.DataFrame:
    array = values.detach().cpu().double().numpy()
    if component == "head":
        layers, heads = np.meshgrid(np.arange(array.shape[0]), np.arange(array.shape[1]), indexing="ij")
        return pd.DataFrame({"component": "head", "layer": layers.ravel(), "head": heads.ravel(), "metric": metric,
                             "value": array.ravel()})
    return pd.DataFrame({"component": "ffn", "layer": np.arange(array.shape[0]), "head": -1, "metric": metric,
                         "value": array})


def _paired_rows(rows: pd.DataFrame, ablated: Float[Tensor, "... item"], clean: Float[Tensor, " item"]) -> pd.DataFrame:
    """``rows`` (one per component, in ``_rows`` order) with the paired interval of each mean change over the items.

    The ablated and clean values are measured on the same items, so the interval is of the
    per-item difference: exact McNemar / Tango for 0/1 correctness, a percentile bootstrap for
    losses (:func:`interp.stats.paired_difference`).  A few hundred components: seconds.
    """
    from interp.stats import paired_difference

    per_component = ablated.detach().cpu().double().reshape(len(rows), -1).numpy()
    baseline = clean.detach().cpu().double().numpy()
    measured = np.isfinite(per_component).all(axis=1)  # a layer left out (--layers) has no values, so no interval
    results = {index: paired_difference(per_component[index], baseline) for index in np.flatnonzero(measured)}
    column = lambda name: [getattr(results[index], name) if index in results else np.nan  # noqa: E731
                           for index in range(len(rows))]
    return rows.assign(ci_low=column("ci_low"), ci_high=column("ci_high"), p_value=column("p_value"),
                       interval_method=[f"paired {results[index].method}" if index in results else "none"
                                        for index in range(len(rows))], n_items=len(baseline))


def l2_normalise(scores: Float[Tensor, "layer head"]) -> Float[Tensor, "layer head"]:
    """Michel et al.'s per-layer L2 normalisation of head scores (a layer of zeros stays zero)."""
    norms = scores.norm(dim=1, keepdim=True)
    return scores / torch.where(norms > 0, norms, torch.ones_like(norms))


def importance_table(bridge: "TransformerBridge", encoded: EncodedPrompts, method: str,
                     config: ImportanceConfig = ImportanceConfig(),
                     progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """One method's scores as a tidy table, and the clean accuracy summary."""
    check_choice("method", method, METHODS)
    frames = []
    if method in ("gradient", "attribution"):
        scores = gradient_importance(bridge, encoded, config.batch_size, config.gradient_positions)
        if method == "gradient":
            frames += [_rows(scores["head_gradient"], "head", "gradient"),
                       _rows(l2_normalise(scores["head_gradient"]), "head", "gradient_l2"),
                       _rows(scores["ffn_gradient"], "ffn", "gradient")]
        else:
            frames += [_rows(scores["head_attribution"], "head", "attribution_mean_loss"),
                       _rows(scores["ffn_attribution"], "ffn", "attribution_mean_loss")]
        if progress is not None:
            progress(1)
        from interp.tasks.evaluation import score_sequences
        clean = score_sequences(bridge, encoded, config.batch_size)
        summary = summarise(multiple_choice_metrics(clean.logprob_sum, clean.n_tokens, encoded))
    else:
        results = ablation_importance(bridge, encoded, config, progress=progress)
        first = next(iter(results.values()))
        clean_metrics = multiple_choice_metrics(first["clean_logprob"], first["n_tokens"], encoded)
        summary = summarise(clean_metrics)
        for kind, result in results.items():
            for component, key in (("head", "head_logprob"), ("ffn", "ffn_logprob")):
                metrics = multiple_choice_metrics(result[key], first["n_tokens"], encoded)
                for name, clean_name in (("accuracy", "correct"), ("accuracy_norm", "correct_norm"),
                                         ("loss", "gold_loss")):
                    delta = metrics[clean_name].mean(-1) - clean_metrics[clean_name].mean(-1)
                    frames.append(_paired_rows(_rows(delta, component, f"{kind}_{name}_delta"),
                                               metrics[clean_name], clean_metrics[clean_name]))
    # the choices that change the numbers, in every row and in the summary, so results made with other choices never mix
    summary.update(estimator=config.estimator(method), prepend_bos=config.prepend_bos)
    return pd.concat(frames, ignore_index=True).assign(estimator=config.estimator(method),
                                                       prepend_bos=config.prepend_bos), summary


def attribution_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman rank correlation of attribution patching with exact mean ablation (loss change), per result.

    Needs both ``attribution`` and ``ablation`` (with the ``mean`` kind) rows for a (task, shots).
    """
    from scipy import stats

    rows = []
    estimate = table[table["metric"] == "attribution_mean_loss"]
    exact = table[table["metric"] == "mean_loss_delta"]
    keys = ["task", "shots", "component", "layer", "head"]
    merged = estimate.merge(exact, on=keys, suffixes=("_attribution", "_ablation"))
    for (task, shots, component), part in merged.groupby(["task", "shots", "component"]):
        part = part.dropna(subset=["value_attribution", "value_ablation"])
        if len(part) >= 3:
            rho = stats.spearmanr(part["value_attribution"], part["value_ablation"]).statistic
            rows.append({"task": task, "shots": shots, "component": component, "n": len(part), "spearman": rho})
    return pd.DataFrame(rows)
