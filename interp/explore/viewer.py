"""Look at attention heads on any text: one head, a layer's grid, or one head with its scores.

Every view is a plotly figure with the tokens on both axes (query down, key across) and a hover
that names the query token, the key token and the weight; positions above the diagonal (the
future, masked by the causal mask) are left blank.  On a repeated sentence an induction head
draws a stripe one block back (each token attends to the token after its earlier occurrence)
and a previous-token head the diagonal just below the main one.

Figures render in a notebook (``figure.show()``), work offline, and :func:`save_html` writes a
self-contained file (plotly.js inlined).

>>> import numpy as np
>>> figure = head_pattern_figure(np.array([[1.0, 0.0], [0.4, 0.6]]), ["<bos>", "␣cat"], "L0H0")
>>> figure.data[0].customdata[1][0].tolist()   # hover of query 1, key 0: query token, key token
['␣cat', '<bos>']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.explore.text import as_tokens, token_labels
from interp.hooks import n_layers_heads, pattern_hook, run_until
from interp.output.figures import SEQUENTIAL, head_label

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "attention_patterns",
    "check_head",
    "head_overview",
    "head_pattern_figure",
    "layer_patterns_figure",
    "repeated_tokens",
    "save_html",
    "view_head",
    "view_layer",
]

_HOVER = "query %{y} %{customdata[0]}<br>key %{x} %{customdata[1]}<br>weight = %{z:.3f}<extra></extra>"
_MAX_TICK_LABELS = 64  # beyond this many tokens the axes show positions; the hover still names tokens


def check_head(bridge: "TransformerBridge", layer: int, head: int | None = None) -> None:
    """Raise :class:`InterpError` unless ``L{layer}H{head}`` (or layer ``layer``) exists."""
    n_layers, n_heads = n_layers_heads(bridge)
    if not (isinstance(layer, (int, np.integer)) and 0 <= layer < n_layers):
        raise InterpError(f"layer {layer!r} does not exist: the model has layers 0..{n_layers - 1}")
    if head is not None and not (isinstance(head, (int, np.integer)) and 0 <= head < n_heads):
        raise InterpError(f"head {head!r} does not exist: the model has heads 0..{n_heads - 1} in each layer")


@torch.no_grad()
def attention_patterns(bridge: "TransformerBridge", tokens: Int[Tensor, "batch pos"],
                       layers: Sequence[int] | None = None) -> Float[Tensor, "layer head query key"]:
    """Attention probabilities of every head of ``layers`` (default all) on the first row of ``tokens``.

    One forward, stopped after the last layer needed.
    """
    n_layers, _ = n_layers_heads(bridge)
    chosen = sorted(set(range(n_layers) if layers is None else layers))
    for layer in chosen:
        check_head(bridge, layer)
    kept: dict[int, Tensor] = {}

    def keeper(layer: int):
        def keep(pattern: Tensor, hook: Any) -> None:  # (batch, head, query, key)
            kept[layer] = pattern[0].detach().float().cpu()
        return keep

    hooks = [(pattern_hook(layer), keeper(layer)) for layer in chosen]
    run_until(bridge, tokens[:1], hooks, stop_hook=pattern_hook(chosen[-1]))
    return torch.stack([kept[layer] for layer in chosen])


def _hover_tokens(labels: Sequence[str]) -> np.ndarray:
    """(query, key, 2) array of [query token, key token] for the hover."""
    tokens = np.array(list(labels), dtype=object)
    size = len(tokens)
    return np.stack([np.repeat(tokens[:, None], size, axis=1), np.repeat(tokens[None, :], size, axis=0)], axis=-1)


def _causal(pattern: np.ndarray) -> np.ndarray:
    """The pattern with the masked future (key > query) blank."""
    shown = pattern.astype(float).copy()
    shown[np.triu_indices(shown.shape[0], k=1)] = np.nan
    return shown


def _token_axes(figure: go.Figure, labels: Sequence[str], row: int | None = None, col: int | None = None,
                show_x: bool = True, show_y: bool = True) -> None:
    where = {} if row is None else dict(row=row, col=col)
    size = len(labels)
    ticks = dict(tickvals=list(range(size)), ticktext=list(labels)) if size <= _MAX_TICK_LABELS else {}
    font = dict(size=10 if size <= 24 else 8)
    figure.update_xaxes(showticklabels=show_x, tickangle=-60, tickfont=font, constrain="domain", **ticks, **where)
    figure.update_yaxes(showticklabels=show_y, autorange="reversed", tickfont=font, **ticks, **where)


def _mark_period(figure: go.Figure, size: int, period: int, row: int | None = None, col: int | None = None) -> None:
    where = {} if row is None else dict(row=row, col=col)
    for boundary in range(1 + period, size, period):  # BOS at 0, repeats start at 1 + k * period
        line = dict(dash="dot", color="grey", width=1)
        figure.add_vline(x=boundary - 0.5, line=line, **where)
        figure.add_hline(y=boundary - 0.5, line=line, **where)


def head_pattern_figure(pattern: "Float[Tensor, 'query key'] | np.ndarray", labels: Sequence[str], title: str,
                        period: int | None = None) -> go.Figure:
    """One head's pattern, tokens on both axes, query/key tokens and weight on hover."""
    weights = np.asarray(pattern.detach().cpu() if isinstance(pattern, Tensor) else pattern, dtype=float)
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or weights.shape[0] != len(labels):
        raise InterpError(f"a head's pattern must be (query, key) with one label per token; got {weights.shape} "
                          f"and {len(labels)} labels")
    figure = go.Figure(go.Heatmap(z=_causal(weights), customdata=_hover_tokens(labels), colorscale=SEQUENTIAL,
                                  zmin=0.0, zmax=1.0, hovertemplate=_HOVER, colorbar=dict(title="attention")))
    _token_axes(figure, labels)
    if period:
        _mark_period(figure, len(labels), period)
    figure.update_xaxes(title="key (attended to)")
    figure.update_yaxes(title="query (attending)")
    side = int(min(900, max(460, 14 * len(labels) + 220)))
    figure.update_layout(template="plotly_white", title=dict(text=title, x=0.02), width=side + 60, height=side)
    return figure


