"""Layer pruning by angular distance between residual streams (Gromov et al. 2024).

The paper (https://arxiv.org/abs/2403.17887, section 3.2) measures how little a block of ``n``
layers changes the residual stream: ``d(l, n) = arccos(cos(x_l, x_{l+n})) / pi`` with ``x_l``
the *input* to layer ``l`` at the last token, averaged over samples, and drops the block
``l*(n) .. l*(n) + n - 1`` that minimises it.  ``x_{n_layers}`` is the input of the final norm
(Hugging Face's last hidden state already has the norm applied, so it is not used).

>>> import torch
>>> distances = torch.tensor([[0.0, 0.3, 0.5], [0.0, 0.1, float("nan")], [0.0, float("nan"), float("nan")]])
>>> best_block_start(distances, 1)
1
>>> pruned_layers(distances, 1)
[1]
>>> baseline_layers(n_layers=6, n=2)
[3, 4]
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError
from interp.models.structure import decoder_layer_list

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "angular_distances",
    "baseline_layers",
    "best_block_start",
    "distance_table",
    "drop_layers",
    "pruned_layers",
    "skip_layer_hooks",
]


def _stream_hook_names(n_layers: int) -> list[str]:
    # Input to every block, then the input of the final norm as x_{n_layers}.
    return [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)] + ["ln_final.hook_in"]


def _as_batches(tokens_or_batches: Any) -> Iterable[tuple[Tensor, Tensor | None]]:
    """Yield (tokens, valid mask or None) from a tensor, a list of tensors, or ``evaluation.Batch`` objects."""
    if isinstance(tokens_or_batches, Tensor):
        tokens_or_batches = [tokens_or_batches]
    for item in tokens_or_batches:
        if isinstance(item, Tensor):
            yield (item.unsqueeze(0) if item.dim() == 1 else item), None
        elif hasattr(item, "tokens") and hasattr(item, "valid"):
            yield item.tokens, item.valid
        else:
            raise InterpError(
                f"angular_distances takes token tensors or evaluation.Batch objects, got {type(item).__name__}"
            )


def _pairwise_angles(stream: Float[Tensor, "depth sample d_model"]) -> Float[Tensor, "depth depth sample"]:
    """arccos(cos)/pi between every pair of depths, for every sample, by broadcasting."""
    unit = torch.nn.functional.normalize(stream.double(), dim=-1)
    cosine = torch.einsum("isd,jsd->ijs", unit, unit).clamp(-1.0, 1.0)
    return torch.arccos(cosine) / torch.pi


def angular_distances(bridge: "TransformerBridge", tokens_or_batches: Any,
                      last_token_only: bool = True) -> Float[Tensor, "layer block_size"]:
    """``distances[l, n] = d(x_l, x_{l+n})`` averaged over samples; NaN where ``l + n > n_layers``.

    ``tokens_or_batches``: a ``(batch, pos)`` token tensor (every token real), a list of them, or
    right-padded :class:`interp.tasks.evaluation.Batch` objects (their ``valid`` mask marks real tokens;
    causal attention keeps padding from changing them).  ``last_token_only=False`` averages the
    distance over each sample's real tokens first.  Shape ``(n_layers + 1, n_layers + 1)``;
    column ``n = 0`` is zero.
    """
    n_layers = bridge.cfg.n_layers
    names = _stream_hook_names(n_layers)
    total = torch.zeros(n_layers + 1, n_layers + 1, dtype=torch.float64)
    n_samples = 0
    with torch.no_grad():
        for tokens, valid in _as_batches(tokens_or_batches):
            tokens = tokens.to(bridge.cfg.device)
            _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name in names)
            stream = torch.stack([cache[name] for name in names])  # (depth, batch, pos, d_model)
            if valid is None:
                valid = torch.ones(tokens.shape, device=stream.device)
            valid = valid.to(stream.device).double()
            if last_token_only:
                last = (valid.sum(-1).long() - 1).clamp(min=0)  # right padding: last real position
                picked = stream[:, torch.arange(len(last), device=stream.device), last]  # (depth, batch, d)
                per_sample = _pairwise_angles(picked)  # (depth, depth, batch)
            else:
                depth, batch, positions, d_model = stream.shape
                angles = _pairwise_angles(stream.reshape(depth, batch * positions, d_model))
                angles = angles.reshape(depth, depth, batch, positions)
                per_sample = (angles * valid).sum(-1) / valid.sum(-1).clamp(min=1)
            # angles[l, l + n] -> distances[l, n]: gather the upper diagonals in one index op.
            layer = torch.arange(n_layers + 1).unsqueeze(1)  # (layer, 1)
            block = torch.arange(n_layers + 1).unsqueeze(0)  # (1, n)
            target = (layer + block).clamp(max=n_layers)
            total += per_sample.sum(-1).cpu()[layer, target]
            n_samples += per_sample.shape[-1]
    if n_samples == 0:
        raise InterpError("angular_distances got no samples; pass at least one token sequence")
    distances = total / n_samples
    layer = torch.arange(n_layers + 1).unsqueeze(1)
    block = torch.arange(n_layers + 1).unsqueeze(0)
    return distances.masked_fill(layer + block > n_layers, float("nan"))


def _check_block_size(distances: Tensor, n: int) -> int:
    n_layers = distances.shape[0] - 1
    if not 1 <= n <= n_layers:
        raise InterpError(f"block size n={n!r} is outside 1..{n_layers} (the model's layer count)")
    return n_layers


def best_block_start(distances: Float[Tensor, "layer block_size"], n: int) -> int:
    """``l*(n) = argmin_l d(l, n)`` over the starts whose block fits in the model."""
    n_layers = _check_block_size(distances, n)
    return int(torch.argmin(distances[: n_layers - n + 1, n]))


def pruned_layers(distances: Float[Tensor, "layer block_size"], n: int) -> list[int]:
    """The ``n`` consecutive layers Gromov et al. drop: ``l* .. l* + n - 1``."""
    start = best_block_start(distances, n)
    return list(range(start, start + n))


def baseline_layers(n_layers: int, n: int) -> list[int]:
    """The paper's baseline: the deepest ``n`` layers, keeping the final one."""
    if not 1 <= n <= n_layers - 1:
        raise InterpError(f"block size n={n!r} is outside 1..{n_layers - 1} (all layers but the final one)")
    return list(range(n_layers - 1 - n, n_layers - 1))


