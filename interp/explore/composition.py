"""Q, K and V composition between heads of different layers (Elhage et al. 2021), with a random baseline.

A head in layer ``l1`` writes ``x W_V W_O`` into the residual stream (rows are positions, as in
TransformerLens); a head in a later layer ``l2`` reads the stream through its query, key or value
weights.  Elhage et al. ("A Mathematical Framework for Transformer Circuits", section
"Composition") measure how much the reader's matrix reads what the writer writes:

- **Q composition**: ``||W_OV^1 W_QK^2||_F / (||W_OV^1||_F ||W_QK^2||_F)``
- **K composition**: ``||W_OV^1 (W_QK^2)^T||_F / (...)``
- **V composition**: ``||W_OV^1 W_OV^2||_F / (||W_OV^1||_F ||W_OV^2||_F)``

with ``W_OV = W_V W_O`` and ``W_QK = W_Q W_K^T`` (both ``d_model x d_model`` of rank ``d_head``;
their paper writes column vectors, hence the transposes there).  The score is in [0, 1] and
scale-free.  Its floor is not 0: two unrelated matrices of these shapes still score about
``sqrt(d_head / d_model)``-ish, so every score is shown beside the **baseline** of random
Gaussian matrices of the same shapes (mean and standard deviation over random pairs).

Computed exactly and cheaply from the ``d_head``-sized factors: with ``W_OV^1 M^2 = A X E^T``
(``A = W_V^1``, ``X = W_O^1 D``, ``D`` the reader's reading factor, ``E`` its other factor) and
the QR factors ``A = Q_A R_A``, ``E = Q_E R_E``, ``||A X E^T||_F = ||R_A X R_E^T||_F``: one
``d_head x d_head`` product per pair, and no ``d_model x d_model`` matrix is ever formed.

Choices, stated: the reader's pre-attention norm gain is folded into its ``W_Q``, ``W_K``,
``W_V`` (``fold_norms=True``; the norm's 1/rms scale is a scalar per position and cancels, the
centring of LayerNorm is not folded); grouped-query KV heads are expanded to the query heads
that share them (Hugging Face ``repeat_kv`` order); rotary position embeddings are ignored
(``W_QK`` is the query-key matrix at relative offset 0), so on rotary models the Q/K scores
measure the content part of the circuit.

>>> import torch
>>> generator = torch.Generator().manual_seed(0)
>>> value, output = torch.randn(2, 8, 2, generator=generator), torch.randn(2, 2, 8, generator=generator)
>>> reading, other = output.transpose(1, 2).clone(), torch.randn(2, 8, 2, generator=generator)
>>> scores = composition_scores(value, output, reading, other)   # reader 0 reads what writer 0 writes
>>> scores.shape, bool(scores[0, 0] > scores[1, 0])
(torch.Size([2, 2]), True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from einops import einsum, rearrange, repeat
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError, check_choice
from interp.output.figures import DIVERGING, head_label

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "COMPOSITION_KINDS",
    "composition_baseline",
    "composition_figure",
    "composition_scores",
    "composition_table",
    "head_weights",
]

COMPOSITION_KINDS = ("q", "k", "v")


def _triangular(factor: Float[Tensor, "head d_model d_head"]) -> Float[Tensor, "head d_head d_head"]:
    """``R`` with ``factor^T factor = R^T R`` (QR; exact for rank-deficient factors too)."""
    return torch.linalg.qr(factor, mode="reduced").R


def composition_scores(
    writer_value: Float[Tensor, "writer d_model d_head"],
    writer_output: Float[Tensor, "writer d_head d_model"],
    reader_reading: Float[Tensor, "reader d_model d_head"],
    reader_other: Float[Tensor, "reader d_model d_head"],
) -> Float[Tensor, "writer reader"]:
    """``||W_OV^w R^r||_F / (||W_OV^w||_F ||R^r||_F)`` for every (writer, reader) pair.

    ``W_OV^w = writer_value @ writer_output``; the reader's matrix is ``R^r = reader_reading @
    reader_other^T`` (Q: ``W_Q, W_K``; K: ``W_K, W_Q``; V: ``W_V, W_O^T``).  With QR factors
    ``writer_value = Q_w R_w`` and ``reader_other = Q_r R_r``, ``||A X E^T||_F = ||R_w X R_r^T||_F``
    (orthonormal columns keep the norm), so each pair costs one ``d_head x d_model x d_head``
    product and a sum of squares (no cancellation), never a ``d_model x d_model`` matrix.
    """
    dtype = torch.promote_types(writer_value.dtype, torch.float32)  # float32 at least: half precision overflows squares
    factors = (writer_value, writer_output, reader_reading, reader_other)
    value, output, reading, other = (factor.to(dtype) for factor in factors)
    writer_side = einsum(_triangular(value), output,
                         "writer row inner, writer inner d_model -> writer row d_model")  # R_w W_O
    reader_side = einsum(reading, _triangular(other),
                         "reader d_model inner, reader column inner -> reader d_model column")  # D R_r^T
    product = einsum(writer_side, reader_side, "writer row d_model, reader d_model column -> writer reader row column")
    product_norm = product.double().square().sum(dim=(-2, -1))
    writer_norm = writer_side.double().square().sum(dim=(-2, -1))  # ||W_V W_O||^2
    reader_norm = reader_side.double().square().sum(dim=(-2, -1))  # ||D E^T||^2
    scale = (writer_norm[:, None] * reader_norm[None, :]).clamp(min=1e-300)
    return (product_norm / scale).sqrt().to(writer_value.dtype)


def _reader_factors(weights: dict[str, Tensor], kind: str) -> tuple[Tensor, Tensor]:
    """(reading, other) factors of every head for composition ``kind``: (layer, head, d_model, d_head) each."""
    if kind == "q":
        return weights["W_Q"], weights["W_K"]
    if kind == "k":
        return weights["W_K"], weights["W_Q"]
    return weights["W_V"], rearrange(weights["W_O"], "layer head d_head d_model -> layer head d_model d_head")


def _norm_gain(module: torch.nn.Module, offset: bool) -> Tensor | None:
    weight = getattr(getattr(module, "original_component", module), "weight", None)
    if weight is None:
        return None
    return weight.detach() + 1.0 if offset else weight.detach()


def head_weights(bridge: "TransformerBridge", fold_norms: bool = True) -> dict[str, Tensor]:
    """``W_Q, W_K, W_V`` (layer, head, d_model, d_head) and ``W_O`` (layer, head, d_head, d_model).

    KV heads are expanded to the query heads that share them; with ``fold_norms`` each layer's
    pre-attention norm gain multiplies the rows of its reading weights.
    """
    n_heads = int(bridge.cfg.n_heads)
    weights = {}
    for name in ("W_Q", "W_K", "W_V", "W_O"):
        weight = getattr(bridge, name).detach()
        if weight.shape[1] != n_heads:  # grouped-query attention: repeat_kv's order
            weight = repeat(weight, "layer kv_head ... -> layer (kv_head group) ...", group=n_heads // weight.shape[1])
        weights[name] = weight
    if fold_norms:
        offset = bool(getattr(bridge.cfg, "rmsnorm_uses_offset", False))
        gains = [_norm_gain(block.ln1, offset) for block in bridge.blocks]
        if all(gain is not None for gain in gains):
            gain = rearrange(torch.stack(gains), "layer d_model -> layer 1 d_model 1")
            weights.update({name: weights[name] * gain for name in ("W_Q", "W_K", "W_V")})
    return weights


def composition_baseline(d_model: int, d_head: int, samples: int = 64, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the score between random Gaussian heads of these shapes.

    All three kinds have the same baseline (each is a product of four independent Gaussian
    factors of the same shapes); ``samples`` writers x ``samples`` readers give the pairs.

    >>> mean, spread = composition_baseline(64, 16)
    >>> 0.1 < mean < 0.4 and spread < 0.05
    True
    """
    if samples < 2 or d_model < 1 or d_head < 1:
        raise InterpError(f"baseline needs samples >= 2 and positive shapes, got {samples=}, {d_model=}, {d_head=}")
    generator = torch.Generator().manual_seed(seed)
    factors = [torch.randn(samples, *shape, generator=generator, dtype=torch.float64)
               for shape in ((d_model, d_head), (d_head, d_model), (d_model, d_head), (d_model, d_head))]
    scores = composition_scores(*factors)
    return float(scores.mean()), float(scores.std())


