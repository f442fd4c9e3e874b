"""The hooked-forward mechanics every study shares: hook names, masking, resumed and stopped runs.

Every intervention in the workbench is a TransformerLens forward hook on a
:class:`~transformer_lens.model_bridge.TransformerBridge`; this module is their one home.

- **Hook names** (:func:`z_hook`, :func:`mlp_out_hook`, ...): the bridge's canonical names.
- **Masking** (:func:`mask_heads_hook`, :func:`mask_ffn_hook`, :func:`component_mask_hooks`):
  several *copies* of a batch are stacked along the batch axis and each copy removes its own
  heads or FFNs (replaced by zero or by a given value), so many ablations share one forward.
- **Resumed runs** (:class:`ResumedRun`): a clean forward keeps the residual entering every
  block with that block's call arguments, so an intervention in layer ``l`` reruns blocks
  ``l..L-1`` only (exact ablation, pruning and LASER all use it).
- **Stopping early** (:func:`run_until`): raise from the last hook that is needed, skipping the
  rest of the model (prefix matching needs no logits).

>>> z_hook(3), mlp_out_hook(0), pattern_hook(1)
('blocks.3.attn.hook_z', 'blocks.0.hook_mlp_out', 'blocks.1.attn.hook_pattern')
>>> removed = torch.tensor([[True, False], [False, False]])  # copy 0 drops head 0
>>> z = torch.ones(2 * 1, 3, 2, 4)  # (copies * batch, pos, head, d_head)
>>> masked = mask_heads_hook(removed, None, copies=2)(z, None)
>>> masked[0, :, 0].abs().sum().item(), masked[0, :, 1].sum().item(), masked[1].sum().item()
(0.0, 12.0, 24.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "Hook",
    "ResumedRun",
    "StopForward",
    "attn_scores_hook",
    "component_mask_hooks",
    "heads_removed_hooks",
    "mask_ffn_hook",
    "mask_heads_hook",
    "mlp_out_hook",
    "n_layers_heads",
    "pattern_hook",
    "resid_pre_hook",
    "run_until",
    "z_hook",
]

Hook = tuple[str, Callable[..., Any]]  # (hook name, function(activation, hook)) as TransformerLens takes them


def z_hook(layer: int) -> str:
    """Per-head attention output before ``W_O`` (batch, pos, head, d_head)."""
    return f"blocks.{layer}.attn.hook_z"


def pattern_hook(layer: int) -> str:
    """Attention probabilities (batch, head, query, key)."""
    return f"blocks.{layer}.attn.hook_pattern"


def attn_scores_hook(layer: int) -> str:
    """Pre-softmax attention scores (batch, head, query, key), where masks and knockouts go."""
    return f"blocks.{layer}.attn.hook_attn_scores"


def mlp_out_hook(layer: int) -> str:
    """The FFN's contribution to the residual stream (batch, pos, d_model)."""
    return f"blocks.{layer}.hook_mlp_out"


def resid_pre_hook(layer: int) -> str:
    """The residual stream entering block ``layer`` (batch, pos, d_model)."""
    return f"blocks.{layer}.hook_resid_pre"


def n_layers_heads(bridge: "TransformerBridge") -> tuple[int, int]:
    """(layers, query heads) of a bridge."""
    return int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)


# ---------------------------------------------------------------------------------------- masking


def mask_heads_hook(removed: Bool[Tensor, "copies head"], replacement: Tensor | None, copies: int) -> Callable:
    """A ``hook_z`` hook: in copy ``c`` the heads ``removed[c]`` output zero or ``replacement``.

    ``replacement`` broadcasts against one copy's (batch, pos, head, d_head): a mean (head,
    d_head) or a resampled donor (batch, pos, head, d_head).  The caller's tensor is not edited.
    """

    def hook(z: Tensor, hook: Any) -> Tensor:
        stacked = einops.rearrange(z, "(copies batch) pos head d_head -> copies batch pos head d_head", copies=copies)
        chosen = einops.rearrange(removed.to(z.device), "copies head -> copies 1 1 head 1")
        if replacement is None:
            fill = torch.zeros((), dtype=z.dtype, device=z.device)
        else:
            fill = replacement.to(z.device, z.dtype)
        replaced = torch.where(chosen, fill, stacked)
        return einops.rearrange(replaced, "copies batch pos head d_head -> (copies batch) pos head d_head")

    return hook


def mask_ffn_hook(removed: Bool[Tensor, " copies"], replacement: Tensor | None, copies: int) -> Callable:
    """A ``hook_mlp_out`` hook: the FFN output of the ``removed`` copies becomes 0 or ``replacement``."""

    def hook(mlp_out: Tensor, hook: Any) -> Tensor:
        stacked = einops.rearrange(mlp_out, "(copies batch) pos d_model -> copies batch pos d_model", copies=copies)
        chosen = einops.rearrange(removed.to(mlp_out.device), "copies -> copies 1 1 1")
        fill = (torch.zeros((), dtype=mlp_out.dtype, device=mlp_out.device) if replacement is None
                else replacement.to(mlp_out.device, mlp_out.dtype))
        replaced = torch.where(chosen, fill, stacked)
        return einops.rearrange(replaced, "copies batch pos d_model -> (copies batch) pos d_model")

    return hook