def distance_table(distances: Float[Tensor, "layer block_size"]) -> pd.DataFrame:
    """Long table (layer, n, distance) of the defined entries, ``n >= 1``; for results files."""
    n_layers = distances.shape[0] - 1
    rows = [
        {"layer": layer, "n": n, "distance": float(distances[layer, n])}
        for n in range(1, n_layers + 1)
        for layer in range(n_layers - n + 1)
    ]
    return pd.DataFrame(rows)


def skip_layer_hooks(layers: Sequence[int]) -> list[tuple[str, Any]]:
    """Hooks that make each layer in ``layers`` the identity: its output is its input.

    The reference for :func:`drop_layers`: a bridge run with these hooks equals the pruned model.
    """
    saved: dict[int, Tensor] = {}
    hooks: list[tuple[str, Any]] = []
    for layer in layers:
        def keep(activation, hook, layer=layer):
            saved[layer] = activation
            return activation

        def replace(activation, hook, layer=layer):
            return saved[layer]

        hooks += [(f"blocks.{layer}.hook_resid_pre", keep), (f"blocks.{layer}.hook_resid_post", replace)]
    return hooks


def drop_layers(hf_model: Any, layers: Sequence[int]) -> Any:
    """A smaller copy of a Hugging Face causal LM without the decoder ``layers``; the input is untouched.

    The copy is an ordinary model: ``save_pretrained`` writes it and
    :func:`interp.models.loading.load_model` reads it back.  Pass a plain Hugging Face model, not
    ``bridge.original_model`` (the bridge rewires its modules).
    """
    if any("_original_component" in name for name, _ in hf_model.named_parameters()):
        raise InterpError(
            "drop_layers needs a plain Hugging Face model, not a TransformerBridge's original_model; "
            "load it with transformers.AutoModelForCausalLM.from_pretrained"
        )
    n_layers = hf_model.config.num_hidden_layers
    dropped = sorted(set(int(layer) for layer in layers))
    if not dropped or dropped[0] < 0 or dropped[-1] >= n_layers or len(dropped) >= n_layers:
        raise InterpError(
            f"layers {list(layers)!r} to drop must be a non-empty proper subset of 0..{n_layers - 1}"
        )
    pruned = copy.deepcopy(hf_model)
    list_name, layer_list = decoder_layer_list(pruned)
    kept = [module for index, module in enumerate(layer_list) if index not in dropped]
    pruned.set_submodule(list_name, torch.nn.ModuleList(kept))
    # The KV cache is indexed by layer_idx; renumber so cache slots stay consecutive.
    for new_index, module in enumerate(kept):
        for submodule in module.modules():
            if hasattr(submodule, "layer_idx"):
                submodule.layer_idx = new_index
    pruned.config.num_hidden_layers = len(kept)  # attribute_map covers n_layer (GPT-2) and friends
    layer_types = getattr(pruned.config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == n_layers:
        pruned.config.layer_types = [kind for index, kind in enumerate(layer_types) if index not in dropped]
    return pruned
