"""Where the decoder layers of a wrapped Hugging Face model live, for edits below the hooks.

LASER replaces a weight matrix of one decoder layer and layer dropping removes whole layers;
both work on the Hugging Face model behind the bridge, whose layer list has a different name
in every architecture (``model.layers``, ``transformer.h``, ``model.decoder.layers``...), so it
is found by shape: the one ``ModuleList`` as long as the model is deep.
"""

from __future__ import annotations

from typing import Any

import torch

from interp.errors import InterpError

__all__ = ["decoder_layer", "decoder_layer_list", "hf_model_of", "normalises_attention_output"]

# Norms on a block's output side (Gemma 2 and 3's "sandwich" norms, OLMo 2's post-norms).  Llama's
# ``post_attention_layernorm`` is not one of them: despite its name it is the MLP's input norm.
_OUTPUT_NORM_NAMES = ("pre_feedforward_layernorm", "post_feedforward_layernorm")


def hf_model_of(model: Any) -> Any:
    """The Hugging Face model behind a bridge (or the model itself)."""
    return getattr(model, "original_model", model)


def decoder_layer_list(hf_model: Any) -> tuple[str, torch.nn.ModuleList]:
    """(attribute path, list) of the decoder layers of a Hugging Face causal LM."""
    n_layers = hf_model.config.num_hidden_layers
    for name, module in hf_model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return name, module
    raise InterpError(f"{type(hf_model).__name__}: found no list of {n_layers} decoder layers")


def decoder_layer(hf_model: Any, layer: int) -> torch.nn.Module:
    """Decoder layer ``layer``; an index outside the model is named in the error."""
    n_layers = hf_model.config.num_hidden_layers
    if not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise InterpError(f"layer {layer!r} is outside 0..{n_layers - 1}")
    return decoder_layer_list(hf_model)[1][layer]


def normalises_attention_output(hf_model: Any) -> bool:
    """Whether each decoder layer renormalises the attention block's output before the residual add.

    Where it does, zero ablation of some of a layer's heads does not remove them: the norm divides
    what is left by its smaller RMS, so the layer's other heads are scaled up by a factor the model
    never saw.  Mean ablation keeps the scale.  Results record this so a zero-ablation effect on such
    a model is read as that, not as evidence about the heads removed (docs/methods.md, "Causal test").
    """
    layer = decoder_layer_list(hf_model_of(hf_model))[1][0]
    return any(hasattr(layer, name) for name in _OUTPUT_NORM_NAMES)
