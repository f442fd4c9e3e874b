"""Attention knockout of the induction edges: a head keeps working, minus its induction pattern.

Crosbie & Shutova (NAACL Findings 2025, section 5) remove only what makes a head an induction
head: its attention from each token to the tokens that followed earlier occurrences of that token.
Here that is a mask on the pre-softmax attention scores (``blocks.{l}.attn.hook_attn_scores``,
which the ``TransformerBridge`` fires for GPT-2, OPT and Llama/GQA attention alike, after the causal
mask and before the softmax): the chosen heads' scores on the *induction edges* become ``-inf``,
so after the softmax those edges carry exactly zero weight and the rest renormalises.

**Induction edges** (query ``q``, key ``k``): ``k = j + 1`` for every earlier position ``j < q``
that ends an occurrence of what ends at ``q``:

- ``granularity="token"``: the token itself (``tokens[j] == tokens[q]``): the edges whose weight
  :func:`interp.induction.scores.prefix_matching_scores` sums;
- ``granularity="word"`` (default): the word so far, so that a multi-token word is matched as a
  whole: ``tokens[s..q]`` (``s`` the start of ``q``'s word) equals ``tokens[j-(q-s)..j]`` and
  ``j-(q-s)`` starts a word too.  For one-token words this is the token rule; for the last token of
  a multi-token word the key is the token after an earlier occurrence of the whole word.

A token *starts a word* (:func:`word_starts`) when it is the first, when its text begins with a
space marker (``Ġ``, ``▁``), whitespace or any other non-alphanumeric character, or when the token
before it is special or ends with one.  Key 0 follows nothing, so it is never an edge and no
query row is ever fully masked.

Where the bridge delegates attention to the wrapped Hugging Face module (OPT in TransformerLens
4.3), ``hook_attn_scores`` fires only after the fact and an edit is discarded;
:func:`check_knockout_supported` probes for that with a 3-token forward and raises instead.

Like exact ablation, several head sets run in one forward: the batch is stacked ``copies`` times
and copy ``c`` knocks out the heads ``knocked[c]`` (:func:`knockout_hook`).

>>> tokens = torch.tensor([[0, 5, 6, 5, 6]])       # BOS, then "5 6" twice
>>> edges = induction_edges(tokens)              # token granularity without word starts
>>> edges[0].nonzero().tolist()                  # query 3 (5) -> key 2 (the 6 after the first 5), 4 -> 3
[[3, 2], [4, 3]]
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import einops
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.errors import InterpError, check_choice
from interp.hooks import Hook, attn_scores_hook, n_layers_heads

if TYPE_CHECKING:
    import pandas as pd
    from transformer_lens.model_bridge import TransformerBridge

    from interp.induction.sequences import SequenceConfig

__all__ = [
    "GRANULARITIES",
    "check_knockout_supported",
    "induction_edges",
    "knocked_out_repeated_loss",
    "knockout_hook",
    "knockout_hooks",
    "previous_positions",
    "self_contained_knockout_hooks",
    "word_starts",
]

GRANULARITIES = ("word", "token")
_SPACE_MARKERS = {"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"}  # byte-level BPE and SentencePiece spellings


def _token_text(raw: str) -> str:
    for marker, character in _SPACE_MARKERS.items():
        raw = raw.replace(marker, character)
    return raw


def previous_positions(visible: Bool[Tensor, "batch query key"]) -> Int[Tensor, "batch pos"]:
    """Each token's predecessor in its own sequence (-1: none): ``k - 1`` in a plain row, else the last key ``k`` sees.

    In a packed shared-context row the first token of a continuation follows the context's last
    token, not the previous continuation; every query that sees the token sees it there.
    """
    position = torch.arange(visible.shape[-1], device=visible.device)
    own_row = visible & (position[None, :] < position[:, None])  # (batch, pos, earlier): strictly before itself
    return torch.where(own_row, position, -1).amax(dim=-1)


def _plain_previous(tokens: Tensor) -> Tensor:
    return (torch.arange(tokens.shape[1], device=tokens.device) - 1).expand(tokens.shape)


def word_starts(tokenizer: Any, tokens: Int[Tensor, "batch pos"],
                previous: Int[Tensor, "batch pos"] | None = None) -> Bool[Tensor, "batch pos"]:
    """Whether each token begins a word (see the module docstring), from the tokenizer's token strings.

    ``previous`` (:func:`previous_positions`) names each token's predecessor; default ``k - 1``.
    Only the distinct ids present are looked up, so a 262k vocabulary costs nothing.
    """
    distinct, inverse = torch.unique(tokens.cpu(), return_inverse=True)
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    texts = [_token_text(str(raw or "")) for raw in tokenizer.convert_ids_to_tokens(distinct.tolist())]
    is_special = [int(token) in special for token in distinct.tolist()]
    begins = torch.tensor([flag or not text[:1].isalnum() for text, flag in zip(texts, is_special, strict=True)])
    ends = torch.tensor([flag or not text[-1:].isalnum() for text, flag in zip(texts, is_special, strict=True)])
    previous = (_plain_previous(tokens) if previous is None else previous).cpu()
    ends_before = ends[inverse].gather(1, previous.clamp(min=0))  # (batch, pos): the predecessor ends a word
    starts = begins[inverse] | ends_before | (previous < 0)
    return starts.to(tokens.device)


def _matching_occurrences(tokens: Int[Tensor, "batch pos"], starts: Bool[Tensor, "batch pos"] | None,
                          previous: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch query earlier"]:
    """``[b, q, j]``: position ``j`` ends an occurrence of the unit (token or word so far) ending at ``q``."""
    same = tokens[:, :, None] == tokens[:, None, :]  # (batch, query, earlier)
    if starts is None:
        return same
    both_start = starts[:, :, None] & starts[:, None, :]
    both_inside = ~starts[:, :, None] & ~starts[:, None, :]
    match = same & both_start
    # A word-internal position matches when its token does and the two predecessors match: one step
    # per token of the longest word (a loop over offsets within a word, not over positions).
    rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None, None]
    before_query, before_earlier = previous.clamp(min=0)[:, :, None], previous.clamp(min=0)[:, None, :]
    has_before = (previous >= 0)[:, :, None] & (previous >= 0)[:, None, :]
    word_length = _longest_word(starts, previous)
    for _ in range(word_length - 1):
        before = match[rows, before_query, before_earlier] & has_before
        match = same & (both_start | (both_inside & before))
    return match


def _longest_word(starts: Tensor, previous: Tensor) -> int:
    """Tokens in the longest word, following predecessors (a few steps: words are short)."""
    length, inside = 1, ~starts
    while bool(inside.any()):
        length += 1
        inside = inside & ~starts.gather(1, previous.clamp(min=0))
        previous = previous.gather(1, previous.clamp(min=0))
    return length


def induction_edges(tokens: Int[Tensor, "batch pos"], starts: Bool[Tensor, "batch pos"] | None = None,
                    visible: Bool[Tensor, "batch query key"] | None = None) -> Bool[Tensor, "batch query key"]:
    """The induction edges of every query (module docstring); ``starts=None`` gives token granularity.

    ``visible`` (packed shared-context rows with a block mask): each query sees its own sequence only,
    so occurrences, predecessors and "the key right after" are taken within what it sees; the edges
    then equal those of the unpacked sequences (tested).
    """
    if starts is not None and starts.shape != tokens.shape:
        raise InterpError(f"word starts have shape {tuple(starts.shape)}; the tokens have {tuple(tokens.shape)}")
    length = tokens.shape[1]
    position = torch.arange(length, device=tokens.device)
    earlier = position[None, :] < position[:, None]  # (query, earlier): strictly before the query
    previous = _plain_previous(tokens) if visible is None else previous_positions(visible)
    occurrence = _matching_occurrences(tokens, starts, previous) & earlier
    if visible is None:
        edges = torch.zeros_like(occurrence)
        edges[:, :, 1:] = occurrence[:, :, :-1]  # the key right after each occurrence
        return edges
    occurrence &= visible
    # The key after j as the query sees it: the first visible position after j (reverse running minimum).
    candidates = torch.where(visible, position, length)
    next_from = torch.flip(torch.cummin(torch.flip(candidates, [-1]), dim=-1).values, [-1])  # first visible >= k
    after = torch.cat([next_from[..., 1:], torch.full_like(next_from[..., :1], length)], dim=-1)  # first visible > j
    valid = occurrence & (after < length)
    counts = torch.zeros(*occurrence.shape[:2], length + 1, dtype=torch.int32, device=tokens.device)
    counts.scatter_add_(-1, torch.where(valid, after, length), valid.int())
    return counts[..., :length] > 0


_SUPPORTED: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()  # bridge -> probe result


def check_knockout_supported(bridge: "TransformerBridge") -> None:
    """Raise unless editing every layer's ``hook_attn_scores`` changes its attention pattern (probed once per bridge).

    The probe gives head 0 of every layer ``-inf`` on every key but the first and checks that the
    pattern then puts all weight on the first key.
    """
    if bridge not in _SUPPORTED:
        n_layers, _ = n_layers_heads(bridge)
        tokens = torch.tensor([[int(bridge.tokenizer.bos_token_id or 0), 1, 1]], device=bridge.cfg.device)
        patterns: dict[int, Tensor] = {}

        def only_first_key(scores: Tensor, hook: Any) -> Tensor:
            blocked = scores.clone()
            blocked[:, 0, :, 1:] = float("-inf")
            return blocked

        def keep(layer: int) -> Callable:
            def hook(pattern: Tensor, hook: Any) -> None:
                patterns[layer] = pattern[0, 0, :, 0].detach()
            return hook

        hooks = [(attn_scores_hook(layer), only_first_key) for layer in range(n_layers)]
        hooks += [(f"blocks.{layer}.attn.hook_pattern", keep(layer)) for layer in range(n_layers)]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the bridge warns where the edit is discarded; the check says so below
            bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        _SUPPORTED[bridge] = len(patterns) == n_layers and all(
            bool(torch.allclose(weights, torch.ones_like(weights), atol=1e-4)) for weights in patterns.values())
    if not _SUPPORTED[bridge]:
        kind = type(bridge.blocks[0].attn).__name__
        raise InterpError(f"attention knockout needs editable attention scores; this model's {kind} hands attention to "
                          "the Hugging Face module, which ignores edits to hook_attn_scores (use zero or mean "
                          "ablation)")


def knockout_hook(edges: Bool[Tensor, "batch query key"], knocked: Bool[Tensor, "copies head"],
                  copies: int) -> Callable:
    """A ``hook_attn_scores`` hook: in copy ``c`` the heads ``knocked[c]`` get ``-inf`` on ``edges``.

    The scores arrive as ``(copies * batch, head, query, key)``; the caller's tensor is not edited.
    """

    def hook(scores: Tensor, hook: Any) -> Tensor:
        stacked = einops.rearrange(scores, "(copies batch) head query key -> copies batch head query key",
                                   copies=copies)
        heads = einops.rearrange(knocked.to(scores.device), "copies head -> copies 1 head 1 1")
        where = einops.rearrange(edges.to(scores.device), "batch query key -> 1 batch 1 query key")
        blocked = stacked.masked_fill(heads & where, float("-inf"))
        return einops.rearrange(blocked, "copies batch head query key -> (copies batch) head query key")

    return hook


def knockout_hooks(edges: Bool[Tensor, "batch query key"], head_masks: Bool[Tensor, "copies layer head"],
                   start: int = 0) -> list[Hook]:
    """Hooks knocking out, per copy, the induction edges of the heads its mask marks (layers >= ``start``)."""
    copies, n_layers, _ = head_masks.shape
    return [(attn_scores_hook(layer), knockout_hook(edges, head_masks[:, layer], copies))
            for layer in range(start, n_layers) if bool(head_masks[:, layer].any())]


def self_contained_knockout_hooks(bridge: "TransformerBridge", heads: Sequence[tuple[int, int]],
                                  granularity: str = "word") -> list[Hook]:
    """Knockout of ``heads`` for any ordinary forward: the edges come from the tokens the forward embeds.

    A hook on ``embed.hook_in`` (which receives the token ids) computes the edges of each batch;
    the score hooks read them.  Unstacked (one copy); for stacked copies use :func:`knockout_hooks`.
    """
    check_choice("granularity", granularity, GRANULARITIES)
    check_knockout_supported(bridge)
    n_layers, n_heads = n_layers_heads(bridge)
    head_masks = torch.zeros(1, n_layers, n_heads, dtype=torch.bool)
    for layer, head in heads:
        if not (0 <= int(layer) < n_layers and 0 <= int(head) < n_heads):
            raise InterpError(f"head L{layer}H{head} does not exist: layers 0..{n_layers - 1}, heads 0..{n_heads - 1}")
        head_masks[0, int(layer), int(head)] = True
    state: dict[str, Tensor] = {}

    def keep_edges(token_ids: Tensor, hook: Any) -> None:
        starts = word_starts(bridge.tokenizer, token_ids) if granularity == "word" else None
        state["edges"] = induction_edges(token_ids, starts)

    def scores_hook(layer: int) -> Callable:
        def hook(scores: Tensor, hook: Any) -> Tensor:
            return knockout_hook(state["edges"], head_masks[:, layer], 1)(scores, hook)
        return hook

    layers = [layer for layer in range(n_layers) if bool(head_masks[0, layer].any())]
    return [("embed.hook_in", keep_edges)] + [(attn_scores_hook(layer), scores_hook(layer)) for layer in layers]


def knocked_out_repeated_loss(bridge: "TransformerBridge", heads: Sequence[tuple[int, int]],
                              config: "SequenceConfig | None" = None, granularity: str = "word") -> "pd.DataFrame":
    """Per-token loss on the repeated sequences with the induction edges of ``heads`` knocked out.

    Columns ``seed, position, repeat, loss`` as :func:`interp.induction.attention.ablated_repeated_loss`,
    whose zero ablation of the whole head it is compared with.

    >>> from interp.models.loading import load_model                                # doctest: +SKIP
    >>> bridge, _ = load_model("toy-attn-2l")                                       # doctest: +SKIP
    >>> knocked_out_repeated_loss(bridge, [(1, 2)]).groupby("repeat")["loss"].mean()  # doctest: +SKIP
    """
    from interp.induction.scores import repeated_sequence_loss
    from interp.induction.sequences import SequenceConfig

    config = SequenceConfig(protocol="olsson", num_seeds=4) if config is None else config
    return repeated_sequence_loss(bridge, config, extra_hooks=self_contained_knockout_hooks(bridge, heads, granularity))