def layer_patterns_figure(patterns: "Float[Tensor, 'head query key'] | np.ndarray", labels: Sequence[str], layer: int,
                          title: str | None = None, period: int | None = None) -> go.Figure:
    """A grid of every head of one layer on the same tokens, one shared colour scale."""
    from plotly.subplots import make_subplots

    weights = np.asarray(patterns.detach().cpu() if isinstance(patterns, Tensor) else patterns, dtype=float)
    n_heads = weights.shape[0]
    columns = math.ceil(math.sqrt(n_heads))
    rows = math.ceil(n_heads / columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[head_label(layer, head) for head in range(n_heads)],
                           horizontal_spacing=0.03, vertical_spacing=0.06)
    hover = _hover_tokens(labels)
    for head in range(n_heads):
        row, col = head // columns + 1, head % columns + 1
        figure.add_trace(go.Heatmap(z=_causal(weights[head]), customdata=hover, coloraxis="coloraxis",
                                    hovertemplate=f"{head_label(layer, head)}<br>" + _HOVER), row=row, col=col)
        _token_axes(figure, labels, row, col, show_x=row == rows, show_y=col == 1)
        if period:
            _mark_period(figure, len(labels), period, row, col)
    panel = int(min(420, max(220, 9 * len(labels) + 120)))
    figure.update_layout(coloraxis=dict(colorscale=SEQUENTIAL, cmin=0.0, cmax=1.0, colorbar=dict(title="attention")),
                         template="plotly_white", title=dict(text=title or f"layer {layer}: every head", x=0.02),
                         width=panel * columns + 160, height=panel * rows + 120)
    return figure


def view_head(bridge: "TransformerBridge", text: "str | Tensor", layer: int, head: int,
              period: int | None = None) -> go.Figure:
    """``L{layer}H{head}`` on ``text`` (BOS prepended) or on given token ids.

    >>> from interp.models.loading import load_model                               # doctest: +SKIP
    >>> bridge, _ = load_model("toy-attn-2l")                              # doctest: +SKIP
    >>> view_head(bridge, "and God said, and God said", 1, 2).show()        # doctest: +SKIP
    """
    check_head(bridge, layer, head)
    tokens = as_tokens(bridge, text)
    pattern = attention_patterns(bridge, tokens, [layer])[0, head]
    return head_pattern_figure(pattern, token_labels(bridge, tokens[0]), head_label(layer, head), period)


def view_layer(bridge: "TransformerBridge", text: "str | Tensor", layer: int, period: int | None = None) -> go.Figure:
    """Every head of ``layer`` on ``text``, as a grid."""
    check_head(bridge, layer)
    tokens = as_tokens(bridge, text)
    patterns = attention_patterns(bridge, tokens, [layer])[0]
    return layer_patterns_figure(patterns, token_labels(bridge, tokens[0]), layer, period=period)


def repeated_tokens(bridge: "TransformerBridge", seed: int = 0, length: int = 25) -> tuple[Int[Tensor, "1 pos"], int]:
    """BOS + ``length`` random tokens repeated 4 times (the Olsson protocol's sequence of ``seed``), and its period."""
    from interp.induction.sequences import SequenceConfig, make_batches
    from interp.models.context import model_context

    (batch,) = make_batches(bridge.tokenizer, SequenceConfig(protocol="olsson", num_seeds=1, base_length=length),
                            "repeated", seeds=[seed], context=model_context(bridge))
    return batch.tokens.to(bridge.cfg.device or "cpu"), int(batch.periods[0])


