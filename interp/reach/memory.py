"""How much memory a command needs, and the batch size that fits (``--batch-size auto``).

The estimate is read from the model's config alone (no weights loaded), per sequence of the
batch, for the forward each command runs; the formulas are in ``docs/methods.md`` ("Memory
estimate"). With ``N`` layers, width ``D``, ``H`` query and ``K`` key/value heads of ``Dh``,
MLP width ``F``, vocabulary ``V``, ``b`` bytes per number of the model's dtype and a padded
sequence of ``L`` tokens (``T`` of them scored):

- **parameters**: ``b * (V*D*(1 or 2 untied) + N*(2*D*H*Dh + 2*D*K*Dh + (2 or 3 gated)*D*F + 2*D) + D)``, plus
  learned position embeddings (GPT-2, OPT); biases are left out (a fraction of a percent);
- **one layer's forward** (no gradient; layers run one after another, so one layer's temporaries
  are alive at a time): ``b*L*(4*D + 2*H*Dh + 2*K*Dh + 3*F) + (2*b + 4)*H*L^2`` (residual
  streams, q/k/v/z, MLP, and the attention scores and probabilities, softmax in float32);
- **logits** of every position: ``(b + 8)*L*V`` (native logits, float32 logits and log-softmax);
  of the scored positions only (resumed runs): ``(b + 8)*T*V``;
- **resumed-run cache** (exact ablation, pruning): the residual entering every block, ``b*N*L*D``;
  the batched ablation *copies* ``C`` (a layer's heads + FFN, or ``masks_per_forward`` masks)
  multiply one layer's forward and the readout;
- **gradient** (gradient importance, attribution): every layer's activations kept for the
  backward, ``N * (b*L*(6*D + 2*H*Dh + 2*K*Dh + 3*F) + (2*b + 4)*H*L^2)``, logits twice, and the
  float64 stacks of ``z``, FFN outputs and their gradients, ``16*N*L*(H*Dh + D)``.

Activations are multiplied by :data:`SAFETY` (hook copies, allocator slack).  ``--batch-size
auto`` picks the largest batch whose activations fit in the free memory of the device once the
weights are there, capped at :data:`CAPS` (a CPU gains nothing from bigger batches).

>>> shape = ModelShape(n_layers=2, d_model=64, n_heads=4, n_kv_heads=4, d_head=16, d_mlp=4, vocab=2048,
...                    gated=True, tied=True, dtype_bytes=4)
>>> shape.parameter_bytes() // 1000
662
>>> per_sequence_bytes(shape, "forward", length=100) // 1000
3147
>>> choose_batch_size(shape, "ablation", length=100, available=10**9, copies=5, device="cpu")
64
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from interp.errors import InterpError, check_choice

__all__ = ["CAPS", "COMMANDS", "SAFETY", "MemoryPlan", "ModelShape", "available_memory", "choose_batch_size",
           "memory_plan", "model_shape", "parse_batch_size", "per_sequence_bytes"]

COMMANDS = ("forward", "induction", "ablation", "gradient")  # the kinds of forward the commands run
SAFETY = 1.5  # activations x this: TransformerLens hook copies and allocator slack (measured peaks stay under)
CAPS = {"cpu": 64, "cuda": 512, "mps": 128}  # largest automatic batch per kind of device
RESERVE_BYTES = 512 * 2**20  # kept free: CUDA context, tokenizer, Python objects


@dataclass(frozen=True)
class ModelShape:
    """The sizes that set a model's memory, read from its config."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    vocab: int
    gated: bool  # gated MLPs (Llama, Gemma) have three matrices, others two
    tied: bool  # embedding and unembedding share one matrix
    dtype_bytes: int  # 4 float32, 2 bfloat16/float16
    learned_positions: int = 0  # rows of a learned position embedding (GPT-2, OPT); 0 for rotary models

    def parameter_bytes(self) -> int:
        attention = 2 * self.d_model * self.n_heads * self.d_head + 2 * self.d_model * self.n_kv_heads * self.d_head
        mlp = (3 if self.gated else 2) * self.d_model * self.d_mlp
        embeddings = self.vocab * self.d_model * (1 if self.tied else 2)
        positions = self.learned_positions * self.d_model
        return self.dtype_bytes * (embeddings + positions + self.n_layers * (attention + mlp + 2 * self.d_model)
                                   + self.d_model)


def model_shape(spec: str, dtype: str = "float32") -> ModelShape:
    """The :class:`ModelShape` of a model spec, from its config only (no weights are read)."""
    from transformers import AutoConfig

    from interp.models.loading import resolve_dtype, resolve_source

    source, _ = resolve_source(spec)
    config = AutoConfig.from_pretrained(source)
    config = getattr(config, "text_config", None) or config
    d_model = _first(config, "hidden_size", "n_embd", "d_model")
    n_heads = _first(config, "num_attention_heads", "n_head")
    return ModelShape(
        n_layers=_first(config, "num_hidden_layers", "n_layer"), d_model=d_model, n_heads=n_heads,
        n_kv_heads=getattr(config, "num_key_value_heads", None) or n_heads,
        d_head=getattr(config, "head_dim", None) or d_model // n_heads,
        d_mlp=_first(config, "intermediate_size", "ffn_dim", "n_inner", default=4 * d_model),
        vocab=_first(config, "vocab_size"),
        gated=config.model_type in ("llama", "gemma", "gemma2", "gemma3", "gemma3_text", "mistral", "qwen2", "qwen3"),
        tied=bool(getattr(config, "tie_word_embeddings", True)),
        dtype_bytes=resolve_dtype(dtype).itemsize,
        learned_positions=(_first(config, "n_positions", "max_position_embeddings")
                           if config.model_type in ("gpt2", "opt") else 0),
    )


