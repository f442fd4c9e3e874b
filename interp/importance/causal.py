"""The causal test: remove the top-k heads of a ranking and watch in-context learning, against k random heads.

Bansal et al. (ACL 2023, section 5) and Crosbie & Shutova (NAACL Findings 2025) ask whether the
heads with the highest induction scores *cause* few-shot accuracy: remove them and compare with
removing as many random heads.  Here, for one (task, shots):

- **head sets**: the top ``k`` heads by prefix matching, by copying (``induction_scores``, mean
  over seeds) and by the task's own gradient importance (:func:`interp.importance.methods.gradient_importance`),
  for ``k`` = each percentage of all heads (:func:`head_count`); and ``k`` random heads, one
  seeded permutation per draw, so a draw's sets are nested across ``k`` as a ranking's are;
- **ablations** (:data:`ABLATION_KINDS`): ``zero`` (the head outputs nothing), ``mean`` (its
  mean output over the evaluated tokens) and ``knockout`` (the head keeps working, but its
  pre-softmax scores on the induction edges are ``-inf``; :mod:`interp.induction.knockout`,
  Crosbie & Shutova 2025); the registry is the extension point for more kinds
  (:class:`AblationContext` carries the token ids and, for packed rows, which keys each query may see);
- **per item**: correctness and the gold continuation's summed log-probability with every set
  removed, next to the unablated model's; and the loss on repeated random tokens (repeats 2..R,
  where induction heads act; repeat 1 beside it).

Every head set of one (task, shots, ablation) is a stacked copy of the batch in one resumed
forward (:class:`interp.hooks.ResumedRun`, from the first layer any set touches), and the
choices of a prompt share its context (:mod:`interp.tasks.evaluation`).  The sweep, its resumable
cells and the paired statistics are in :mod:`interp.importance.causal_sweep`.

>>> mask = top_heads_mask(np.array([[0.1, 0.9], [0.5, 0.2]]), 2)
>>> mask.tolist()
[[False, True], [True, False]]
>>> head_count(270, 1), head_count(270, 10), head_count(8, 1)
(3, 27, 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import einops
import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.hooks import Hook, ResumedRun, component_mask_hooks, n_layers_heads, z_hook
from interp.induction.knockout import (
    check_knockout_supported,
    induction_edges,
    knockout_hooks,
    previous_positions,
    word_starts,
)
from interp.tasks.evaluation import EncodedPrompts, iterate_batches, pad_id_of, sum_by_row, target_logprob_readout

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from interp.induction.sequences import SequenceConfig

__all__ = [
    "ABLATION_KINDS",
    "AblationContext",
    "AblationKind",
    "head_count",
    "head_set_scores",
    "random_heads_mask",
    "repeated_loss_by_head_set",
    "token_means",
    "top_heads_mask",
]


# ------------------------------------------------------------------------------ ablation kinds


@dataclass(frozen=True)
class AblationContext:
    """What a hook builder may need about the batch being run (one unstacked copy)."""

    bridge: Any
    tokens: Int[Tensor, "batch pos"]
    visible: Bool[Tensor, "batch query key"] | None  # packed rows: keys each query may see; None: plain causal rows
    means: tuple[Tensor, Tensor] | None  # mean hook_z (layer, head, d_head) and FFN output (layer, d_model)


HookBuilder = Callable[[Bool[Tensor, "copies layer head"], int, AblationContext], list[Hook]]


@dataclass(frozen=True)
class AblationKind:
    """How a head set is removed: hooks for stacked copies, each copy removing its own heads."""

    build_hooks: HookBuilder  # (head masks of the copies, first layer run, context) -> hooks from that layer on
    needs_means: bool  # mean activations over the evaluated tokens are computed first and passed in the context


def _zero_hooks(head_masks: Tensor, start: int, context: AblationContext) -> list[Hook]:
    no_ffns = torch.zeros(head_masks.shape[:2], dtype=torch.bool)
    return component_mask_hooks(head_masks, no_ffns, None, start)


def _mean_hooks(head_masks: Tensor, start: int, context: AblationContext) -> list[Hook]:
    if context.means is None:
        raise InterpError("mean ablation needs the mean activations; none were computed")
    no_ffns = torch.zeros(head_masks.shape[:2], dtype=torch.bool)
    return component_mask_hooks(head_masks, no_ffns, context.means, start)


def _knockout_hooks(head_masks: Tensor, start: int, context: AblationContext) -> list[Hook]:
    """Attention knockout of the marked heads' induction edges (:mod:`interp.induction.knockout`, word granularity)."""
    check_knockout_supported(context.bridge)
    previous = None if context.visible is None else previous_positions(context.visible)
    starts = word_starts(context.bridge.tokenizer, context.tokens, previous)
    return knockout_hooks(induction_edges(context.tokens, starts, context.visible), head_masks, start)