def _score_rows(bridge: "TransformerBridge", scores: "pd.DataFrame | str | Path | None", seeds: int) -> pd.DataFrame:
    """Summary rows (layer, head, metric, mean, ci_low, ci_high): given, read from a results folder, or computed."""
    if isinstance(scores, (str, Path)):
        from interp.store import read_table

        scores = read_table(Path(scores) / "induction_scores")
    if scores is None:
        from interp.induction.scores import score_heads
        from interp.induction.sequences import SequenceConfig
        from interp.stats import summarise_seeds

        per_seed = score_heads(bridge, SequenceConfig(protocol="olsson", num_seeds=seeds),
                               metrics=("prefix_matching", "previous_token", "copying"))
        scores = summarise_seeds(per_seed)
    for column in ("layer", "head", "metric", "mean"):
        if column not in scores.columns:
            raise InterpError(f"head scores need a {column!r} column (an induction_scores table); "
                              f"got {list(scores.columns)}")
    return scores.dropna(subset=["layer", "head"])


def _score_table(rows: pd.DataFrame, layer: int, head: int) -> go.Table:
    mine = rows[(rows["layer"] == layer) & (rows["head"] == head)]
    cells: list[list[str]] = [[], [], [], []]
    for row in mine.itertuples():
        among = rows[rows["metric"] == row.metric]["mean"]
        interval = (f"[{row.ci_low:.3f}, {row.ci_high:.3f}]" if hasattr(row, "ci_low") and pd.notna(row.ci_low) else "")
        for column, value in enumerate((row.metric, f"{row.mean:.3f}", interval,
                                        f"{int((among > row.mean).sum()) + 1} of {len(among)}")):
            cells[column].append(value)
    return go.Table(header=dict(values=["score", "mean", "95% interval", "rank among heads"], align="left", height=28),
                    cells=dict(values=cells, align="left", height=26))


def head_overview(bridge: "TransformerBridge", layer: int, head: int, text: "str | Tensor | None" = None,
                  scores: "pd.DataFrame | str | Path | None" = None, seeds: int = 5, seed: int = 0) -> go.Figure:
    """From a score to the head: its pattern on repeated random tokens and on ``text``, with its scores.

    ``scores`` is an ``induction_scores`` table (``layer, head, metric, mean, ci_low, ci_high``),
    a results folder holding one, or None to compute prefix matching, previous token and copying
    on ``seeds`` Olsson sequences here.
    """
    from plotly.subplots import make_subplots

    check_head(bridge, layer, head)
    rows = _score_rows(bridge, scores, seeds)
    repeated, period = repeated_tokens(bridge, seed)
    panels = [("repeated random tokens", repeated, period)]
    if text is not None:
        panels.append(("your text", as_tokens(bridge, text), None))
    metrics = int(((rows["layer"] == layer) & (rows["head"] == head)).sum())
    heatmap_px, table_px, gap_px = 520, 56 * (metrics + 1), 110  # room for every row of the table (none scrolled away)
    total = heatmap_px + table_px + gap_px
    figure = make_subplots(rows=2, cols=len(panels), row_heights=[heatmap_px / total, table_px / total],
                           vertical_spacing=gap_px / total,
                           subplot_titles=[name for name, _, _ in panels],
                           specs=[[{"type": "heatmap"}] * len(panels), [{"type": "table", "colspan": len(panels)}]
                                  + [None] * (len(panels) - 1)])
    for column, (_, tokens, block) in enumerate(panels, start=1):
        labels = token_labels(bridge, tokens[0])
        pattern = attention_patterns(bridge, tokens, [layer])[0, head].numpy()
        figure.add_trace(go.Heatmap(z=_causal(pattern), customdata=_hover_tokens(labels), coloraxis="coloraxis",
                                    hovertemplate=_HOVER), row=1, col=column)
        _token_axes(figure, labels, 1, column)
        if block:
            _mark_period(figure, len(labels), block, 1, column)
    figure.add_trace(_score_table(rows, layer, head), row=2, col=1)
    colourbar = dict(title="attention", len=heatmap_px / total, y=1.0, yanchor="top")
    figure.update_layout(coloraxis=dict(colorscale=SEQUENTIAL, cmin=0.0, cmax=1.0, colorbar=colourbar),
                         template="plotly_white", title=dict(text=f"{head_label(layer, head)}", x=0.02),
                         width=560 * len(panels) + 120, height=total + 100)
    return figure


def save_html(figure: go.Figure, path: "str | Path") -> Path:
    """Write ``figure`` as one self-contained HTML file (plotly.js inlined: opens offline, anywhere)."""
    from interp.store import atomic_write

    path = Path(path)
    if path.suffix != ".html":
        raise InterpError(f"{path} should end in .html")
    atomic_write(path, lambda temporary: figure.write_html(temporary, include_plotlyjs=True, full_html=True))
    return path