def _first(config: Any, *names: str, default: int | None = None) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    if default is None:
        raise InterpError(f"the model's config has none of {', '.join(names)}; cannot estimate its memory")
    return default


def _layer_forward(shape: ModelShape, length: int) -> int:
    b = shape.dtype_bytes
    per_token = (4 * shape.d_model + 2 * shape.n_heads * shape.d_head + 2 * shape.n_kv_heads * shape.d_head
                 + 3 * shape.d_mlp)
    return b * length * per_token + (2 * b + 4) * shape.n_heads * length * length


def _logits(shape: ModelShape, positions: int) -> int:
    return (shape.dtype_bytes + 8) * positions * shape.vocab


def per_sequence_bytes(shape: ModelShape, command: str, length: int, copies: int = 1,
                       targets: int | None = None) -> int:
    """Activation bytes one sequence of ``length`` tokens adds to a batch of ``command`` (before :data:`SAFETY`).

    ``copies``: batched ablation copies (``ablation``); ``targets``: scored positions per sequence
    (default ``min(length, 8)``).
    """
    check_choice("command", command, COMMANDS)
    if length < 1 or copies < 1:
        raise InterpError(f"length and copies must be positive, got {length} and {copies}")
    targets = min(length, 8) if targets is None else targets
    if command == "forward":
        return _layer_forward(shape, length) + _logits(shape, length)
    if command == "induction":  # metric masks (4 metrics x query x key, float32) and the loss's logits
        return _layer_forward(shape, length) + 16 * length * length + _logits(shape, length)
    if command == "ablation":
        cache = shape.dtype_bytes * shape.n_layers * length * shape.d_model
        return cache + copies * (_layer_forward(shape, length) + _logits(shape, targets))
    b = shape.dtype_bytes  # gradient
    kept = b * length * (6 * shape.d_model + 2 * shape.n_heads * shape.d_head + 2 * shape.n_kv_heads * shape.d_head
                         + 3 * shape.d_mlp) + (2 * b + 4) * shape.n_heads * length * length
    stacks = 16 * shape.n_layers * length * (shape.n_heads * shape.d_head + shape.d_model)
    return shape.n_layers * kept + 2 * _logits(shape, length) + stacks


def available_memory(device: str) -> int:
    """Free bytes on ``device``: CUDA's free memory, or the machine's available RAM for the CPU."""
    kind = device.split(":")[0]
    if kind == "cuda":
        import torch

        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return int(torch.cuda.mem_get_info(index)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_batch_size(shape: ModelShape, command: str, length: int, available: int, *, copies: int = 1,
                      targets: int | None = None, device: str = "cpu", weights_loaded: bool = False) -> int:
    """The largest batch whose activations (x :data:`SAFETY`) fit in ``available`` bytes, capped by :data:`CAPS`.

    ``weights_loaded``: ``available`` was measured with the weights already on the device.
    """
    budget = available - RESERVE_BYTES - (0 if weights_loaded else shape.parameter_bytes())
    one = math.ceil(per_sequence_bytes(shape, command, length, copies, targets) * SAFETY)
    if budget < one:
        raise InterpError(
            f"one sequence of {length} tokens needs about {_gib(one)} for {command} beside "
            f"{_gib(shape.parameter_bytes())} "
            f"of weights, but about {_gib(available)} is free; use fewer shots, fewer copies per forward, or shard the "
            "model with --device-map / --max-memory"
        )
    return max(1, min(CAPS.get(device.split(":")[0], 64), budget // one))


def _gib(count: int) -> str:
    return f"{count / 2**30:.2f} GiB"


@dataclass(frozen=True)
class MemoryPlan:
    """What a command's batch costs: for the metadata and ``--batch-size auto``'s message."""

    command: str
    parameter_bytes: int
    per_sequence_bytes: int  # activations per sequence, SAFETY included
    batch_size: int
    available_bytes: int

    def describe(self) -> str:
        return (f"--batch-size auto: {self.batch_size} ({self.command}: weights {_gib(self.parameter_bytes)}, "
                f"{_gib(self.per_sequence_bytes)} per sequence, {_gib(self.available_bytes)} free)")


def memory_plan(shape: ModelShape, command: str, length: int, device: str, *, copies: int = 1,
                targets: int | None = None, available: int | None = None, weights_loaded: bool = False) -> MemoryPlan:
    """:func:`choose_batch_size` on ``device``'s free memory, with the numbers behind it."""
    free = available_memory(device) if available is None else available
    size = choose_batch_size(shape, command, length, free, copies=copies, targets=targets, device=device,
                             weights_loaded=weights_loaded)
    per = math.ceil(per_sequence_bytes(shape, command, length, copies, targets) * SAFETY)
    return MemoryPlan(command, shape.parameter_bytes(), per, size, free)


def parse_batch_size(text: str) -> int | None:
    """``--batch-size``: a positive integer, or ``auto`` (None: chosen by :func:`choose_batch_size`).

    >>> parse_batch_size("16"), parse_batch_size("auto")
    (16, None)
    """
    if text.strip() == "auto":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise InterpError(f"--batch-size {text!r}: give a positive integer or auto")
    return int(text)