# Extension point: add an entry here to make a new ablation kind available to `interp ablate`.
ABLATION_KINDS: dict[str, AblationKind] = {
    "zero": AblationKind(_zero_hooks, needs_means=False),
    "mean": AblationKind(_mean_hooks, needs_means=True),
    "knockout": AblationKind(_knockout_hooks, needs_means=False),  # the heads stay; only their induction edges go
}


def _ablation_kind(name: str) -> AblationKind:
    if name not in ABLATION_KINDS:
        raise InterpError(f"unknown ablation {name!r}; choose from {', '.join(ABLATION_KINDS)}")
    return ABLATION_KINDS[name]


# ---------------------------------------------------------------------------------- head sets


def head_count(n_heads: int, percent: float | int) -> int:
    """Heads in ``percent``% of ``n_heads``: rounded half up, at least one (1% of a small model is one head)."""
    if not 0 < percent <= 100:
        raise InterpError(f"percent {percent!r} must be in (0, 100]")
    return max(1, math.floor(percent * n_heads / 100 + 0.5))


def top_heads_mask(scores: Float[np.ndarray, "layer head"], count: int) -> Bool[np.ndarray, "layer head"]:
    """The ``count`` highest-scoring heads (ties: the earlier head first)."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    if not np.isfinite(flat).all():
        raise InterpError("head scores contain NaN or infinity; recompute the ranking")
    order = np.lexsort((np.arange(flat.size), -flat))  # last key is the primary one
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:count]] = True
    return mask.reshape(np.shape(scores))


def random_heads_mask(shape: tuple[int, int], count: int, draw: int, seed: int = 0) -> Bool[np.ndarray, "layer head"]:
    """``count`` random heads of draw ``draw``: the first ``count`` of one seeded permutation (nested in ``count``).

    >>> a, b = random_heads_mask((4, 4), 2, draw=0), random_heads_mask((4, 4), 5, draw=0)
    >>> int(a.sum()), bool((b | a).sum() == 5)
    (2, True)
    """
    order = np.random.default_rng([seed, draw, 11]).permutation(shape[0] * shape[1])
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[order[:count]] = True
    return mask.reshape(shape)


# ------------------------------------------------------------------------------ stacked forwards


def _stacked_readouts(run: ResumedRun, head_masks: Bool[Tensor, "set layer head"], kind: AblationKind,
                      context: AblationContext, sets_per_forward: int) -> Tensor:
    """``run.readout`` with each head set removed: (set, *clean shape). Empty sets keep the clean value.

    Sets are sorted by the first layer they touch, and each group of ``sets_per_forward`` resumes
    at its earliest layer, so sets that start deep skip the blocks before them.
    """
    n_sets, n_layers, _ = head_masks.shape
    layer_index = torch.arange(n_layers)
    first_layer = torch.where(head_masks.any(-1), layer_index, n_layers).min(-1).values  # (set,)
    out = run.clean.unsqueeze(0).repeat(n_sets, *([1] * run.clean.dim()))
    order = [index for index in torch.argsort(first_layer, stable=True).tolist() if first_layer[index] < n_layers]
    for begin in range(0, len(order), sets_per_forward):
        group = order[begin : begin + sets_per_forward]
        start = int(first_layer[group].min())
        hooks = kind.build_hooks(head_masks[group], start, context)
        out[group] = run.resume(start, len(group), hooks)
    return out


def _unique_sets(head_masks: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct head sets and, per input set, the index of its distinct set."""
    flat = torch.as_tensor(head_masks, dtype=torch.bool).flatten(1)
    unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
    return unique.reshape(-1, *head_masks.shape[1:]), inverse