def component_mask_hooks(head_masks: Bool[Tensor, "copies layer head"], ffn_masks: Bool[Tensor, "copies layer"],
                         means: tuple[Tensor, Tensor] | None = None, start: int = 0) -> list[Hook]:
    """Hooks removing, per copy, the heads and FFNs its masks mark (zero, or mean when ``means``).

    ``means`` is (per-layer mean ``z`` (layer, head, d_head), per-layer mean FFN output (layer,
    d_model)).  Layers before ``start`` get no hook (a resumed run starts there).
    """
    copies, n_layers = ffn_masks.shape
    hooks: list[Hook] = []
    for layer in range(start, n_layers):
        if head_masks[:, layer].any():
            fill = None if means is None else means[0][layer]
            hooks.append((z_hook(layer), mask_heads_hook(head_masks[:, layer], fill, copies)))
        if ffn_masks[:, layer].any():
            fill = None if means is None else means[1][layer]
            hooks.append((mlp_out_hook(layer), mask_ffn_hook(ffn_masks[:, layer], fill, copies)))
    return hooks


def heads_removed_hooks(bridge: "TransformerBridge", heads: Sequence[tuple[int, int]]) -> list[Hook]:
    """Zero-ablation hooks for a list of (layer, head) pairs, on an unstacked batch."""
    n_layers, n_heads = n_layers_heads(bridge)
    head_masks = torch.zeros(1, n_layers, n_heads, dtype=torch.bool)
    for layer, head in heads:
        head_masks[0, int(layer), int(head)] = True
    return component_mask_hooks(head_masks, torch.zeros(1, n_layers, dtype=torch.bool))


# ------------------------------------------------------------------------------ stopping early


class StopForward(Exception):
    """Raised from the last needed hook: the rest of the forward pass is not computed."""


def run_until(bridge: "TransformerBridge", tokens: Int[Tensor, "batch pos"], hooks: Sequence[Hook],
              stop_hook: str) -> None:
    """Run ``hooks`` over ``tokens`` and stop the forward once ``stop_hook`` has fired."""

    def stop(activation: Tensor, hook: Any) -> None:
        raise StopForward

    try:
        bridge.run_with_hooks(tokens, fwd_hooks=list(hooks) + [(stop_hook, stop)])
    except StopForward:
        pass


# ---------------------------------------------------------------------------------- resumed runs


def _is_cache(value: Any) -> bool:
    return type(value).__name__.endswith("Cache") and not isinstance(value, Tensor)


def _repeat_batch(value: Any, batch: int, copies: int) -> Any:
    """Repeat every batch-sized tensor ``copies`` times along dim 0; drop KV caches."""
    if _is_cache(value):
        return None
    if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == batch and copies > 1:
        return value.repeat(copies, *([1] * (value.dim() - 1)))
    if isinstance(value, tuple):
        return tuple(_repeat_batch(entry, batch, copies) for entry in value)
    return value


Readout = Callable[[Float[Tensor, "copies batch pos d_model"]], Tensor]


class ResumedRun:
    """A clean forward that keeps, per block, its input residual and call arguments.

    ``readout`` maps the final residual stream (before the final norm), stacked as (copies,
    batch, pos, d_model), to what the caller needs (usually a few positions' log-probabilities,
    so the full vocabulary is unembedded only where needed); ``clean`` is its value on the clean
    run and :meth:`resume` its value with interventions from block ``layer`` on.
    """

    def __init__(self, bridge: "TransformerBridge", tokens: Int[Tensor, "batch pos"], readout: Readout,
                 forward_kwargs: dict[str, Any] | None = None):
        # forward_kwargs: e.g. a packed batch's attention mask and position ids; the blocks' captured
        # call arguments carry them into every resumed run.
        self.bridge, self.rows, self.readout = bridge, int(tokens.shape[0]), readout
        n_layers, _ = n_layers_heads(bridge)
        self.residuals: list[Tensor | None] = [None] * n_layers
        self.calls: list[tuple[tuple, dict] | None] = [None] * n_layers
        final: list[Tensor] = []
        handles = []
        for layer, block in enumerate(bridge.blocks):
            def capture(module: Any, args: tuple, kwargs: dict, layer: int = layer) -> None:
                if args and isinstance(args[0], Tensor):
                    self.residuals[layer], rest = args[0], args[1:]
                else:
                    self.residuals[layer], rest = kwargs["hidden_states"], args
                    kwargs = {key: value for key, value in kwargs.items() if key != "hidden_states"}
                self.calls[layer] = (rest, dict(kwargs))
            handles.append(block.register_forward_pre_hook(capture, with_kwargs=True))

        def keep_final(module: Any, args: tuple, output: Any) -> None:
            final.append(output[0] if isinstance(output, tuple) else output)
            raise StopForward  # the unembedding of every position is not needed

        handles.append(bridge.blocks[n_layers - 1].register_forward_hook(keep_final))
        try:
            with torch.no_grad():
                bridge(tokens, return_type="logits", **(forward_kwargs or {}))
        except StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        with torch.no_grad():
            self.clean = readout(final[0].unsqueeze(0))[0]

    def resume(self, layer: int, copies: int, fwd_hooks: Sequence[Hook] = ()) -> Tensor:
        """``readout`` of ``copies`` stacked copies of the batch, run from block ``layer`` on."""
        hidden = self.residuals[layer].repeat(copies, 1, 1)
        with torch.no_grad(), self.bridge.hooks(fwd_hooks=list(fwd_hooks)):
            for block_index in range(layer, len(self.residuals)):
                rest, kwargs = self.calls[block_index]
                rest = tuple(_repeat_batch(value, self.rows, copies) for value in rest)
                kwargs = {key: _repeat_batch(value, self.rows, copies) for key, value in kwargs.items()}
                if "use_cache" in kwargs:
                    kwargs["use_cache"] = False
                output = self.bridge.blocks[block_index](hidden, *rest, **kwargs)
                hidden = output[0] if isinstance(output, tuple) else output
            final = einops.rearrange(hidden, "(copies batch) pos d_model -> copies batch pos d_model", copies=copies)
            return self.readout(final)
