"""Look inside one head on a repeated random sequence, and knock heads out.

Two small tools for teaching and for the report, both on the sequences of
:mod:`interp.induction.sequences` (BOS + a random block of ``L`` tokens repeated):

- :func:`head_attention`: the full attention pattern of one head, as a tidy table
  (``query, key, weight, token``), which :func:`interp.output.figures.attention_pattern_figure` draws;
  an induction head shows a stripe ``L - 1`` below the diagonal.
- :func:`ablated_repeated_loss`: the per-token loss on the repeated sequences with chosen heads
  zero-ablated (their ``hook_z`` output set to 0), the classic test that induction heads are what
  lowers the loss on repeats (Olsson et al. 2022, section "Argument 2").

>>> from interp.models.loading import load_model                        # doctest: +SKIP
>>> bridge, _ = load_model("smollm2-135m")                      # doctest: +SKIP
>>> head_attention(bridge, layer=18, head=6).nlargest(1, "weight")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch import Tensor

from interp.errors import InterpError
from interp.induction.sequences import SequenceConfig, make_batches

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = ["ablated_repeated_loss", "head_attention", "save_head_attention", "top_heads"]


def _check_head(bridge: "TransformerBridge", layer: int, head: int) -> None:
    n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise InterpError(f"head L{layer}H{head} does not exist: the model has layers 0..{n_layers - 1}, heads "
                          f"0..{n_heads - 1}")


def _repeated_tokens(bridge: "TransformerBridge", config: SequenceConfig, seed: int) -> tuple[Tensor, int]:
    from interp.models.context import model_context

    (batch,) = make_batches(bridge.tokenizer, config, "repeated", seeds=[seed], context=model_context(bridge))
    return batch.tokens.to(bridge.cfg.device or "cpu"), int(batch.periods[0])


def head_attention(bridge: "TransformerBridge", layer: int, head: int, seed: int = 0,
                   config: SequenceConfig = SequenceConfig(protocol="olsson", num_seeds=1)) -> pd.DataFrame:
    """Attention of ``L{layer}H{head}`` on the repeated sequence of ``seed``.

    Returns columns ``query, key, weight, token, period`` (``token`` is the key's text), one row
    per (query, key) with key <= query.  The default protocol (Olsson, L = 25) keeps it small.
    """
    _check_head(bridge, layer, head)
    tokens, period = _repeated_tokens(bridge, config, seed)
    captured: list[Tensor] = []

    def keep(pattern: Tensor, hook) -> None:  # pattern: (batch, head, query, key)
        captured.append(pattern[0, head].detach().float().cpu())

    with torch.no_grad():
        bridge.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_pattern", keep)])
    weights = captured[0]  # (query, key)
    length = weights.shape[0]
    query, key = torch.tril_indices(length, length)
    texts = [bridge.tokenizer.decode([int(token)]) for token in tokens[0].tolist()]
    return pd.DataFrame({"query": query.numpy(), "key": key.numpy(), "weight": weights[query, key].numpy(),
                         "token": [texts[int(index)] for index in key], "period": period})


def top_heads(results: Path, metric: str = "prefix_matching", count: int = 1) -> list[tuple[int, int]]:
    """The ``count`` heads with the highest mean ``metric`` in a results folder's induction scores."""
    from interp.store import read_table

    scores = read_table(Path(results) / "induction_scores")
    rows = scores[scores["metric"] == metric].dropna(subset=["layer", "head"])
    if rows.empty:
        raise InterpError(f"{results}/induction_scores has no {metric!r} rows; run `interp induction` first")
    best = rows.nlargest(count, "mean")
    return [(int(layer), int(head)) for layer, head in zip(best["layer"], best["head"], strict=True)]


def save_head_attention(bridge: "TransformerBridge", results: Path, layer: int, head: int, seed: int = 0) -> Path:
    """Write ``attention_pattern_L{layer}H{head}.parquet`` (+ .csv) into ``results``; return its stem."""
    from interp.store import write_table

    stem = Path(results) / f"attention_pattern_L{layer}H{head}"
    write_table(head_attention(bridge, layer, head, seed), stem)
    return stem


def ablated_repeated_loss(bridge: "TransformerBridge", heads: Sequence[tuple[int, int]],
                          config: SequenceConfig = SequenceConfig(protocol="olsson", num_seeds=4)) -> pd.DataFrame:
    """Per-token loss on the repeated sequences with ``heads`` zero-ablated.

    Columns ``seed, position, repeat, loss`` as in :func:`interp.induction.scores.repeated_sequence_loss`
    (``position`` is the predicted token's position, ``repeat`` its repeat 1..4).  An empty
    ``heads`` gives the clean loss.
    """
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        _check_head(bridge, int(layer), int(head))
        by_layer.setdefault(int(layer), []).append(int(head))

    from interp.hooks import heads_removed_hooks
    from interp.induction.scores import repeated_sequence_loss

    hooks = heads_removed_hooks(bridge, heads)
    return repeated_sequence_loss(bridge, config, extra_hooks=hooks)