def _check_sets(bridge: "TransformerBridge", head_masks: Tensor) -> Tensor:
    n_layers, n_heads = n_layers_heads(bridge)
    head_masks = torch.as_tensor(head_masks, dtype=torch.bool)
    if head_masks.dim() != 3 or tuple(head_masks.shape[1:]) != (n_layers, n_heads):
        raise InterpError(f"head sets of shape {tuple(head_masks.shape)} do not fit (set, {n_layers} layers, {n_heads} "
                          "heads)")
    return head_masks


def head_set_scores(bridge: "TransformerBridge", encoded: EncodedPrompts, head_masks: Bool[Tensor, "set layer head"],
                    ablation: str = "zero", means: tuple[Tensor, Tensor] | None = None, batch_size: int = 8,
                    sets_per_forward: int = 16, share_context: bool = True) -> Float[Tensor, "set sequence"]:
    """Summed continuation log-probability of every sequence with each head set removed (True = removed).

    ``means`` (from :func:`interp.importance.methods.activation_means`) is needed by ``mean`` ablation.
    """
    kind = _ablation_kind(ablation)
    head_masks = _check_sets(bridge, head_masks)
    unique, inverse = _unique_sets(head_masks)
    results = torch.zeros(len(unique), encoded.n_sequences, dtype=torch.float64)
    for batch in iterate_batches(encoded, list(range(encoded.n_sequences)), batch_size, bridge.cfg.device,
                                 pad_id_of(bridge.tokenizer), share_context):
        run = ResumedRun(bridge, batch.tokens, target_logprob_readout(bridge, batch), batch.forward_kwargs())
        visible = None if batch.attention_mask is None else batch.attention_mask[:, 0] == 0
        context = AblationContext(bridge, batch.tokens, visible, means)
        values = _stacked_readouts(run, unique, kind, context, sets_per_forward)  # (set, target)
        results[:, batch.sequence_ids.cpu()] = sum_by_row(values, batch).double().cpu()
    return results[inverse]


# --------------------------------------------------------------------------- repeated random tokens


def _detached_keeper(stored: dict[int, Tensor], layer: int) -> Callable:
    """A ``hook_z`` hook that records a detached copy of its input in ``stored[layer]``."""
    def keep(z: Tensor, hook: Any) -> None:
        stored[layer] = z.detach()
    return keep


def token_means(bridge: "TransformerBridge", batches: Sequence[Any]
                ) -> tuple[Float[Tensor, "layer head d_head"], Float[Tensor, "layer d_model"]]:
    """Mean ``hook_z`` of every head over the real tokens of ``batches`` (``tokens``, ``lengths``; FFN means: zeros)."""
    n_layers, n_heads = n_layers_heads(bridge)
    total = torch.zeros(n_layers, n_heads, int(bridge.cfg.d_head), dtype=torch.float64)
    count = 0.0
    for batch in batches:
        stored: dict[int, Tensor] = {}
        with torch.no_grad():
            bridge.run_with_hooks(batch.tokens,
                                  fwd_hooks=[(z_hook(layer), _detached_keeper(stored, layer))
                                             for layer in range(n_layers)])
        tokens = batch.tokens
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        real = (positions[None, :] < batch.lengths.to(tokens.device)[:, None]).double()
        z = torch.stack([stored[layer].to(tokens.device) for layer in range(n_layers)]).double()
        total += einops.einsum(z, real, "layer batch pos head d_head, batch pos -> layer head d_head").cpu()
        count += float(real.sum())
    dtype = next(bridge.parameters()).dtype
    device = bridge.cfg.device or "cpu"
    return (total / count).to(device, dtype), torch.zeros(n_layers, int(bridge.cfg.d_model), dtype=dtype, device=device)