def composition_table(bridge: "TransformerBridge", kinds: tuple[str, ...] = COMPOSITION_KINDS,
                      fold_norms: bool = True, baseline_samples: int = 64) -> pd.DataFrame:
    """Every (writer, reader) pair of heads with the writer in an earlier layer, for each kind.

    Columns ``kind, writer_layer, writer_head, reader_layer, reader_head, score, baseline,
    baseline_std, ratio`` (``ratio`` = score / baseline).  One vectorised computation per
    reader layer (all earlier heads at once).

    >>> from interp.models.loading import load_model                       # doctest: +SKIP
    >>> table = composition_table(load_model("toy-attn-2l")[0])    # doctest: +SKIP
    >>> table.query("kind == 'k'").nlargest(1, "score")             # doctest: +SKIP
    """
    for kind in kinds:
        check_choice("composition kind", kind, COMPOSITION_KINDS)
    n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
    if n_layers < 2:
        raise InterpError(f"composition needs heads in two layers; the model has {n_layers} layer")
    weights = head_weights(bridge, fold_norms)
    d_model, d_head = weights["W_Q"].shape[2], weights["W_Q"].shape[3]
    baseline, spread = composition_baseline(d_model, d_head, baseline_samples)
    value = rearrange(weights["W_V"], "layer head d_model d_head -> (layer head) d_model d_head")
    output = rearrange(weights["W_O"], "layer head d_head d_model -> (layer head) d_head d_model")
    frames = []
    for kind in kinds:
        reading, other = _reader_factors(weights, kind)
        for reader_layer in range(1, n_layers):
            writers = reader_layer * n_heads  # every head of layers 0..reader_layer-1
            scores = composition_scores(value[:writers], output[:writers], reading[reader_layer], other[reader_layer])
            writer_index, reader_head = np.meshgrid(np.arange(writers), np.arange(n_heads), indexing="ij")
            frames.append(pd.DataFrame({
                "kind": kind, "writer_layer": (writer_index // n_heads).ravel(),
                "writer_head": (writer_index % n_heads).ravel(),
                "reader_layer": reader_layer, "reader_head": reader_head.ravel(),
                "score": scores.detach().float().cpu().numpy().ravel()}))
    table = pd.concat(frames, ignore_index=True)
    table["baseline"], table["baseline_std"] = baseline, spread
    table["ratio"] = table["score"] / baseline
    return table


def composition_figure(table: pd.DataFrame, title: str = "composition scores", top: int | None = None) -> go.Figure:
    """Writer head (rows) x reader head (columns) heatmaps of score - baseline, one panel per kind.

    Pairs that cannot compose (reader not in a later layer) are blank.  ``top`` keeps only the
    heads that take part in the ``top`` highest-ratio pairs of any kind (readable on big models).

    >>> frame = pd.DataFrame({"kind": "k", "writer_layer": [0, 0], "writer_head": [0, 1], "reader_layer": 1,
    ...                       "reader_head": 0, "score": [0.6, 0.2], "baseline": 0.25, "baseline_std": 0.02})
    >>> composition_figure(frame).data[0].z.shape
    (2, 1)
    """
    from plotly.subplots import make_subplots

    for column in ("kind", "writer_layer", "writer_head", "reader_layer", "reader_head", "score", "baseline"):
        if column not in table.columns:
            raise InterpError(f"composition figure needs a {column!r} column; the table has {list(table.columns)}")
    writers = zip(table["writer_layer"], table["writer_head"], strict=True)
    readers = zip(table["reader_layer"], table["reader_head"], strict=True)
    frame = table.assign(writer=[head_label(*pair) for pair in writers], reader=[head_label(*pair) for pair in readers],
                         excess=table["score"] - table["baseline"])
    if top is not None:
        best = frame.nlargest(top, "excess")
        frame = frame[frame["writer"].isin(best["writer"]) & frame["reader"].isin(best["reader"])]
    kinds = [kind for kind in COMPOSITION_KINDS if kind in set(frame["kind"])]
    figure = make_subplots(rows=1, cols=len(kinds), subplot_titles=[f"{kind.upper()} composition" for kind in kinds],
                           horizontal_spacing=0.08)
    bound = float(np.nanmax(np.abs(frame["excess"].to_numpy()))) if len(frame) else 1.0
    for column, kind in enumerate(kinds, start=1):
        part = frame[frame["kind"] == kind]
        order = lambda labels: sorted(set(labels), key=lambda label: tuple(int(x) for x in label[1:].split("H")))  # noqa: E731
        grid = part.pivot_table(index="writer", columns="reader", values="excess", aggfunc="mean")
        grid = grid.reindex(index=order(part["writer"]), columns=order(part["reader"]))
        scores = part.pivot_table(index="writer", columns="reader", values="score", aggfunc="mean").reindex_like(grid)
        figure.add_trace(go.Heatmap(
            z=grid.to_numpy(), x=list(grid.columns), y=list(grid.index), customdata=scores.to_numpy(),
            coloraxis="coloraxis", hovertemplate=(f"{kind.upper()}: %{{y}} -> %{{x}}<br>score = %{{customdata:.3f}}"
                                                  "<br>score - baseline = %{z:.3f}<extra></extra>")), row=1, col=column)
        figure.update_xaxes(title="reader head (later layer)", type="category", row=1, col=column)
        figure.update_yaxes(title="writer head" if column == 1 else None, type="category", autorange="reversed",
                            row=1, col=column)
    baseline = float(frame["baseline"].iloc[0]) if len(frame) else float("nan")
    figure.update_layout(coloraxis=dict(colorscale=DIVERGING, cmid=0.0, cmin=-bound, cmax=bound,
                                        colorbar=dict(title=f"score − baseline<br>(baseline {baseline:.3f})")),
                         template="plotly_white", title=dict(text=title, x=0.02),
                         width=320 * len(kinds) + 220, height=max(380, 18 * grid.shape[0] + 200))
    return figure
