"""Activation patching between a clean and a corrupted prompt: heads' outputs, the residual stream, heads' patterns.

Two prompts of the same token length differ in one detail that changes the answer ("... Harry
Potter ... Harry" predicts " Potter"; with the first "Harry" replaced, nothing points to it).  A
*metric* reads the prediction at one position (logit difference between the answer and a wrong
token, or the answer's log-probability).  Patching runs one prompt (the *target*) with one
activation taken from the other (the *source*) and measures the metric:

- **denoising** (clean -> corrupted): target corrupted, source clean; a component whose clean
  activation restores the answer is *sufficient* for it (given the rest of the corrupted run);
- **noising** (corrupted -> clean): target clean, source corrupted; a component whose corrupted
  activation destroys the answer is *necessary* for it.

Patched activations (TransformerLens hook names): ``z`` (``hook_z``, each head's output before
``W_O``, all positions), ``resid_pre`` (the residual stream entering each layer, one position at a
time) and ``pattern`` (``hook_pattern``, each head's attention pattern, all positions).

Batched as the exact ablation is: the target run keeps the residual entering every block
(:class:`interp.hooks.ResumedRun`), and the patches of one layer (one per head, or one per
position) are stacked copies of the target batch in one forward that starts at that layer; only
the metric's position is unembedded.  ``normalised`` puts every value on the scale where the
corrupted run is 0 and the clean run 1.

>>> from interp.models.loading import load_model                                   # doctest: +SKIP
>>> bridge, _ = load_model("smollm2-135m")                                  # doctest: +SKIP
>>> table = activation_patching(bridge, "When Harry Potter met Ron, Harry", "When Larry Potter met Ron, Harry",
...                             answer_metric(bridge, " Potter", batch=1))   # doctest: +SKIP
>>> table.query("activation == 'z'").nlargest(3, "normalised")              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.errors import InterpError, check_choice
from interp.explore.text import answer_tokens, as_tokens, token_labels
from interp.hooks import ResumedRun, n_layers_heads, pattern_hook, resid_pre_hook, z_hook
from interp.induction.sequences import token_pool
from interp.output.figures import DIVERGING

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "ACTIVATIONS",
    "DIRECTIONS",
    "Metric",
    "PatchingConfig",
    "activation_patching",
    "answer_metric",
    "induction_prompts",
    "patch_hook",
    "patching_figure",
    "repeated_name_prompts",
]

ACTIVATIONS = ("z", "resid_pre", "pattern")
DIRECTIONS = ("denoising", "noising")

Metric = Callable[[Float[Tensor, "*copies batch vocab"]], Float[Tensor, "*copies batch"]]
_HOOKS = {"z": z_hook, "resid_pre": resid_pre_hook, "pattern": pattern_hook}
_PATCHED_AXIS = {"z": 2, "resid_pre": 1, "pattern": 1}  # in one copy's (batch, ...) activation: head, pos, head


@dataclass(frozen=True)
class PatchingConfig:
    """What is patched, which way, and where the metric reads the prediction."""

    activations: tuple[str, ...] = ACTIVATIONS  # heads' outputs, residual stream by position, heads' patterns
    directions: tuple[str, ...] = ("denoising",)  # clean -> corrupted, the usual first look; add "noising"
    position: int = -1  # the position whose next-token prediction the metric reads (the last)
    copies_per_forward: int | None = None  # patched copies per forward; None: a whole layer's at once

    def __post_init__(self) -> None:
        if not self.activations or not self.directions:
            raise InterpError("patching needs at least one activation and one direction")
        for activation in self.activations:
            check_choice("patched activation", activation, ACTIVATIONS)
        for direction in self.directions:
            check_choice("patching direction", direction, DIRECTIONS)
        if self.copies_per_forward is not None and self.copies_per_forward < 1:
            raise InterpError(f"copies_per_forward must be a positive integer or None, got {self.copies_per_forward!r}")


def answer_metric(bridge: "TransformerBridge", answer: "str | int | Sequence[str | int]",
                  wrong: "str | int | Sequence[str | int] | None" = None, batch: int = 1) -> Metric:
    """Logit of ``answer`` minus logit of ``wrong`` per prompt, or the answer's log-probability when ``wrong`` is None.

    Answers are one-token texts or ids, one shared by the ``batch`` prompts or one per prompt.
    """
    right = answer_tokens(bridge, answer, batch)
    other = None if wrong is None else answer_tokens(bridge, wrong, batch)

    def metric(logits: Float[Tensor, "*copies batch vocab"]) -> Float[Tensor, "*copies batch"]:
        logits = logits.float()
        index = right.to(logits.device).expand(*logits.shape[:-1]).unsqueeze(-1)
        if other is None:
            return torch.log_softmax(logits, dim=-1).gather(-1, index).squeeze(-1)
        wrong_index = other.to(logits.device).expand(*logits.shape[:-1]).unsqueeze(-1)
        return (logits.gather(-1, index) - logits.gather(-1, wrong_index)).squeeze(-1)

    return metric


def induction_prompts(bridge: "TransformerBridge", prompts: int = 8, length: int = 20, seed: int = 0
                      ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"], Int[Tensor, " batch"]]:
    """(clean, corrupted, answers) for the textbook induction circuit.

    Clean: BOS, ``length`` random tokens ``A``, then ``A`` again up to the middle, so the next
    token is predictable only by induction.  Corrupted: the same, with the *earlier occurrence of
    the current token* replaced by another random token, so nothing points back to the answer.
    Denoising then restores the prediction through the induction head (its output) and through
    the previous-token head that marks the token after the earlier occurrence (K-composition).
    """
    if prompts < 1 or length < 4:
        raise InterpError(f"induction prompts need prompts >= 1 and length >= 4, got {prompts}, {length}")
    pool, _ = token_pool(bridge.tokenizer)
    generator = torch.Generator().manual_seed(seed)
    tokenizer = bridge.tokenizer
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    cut = length // 2  # the second copy stops after A[cut - 1]; the answer is A[cut]
    rows = torch.stack([pool[torch.randperm(len(pool), generator=generator)[: length + 1]] for _ in range(prompts)])
    block, replacement = rows[:, :length], rows[:, length]  # replacement: a token that is not in A
    begin = torch.full((prompts, 1), int(start), dtype=torch.long)
    clean = torch.cat([begin, block, block[:, :cut]], dim=1)
    corrupted = clean.clone()
    corrupted[:, cut] = replacement  # position cut holds A[cut - 1], the earlier occurrence of the last token
    device = bridge.cfg.device or "cpu"
    return clean.to(device), corrupted.to(device), block[:, cut].to(device)


def repeated_name_prompts(bridge: "TransformerBridge", text: str, replacement: "str | None" = None
                          ) -> tuple[Int[Tensor, "1 pos"], Int[Tensor, "1 pos"], int]:
    """(clean, corrupted, answer) from a text whose last token occurred earlier ("... Vernon Potter ... Vernon").

    The answer is the token that followed the last token's most recent earlier occurrence
    (" Potter"); the corrupted prompt replaces that occurrence by ``replacement`` (one token; by
    default a token of the random-token pool that the text does not contain), so only induction
    can find the answer in the clean prompt and nothing points to it in the corrupted one.
    """
    from interp.explore.text import answer_token, display_token

    clean = as_tokens(bridge, text)
    row = clean[0]
    earlier = (row[1:-1] == row[-1]).nonzero()  # positions 1..pos-2 holding the last token (BOS excluded)
    if len(earlier) == 0:
        last = display_token(bridge.tokenizer.decode([int(row[-1])]))
        raise InterpError(f"the text's last token {last!r} does not occur earlier in it; end the text with a repeated "
                          "name, e.g. '... Vernon Potter ... Vernon'")
    position = int(earlier[-1]) + 1
    if replacement is None:
        pool, _ = token_pool(bridge.tokenizer)
        unused = pool[~torch.isin(pool, row.cpu())]
        swap = int(unused[torch.randperm(len(unused), generator=torch.Generator().manual_seed(0))[0]])
    else:
        swap = answer_token(bridge, replacement, role="replacement")
    corrupted = clean.clone()
    corrupted[0, position] = swap
    return clean, corrupted, int(row[position + 1])


def patch_hook(source: Tensor, chosen: Bool[Tensor, "copies index"], axis: int) -> Callable:
    """A hook on stacked copies of a batch: copy ``c`` takes ``source`` where ``chosen[c]`` marks the index.

    ``source`` is one copy's activation (batch, ...); ``axis`` is the patched axis of it (head of
    ``hook_z``: 2; position of ``hook_resid_pre``: 1; head of ``hook_pattern``: 1).  The
    activation passed in is not edited.
    """
    copies = int(chosen.shape[0])

    def hook(activation: Tensor, hook: Any) -> Tensor:
        stacked = rearrange(activation, "(copies batch) ... -> copies batch ...", copies=copies)
        shape = [copies] + [1] * (stacked.dim() - 1)
        shape[1 + axis] = int(chosen.shape[1])
        mask = chosen.to(activation.device).reshape(shape)
        patched = torch.where(mask, source.to(activation.device, activation.dtype).unsqueeze(0), stacked)
        return rearrange(patched, "copies batch ... -> (copies batch) ...")

    return hook


def _readout(bridge: "TransformerBridge", metric: Metric, position: int) -> Callable[[Tensor], Tensor]:
    def readout(final: Float[Tensor, "copies batch pos d_model"]) -> Float[Tensor, "copies batch"]:
        return metric(bridge.unembed(bridge.ln_final(final[:, :, position])))

    return readout


def _source_activations(bridge: "TransformerBridge", tokens: Tensor, activations: Sequence[str],
                        readout: Callable[[Tensor], Tensor]) -> tuple[dict[tuple[str, int], Tensor], Tensor]:
    """Every needed activation of the source run, and its metric (batch,)."""
    n_layers, _ = n_layers_heads(bridge)
    kept: dict[tuple[str, int], Tensor] = {}
    hooks = []
    for activation in activations:
        for layer in range(n_layers):
            def keep(value: Tensor, hook: Any, key: tuple[str, int] = (activation, layer)) -> None:
                kept[key] = value.detach().clone()
            hooks.append((_HOOKS[activation](layer), keep))

    def keep_final(value: Tensor, hook: Any) -> None:
        kept[("final", 0)] = value.detach()

    with torch.no_grad():
        bridge.run_with_hooks(tokens, fwd_hooks=hooks + [(f"blocks.{n_layers - 1}.hook_resid_post", keep_final)])
        metric = readout(kept.pop(("final", 0)).unsqueeze(0))[0]
    return kept, metric


def _patch_layer(run: ResumedRun, activation: str, layer: int, source: Tensor, size: int,
                 per_forward: int | None) -> Float[Tensor, "index batch"]:
    """Metric with each index (head or position) of ``activation`` in ``layer`` patched, one copy each."""
    step = per_forward or size
    values = []
    for start in range(0, size, step):
        indices = torch.arange(start, min(start + step, size))
        chosen = indices[:, None] == torch.arange(size)[None, :]  # copy -> the one index it patches
        hook = patch_hook(source, chosen, _PATCHED_AXIS[activation])
        values.append(run.resume(layer, len(indices), [(_HOOKS[activation](layer), hook)]))
    return torch.cat(values)


def activation_patching(bridge: "TransformerBridge", clean: "str | Sequence[str] | Tensor",
                        corrupted: "str | Sequence[str] | Tensor", metric: Metric,
                        config: PatchingConfig = PatchingConfig()) -> pd.DataFrame:
    """Patch every head's output, every layer's residual stream at every position and every head's pattern.

    ``clean`` and ``corrupted`` are texts (BOS prepended), lists of texts or token ids (batch,
    pos) of the same shape; ``metric`` maps logits (..., batch, vocab) at ``config.position`` to
    one value per prompt (see :func:`answer_metric`).  Returns a tidy table, one row per patch:
    ``direction, activation, layer, head, position, token, value, change, normalised, clean,
    corrupted, n_prompts``; ``value`` is the patched metric (mean over prompts), ``change`` its
    difference from the unpatched target run, ``normalised`` = (value - corrupted) / (clean -
    corrupted); ``head`` is NA for the residual stream, ``position`` NA for heads.
    """
    clean_tokens, corrupted_tokens = as_tokens(bridge, clean), as_tokens(bridge, corrupted)
    if clean_tokens.shape != corrupted_tokens.shape:
        raise InterpError(f"clean and corrupted prompts must have the same shape (batch, tokens); got "
                          f"{tuple(clean_tokens.shape)} and {tuple(corrupted_tokens.shape)}")
    length = clean_tokens.shape[1]
    if not -length <= config.position < length:
        raise InterpError(f"position {config.position} is outside the prompt's {length} tokens")
    n_layers, n_heads = n_layers_heads(bridge)
    readout = _readout(bridge, metric, config.position)
    runs = {"clean": (clean_tokens, corrupted_tokens), "corrupted": (corrupted_tokens, clean_tokens)}
    baselines, frames = {}, []
    for direction in config.directions:
        target, source = runs["corrupted" if direction == "denoising" else "clean"]
        kept, source_metric = _source_activations(bridge, source, config.activations, readout)
        run = ResumedRun(bridge, target, readout)
        baselines[direction] = (run.clean.mean().item(), source_metric.mean().item())
        for activation in config.activations:
            size = length if activation == "resid_pre" else n_heads
            values = torch.stack([_patch_layer(run, activation, layer, kept[(activation, layer)], size,
                                               config.copies_per_forward) for layer in range(n_layers)])
            frames.append(_rows(values.mean(dim=-1), direction, activation, run.clean.mean()))
    target_value, source_value = baselines[config.directions[0]]
    clean_value, corrupted_value = ((source_value, target_value) if config.directions[0] == "denoising"
                                    else (target_value, source_value))
    table = pd.concat(frames, ignore_index=True)
    labels = token_labels(bridge, clean_tokens[0])
    corrupted_labels = token_labels(bridge, corrupted_tokens[0])
    table["token"] = [None if pd.isna(position) else _position_label(labels, corrupted_labels, int(position))
                      for position in table["position"]]
    spread = clean_value - corrupted_value
    table["normalised"] = (table["value"] - corrupted_value) / spread if spread != 0 else np.nan
    table["clean"], table["corrupted"], table["n_prompts"] = clean_value, corrupted_value, int(clean_tokens.shape[0])
    return table


def _position_label(clean: list[str], corrupted: list[str], position: int) -> str:
    return clean[position] if clean[position] == corrupted[position] else f"{clean[position]}/{corrupted[position]}"


def _rows(values: Float[Tensor, "layer index"], direction: str, activation: str, target: Tensor) -> pd.DataFrame:
    n_layers, size = values.shape
    layer, index = np.meshgrid(np.arange(n_layers), np.arange(size), indexing="ij")
    flat = values.detach().double().cpu().numpy().ravel()
    by_head = activation != "resid_pre"
    return pd.DataFrame({
        "direction": direction, "activation": activation, "layer": layer.ravel(),
        "head": pd.array(index.ravel() if by_head else [pd.NA] * flat.size, dtype="Int64"),
        "position": pd.array([pd.NA] * flat.size if by_head else index.ravel(), dtype="Int64"),
        "value": flat, "change": flat - float(target)})


def patching_figure(table: pd.DataFrame, direction: str | None = None, title: str | None = None) -> go.Figure:
    """Heatmaps of the normalised metric: layer x head for ``z`` and ``pattern``, layer x position for ``resid_pre``.

    One panel per patched activation of ``direction`` (default: the table's first), one shared
    diverging colour scale centred on 0 (the corrupted run); 1 is the clean run.
    """
    from plotly.subplots import make_subplots

    for column in ("direction", "activation", "layer", "head", "position", "normalised"):
        if column not in table.columns:
            raise InterpError(f"patching figure needs a {column!r} column; the table has {list(table.columns)}")
    direction = direction or str(table["direction"].iloc[0])
    check_choice("patching direction", direction, sorted(set(table["direction"])))
    part = table[table["direction"] == direction]
    activations = [activation for activation in ACTIVATIONS if activation in set(part["activation"])]
    names = {"z": "head output (hook_z)", "resid_pre": "residual stream (resid_pre)", "pattern": "head pattern"}
    widths = [2.0 if activation == "resid_pre" else 1.0 for activation in activations]
    figure = make_subplots(rows=1, cols=len(activations), subplot_titles=[names[a] for a in activations],
                           column_widths=widths, horizontal_spacing=0.07)
    for column, activation in enumerate(activations, start=1):
        figure.add_trace(_panel(part[part["activation"] == activation], activation), row=1, col=column)
        figure.update_yaxes(title="layer" if column == 1 else None, dtick=1 if part["layer"].max() < 16 else None,
                            row=1, col=column)
        if activation == "resid_pre":
            rows = part[part["activation"] == activation].drop_duplicates("position").sort_values("position")
            figure.update_xaxes(title="position", tickvals=rows["position"].astype(int).tolist(),
                                ticktext=rows["token"].tolist(), tickangle=-60, row=1, col=column)
        else:
            figure.update_xaxes(title="head", dtick=1, row=1, col=column)
    values = part["normalised"].to_numpy(dtype=float)
    bound = max(1.0, float(np.nanmax(np.abs(values)))) if np.isfinite(values).any() else 1.0
    label = "(patched − corrupted)<br>/ (clean − corrupted)"
    colours = dict(colorscale=DIVERGING, cmid=0.0, cmin=-bound, cmax=bound, colorbar=dict(title=label))
    figure.update_layout(coloraxis=colours, template="plotly_white",
                         title=dict(text=title or f"activation patching ({direction})", x=0.02),
                         width=260 * sum(widths) + 260, height=max(380, 16 * int(part["layer"].max() + 1) + 220))
    return figure


def _panel(rows: pd.DataFrame, activation: str) -> go.Heatmap:
    across = "position" if activation == "resid_pre" else "head"
    grid = rows.pivot_table(index="layer", columns=across, values="normalised", aggfunc="mean").sort_index()
    value = rows.pivot_table(index="layer", columns=across, values="value", aggfunc="mean").reindex_like(grid)
    if activation == "resid_pre":
        tokens = rows.drop_duplicates("position").set_index("position")["token"].reindex(grid.columns).tolist()
        hover = np.array([[f"L{layer} pos {position} {tokens[index]}" for index, position in enumerate(grid.columns)]
                          for layer in grid.index])
    else:
        hover = np.array([[f"L{layer}H{head}" for head in grid.columns] for layer in grid.index])
    return go.Heatmap(z=grid.to_numpy(dtype=float), x=[int(x) for x in grid.columns], y=[int(y) for y in grid.index],
                      text=hover, customdata=value.to_numpy(dtype=float), coloraxis="coloraxis",
                      hovertemplate="%{text}<br>normalised = %{z:.3f}<br>metric = %{customdata:.3f}<extra></extra>")