def _repeat_loss_readout(bridge: "TransformerBridge", tokens: Tensor, lengths: Tensor, periods: Tensor,
                         max_positions: int = 512) -> Callable[[Tensor], Tensor]:
    """Readout: (copies, batch, pos, d_model) -> (copies, batch, 2) mean loss on repeat 1 and on repeats 2..R.

    The vocabulary is unembedded ``max_positions`` rows at a time (a 262k vocabulary would not fit at once).
    """
    positions = torch.arange(1, tokens.shape[1], device=tokens.device)  # the predicted token's position
    real = positions[None, :] < lengths.to(tokens.device)[:, None]  # (batch, pos - 1)
    later = (positions[None, :] - 1) // periods.to(tokens.device)[:, None] >= 1  # in repeat 2 or after
    weights = torch.stack([real & ~later, real & later], dim=-1).double()  # (batch, pos - 1, block)
    weights = weights / weights.sum(1, keepdim=True).clamp(min=1)

    def readout(final: Float[Tensor, "copies batch pos d_model"]) -> Float[Tensor, "copies batch block"]:
        copies, batch = final.shape[:2]
        rows = einops.rearrange(final[:, :, :-1], "copies batch pos d_model -> (copies batch) pos d_model")
        targets = tokens[:, 1:].repeat(copies, 1)  # (copies * batch, pos - 1)
        step = max(1, max_positions // rows.shape[1])
        losses = []
        for begin in range(0, rows.shape[0], step):
            logits = bridge.unembed(bridge.ln_final(rows[begin : begin + step])).float()
            row_targets = targets[begin : begin + step]
            losses.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), row_targets, reduction="none"))
        loss = torch.cat(losses).reshape(copies, batch, -1).double()
        return einops.einsum(loss, weights, "copies batch pos, batch pos block -> copies batch block")

    return readout


def repeated_loss_by_head_set(bridge: "TransformerBridge", head_masks: Bool[Tensor, "set layer head"],
                              config: "SequenceConfig", ablation: str = "zero", sets_per_forward: int = 16,
                              max_batch_tokens: int = 4096) -> tuple[Float[Tensor, "set sequence block"], list[int]]:
    """Mean loss on repeat 1 (block 0) and on repeats 2..R (block 1) of each repeated random sequence, per head set.

    ``mean`` ablation replaces a head by its mean output over these sequences' tokens.  Returns the
    values and the seed of each sequence.
    """
    from interp.induction.sequences import make_batches
    from interp.models.context import model_context

    kind = _ablation_kind(ablation)
    head_masks = _check_sets(bridge, head_masks)
    unique, inverse = _unique_sets(head_masks)
    device = bridge.cfg.device or "cpu"
    batches = [batch.to(device) for batch in make_batches(bridge.tokenizer, config, "repeated", max_batch_tokens,
                                                                 context=model_context(bridge))]
    means = token_means(bridge, batches) if kind.needs_means else None
    parts, seeds = [], []
    for batch in batches:
        run = ResumedRun(bridge, batch.tokens, _repeat_loss_readout(bridge, batch.tokens, batch.lengths, batch.periods))
        context = AblationContext(bridge, batch.tokens, None, means)
        parts.append(_stacked_readouts(run, unique, kind, context, sets_per_forward).cpu())
        seeds += list(batch.seeds)
    return torch.cat(parts, dim=1)[inverse], seeds
