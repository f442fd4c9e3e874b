"""Per-head induction scores: prefix matching, copying, OV copying, and their relatives.

Two layers of API:

- pure tensor functions (``prefix_matching_scores``, ``copying_scores``, ``ov_copying_scores``
  ...) that take attention patterns / head vectors and return one value per (batch row, head);
- :func:`score_heads`, which runs a ``TransformerBridge`` over seeded sequences with hooks and
  returns a tidy DataFrame (seed, layer, head, metric, value).

Everything is batched over sequences and vectorised over heads and positions; nothing loops in
Python below the layer level (but for a few blocks of queries in the copying score, which keep its
``query x key`` work tensors bounded), and everything stays on the model's device.  The attention
metrics read only the pattern entries they sum (an index table built once per batch), and the loss
is taken over the logits as they lie, so at 893-token sequences scoring costs about what the bare
forward passes do (``benchmarks/bench_main_job.py``).

Definitions (``docs/methods.md``; Olsson et al. 2022, Bansal et al. 2023):

- *prefix matching*: for each query whose token occurred earlier, the attention summed over the
  positions right after each earlier occurrence; averaged over those queries (on a 4-repeat
  sequence: the queries of repeats 2..4, Bansal's division by 3L).
- *copying*: at position j, the head's output is mapped to vocabulary logits (``W_O`` then
  ``W_U``, no final norm, as in the reference code); over the tokens attendable at j, their
  probabilities minus the mean, ReLU, and the share of the token the head attends to most;
  averaged over positions.  The softmax normaliser cancels in that share, so only the logits of
  the j+1 attendable tokens are needed: ``(z_j W_O) W_U[:, ids]`` through the d_head-sized
  factor ``W_O W_U[:, ids]``, never the whole vocabulary.  ``variant="reference"`` reproduces
  Bansal's code, which maps the head's value vector *at j* (with ``b_O``) instead of its
  attention-weighted output.
- *OV copying*: sum(eigenvalues)/sum(|eigenvalues|) of ``W_E W_V W_O W_U``, from the
  ``d_head x d_head`` product that shares its nonzero eigenvalues.
- *previous token*, *duplicate token*, *induction stripe* (after TransformerLens
  ``head_detector``): mean attention to position i-1; to earlier copies of the same token; to the
  position after the most recent earlier copy.

>>> import torch
>>> tokens = torch.tensor([[0, 5, 6, 5, 6]])            # BOS, then "5 6" twice
>>> pattern = torch.zeros(1, 1, 5, 5)
>>> pattern[0, 0, 3, 2] = pattern[0, 0, 4, 3] = 1.0      # attend to the token after the earlier copy
>>> prefix_matching_scores(pattern, tokens, torch.tensor([5]))
tensor([[1.]])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import torch
from einops import einsum, rearrange, repeat
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.errors import check_choice
from interp.hooks import StopForward, run_until
from interp.induction.sequences import SequenceBatch, SequenceConfig, make_batches
from interp.losses import next_token_loss
from interp.models.context import model_context
from interp.reach.placement import readable_weights

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "ATTENTION_METRICS",
    "COPYING_SOURCES",
    "COPYING_VARIANTS",
    "METRICS",
    "attention_masks",
    "copying_scores",
    "ov_copying_scores",
    "prefix_matching_scores",
    "repeated_sequence_loss",
    "score_heads",
]

ATTENTION_METRICS = ("prefix_matching", "previous_token", "duplicate_token", "induction_stripe")
METRICS = ATTENTION_METRICS + ("copying", "ov_copying")
COPYING_VARIANTS = ("olsson", "reference")
COPYING_SOURCES = ("embeddings", "residual")


# ----------------------------------------------------------------------------------------------
# Pure tensor functions


def _target_masks(
    tokens: Int[Tensor, "batch position"], lengths: Int[Tensor, " batch"]
) -> tuple[Bool[Tensor, "metric batch query key"], Bool[Tensor, "metric batch query"]]:
    """:func:`attention_masks` as booleans (a quarter of the memory of the float masks)."""
    batch, length = tokens.shape
    device = tokens.device
    position = torch.arange(length, device=device)
    real = position[None, :] < lengths[:, None]  # (batch, position)
    earlier = position[None, :] < position[:, None]  # (query, key): key strictly before query
    same = (tokens[:, :, None] == tokens[:, None, :]) & earlier[None] & real[:, :, None] & real[:, None, :]
    has_earlier = same.any(dim=-1)  # (batch, query)

    # The key right after each earlier occurrence: shift "same" one step along the key axis.
    after_occurrence = torch.zeros_like(same)
    after_occurrence[:, :, 1:] = same[:, :, :-1]

    # Induction stripe: only the key after the *most recent* earlier occurrence.
    last_occurrence = torch.where(same, position, -1).amax(dim=-1)  # (batch, query)
    stripe = (position[None, None, :] == (last_occurrence + 1)[:, :, None]) & has_earlier[:, :, None]

    previous = (position[:, None] - 1 == position[None, :])[None] & real[:, :, None]
    has_previous = real & (position[None, :] >= 1)

    targets = torch.stack([after_occurrence, previous, same, stripe])
    queries = torch.stack([has_earlier, has_previous, has_earlier, has_earlier])
    return targets, queries


def attention_masks(
    tokens: Int[Tensor, "batch position"], lengths: Int[Tensor, " batch"]
) -> tuple[Float[Tensor, "metric batch query key"], Float[Tensor, "metric batch query"]]:
    """Target masks and query weights for every attention metric, in ``ATTENTION_METRICS`` order.

    Returns ``targets[metric, b, q, k]`` (1 where query q's attention to key k counts) and
    ``queries[metric, b, q]`` (1 for the queries averaged over).  Each metric's score is
    ``sum(pattern * targets) / sum(queries)`` per sequence and head; the scores themselves read
    only the nonzero entries (:class:`_AttentionTargets`).

    >>> targets, queries = attention_masks(torch.tensor([[0, 5, 6, 5, 6]]), torch.tensor([5]))
    >>> targets[ATTENTION_METRICS.index("prefix_matching"), 0].nonzero().tolist()  # query 3 reads key 2, 4 reads 3
    [[3, 2], [4, 3]]
    """
    targets, queries = _target_masks(tokens, lengths)
    return targets.float(), queries.float()


@dataclass(frozen=True)
class _AttentionTargets:
    """The pattern entries each (metric, sequence) sums, as a padded index table built once per batch.

    Every metric reads few keys per query (one for previous token and the stripe, one per earlier
    copy for the others), so gathering them costs ``entries x heads`` per layer instead of passes
    over the whole ``(batch, head, query, key)`` pattern with dense float masks.  Padded slots
    point at entry (0, 0, 0) and are zeroed by ``valid``; a sum over slots (not a scatter) keeps
    the result deterministic on every device.
    """

    row: Int[Tensor, "group slot"]  # group = metric * batch + row of the batch
    query: Int[Tensor, "group slot"]
    key: Int[Tensor, "group slot"]
    valid: Bool[Tensor, "group slot"]
    counts: Float[Tensor, "metric batch"]  # queries averaged over (at least 1)

    @classmethod
    def of(cls, tokens: Int[Tensor, "batch position"], lengths: Int[Tensor, " batch"]) -> "_AttentionTargets":
        targets, queries = _target_masks(tokens, lengths)
        n_metrics, batch = queries.shape[:2]
        metric, row, query, key = targets.nonzero(as_tuple=True)  # sorted by (metric, row, ...): groups are runs
        group = metric * batch + row
        sizes = torch.bincount(group, minlength=n_metrics * batch)
        slot = torch.arange(len(group), device=group.device) - (sizes.cumsum(0) - sizes)[group]
        width = max(int(sizes.max()), 1) if len(group) else 1
        table = torch.zeros(4, n_metrics * batch, width, dtype=torch.long, device=tokens.device)
        table[:, group, slot] = torch.stack([row, query, key, torch.ones_like(key)])
        return cls(table[0], table[1], table[2], table[3].bool(), queries.sum(dim=-1).clamp(min=1).float())

    def to(self, device: "torch.device | str") -> "_AttentionTargets":
        return _AttentionTargets(*(getattr(self, name).to(device)
                                   for name in ("row", "query", "key", "valid", "counts")))


def _mean_attention_at(
    pattern: Float[Tensor, "batch head query key"], targets: _AttentionTargets
) -> Float[Tensor, "metric batch head"]:
    n_metrics, batch = targets.counts.shape
    values = pattern[targets.row, :, targets.query, targets.key]  # (group, slot, head)
    total = (values * targets.valid[:, :, None]).sum(dim=1)
    return rearrange(total, "(metric batch) head -> metric batch head", metric=n_metrics) / targets.counts[:, :,
                                                                                                           None].to(total)


def attention_scores(
    pattern: Float[Tensor, "batch head query key"],
    tokens: Int[Tensor, "batch position"],
    lengths: Int[Tensor, " batch"],
) -> Float[Tensor, "metric batch head"]:
    """All of ``ATTENTION_METRICS`` for one layer's pattern, stacked along the first axis."""
    return _mean_attention_at(pattern, _AttentionTargets.of(tokens, lengths).to(pattern.device))


def prefix_matching_scores(
    pattern: Float[Tensor, "batch head query key"],
    tokens: Int[Tensor, "batch position"],
    lengths: Int[Tensor, " batch"],
) -> Float[Tensor, "batch head"]:
    """Prefix-matching score of each head on each sequence (see the module docstring)."""
    return attention_scores(pattern, tokens, lengths)[ATTENTION_METRICS.index("prefix_matching")]


def copying_scores(
    pattern: Float[Tensor, "batch head query key"],
    head_vectors: Float[Tensor, "batch query head d_head"],
    output_weight: Float[Tensor, "head d_head d_model"],
    unembed: Float[Tensor, "d_model vocab"],
    tokens: Int[Tensor, "batch position"],
    lengths: Int[Tensor, " batch"],
    output_bias: Float[Tensor, " d_model"] | None = None,
    unembed_bias: Float[Tensor, " vocab"] | None = None,
) -> Float[Tensor, "batch head"]:
    """Copying score of each head: share of the attended token in the above-mean probability mass.

    ``head_vectors`` are what is mapped to logits at each position: the attention-weighted values
    ``z`` (Olsson's definition) or the value at the position itself (Bansal's reference code).
    The logits of the attendable tokens are ``head_vectors @ (W_O @ W_U[:, tokens])``; the
    ``d_head x position`` factor is built once per layer, so the cost per head is
    ``d_head * query * key`` instead of ``d_model * vocab`` per position.
    """
    batch, length = tokens.shape
    position = torch.arange(length, device=tokens.device)
    # (batch, d_model, key): the unembedding columns of the tokens present in each sequence.
    unembed_at_tokens = rearrange(unembed[:, tokens], "d_model batch key -> batch d_model key")
    factor = einsum(output_weight, unembed_at_tokens, "head d_head d_model, batch d_model key -> batch head d_head key")
    key_biases = []
    if output_bias is not None:
        key_biases.append(einsum(output_bias, unembed_at_tokens, "d_model, batch d_model key -> batch key"))
    if unembed_bias is not None:
        key_biases.append(unembed_bias[tokens])
    vectors = rearrange(head_vectors, "batch query head d_head -> batch head query d_head").contiguous()
    attended = pattern.argmax(dim=-1)  # (batch, head, query): the key each query attends to most
    # For a real query the attendable keys are exactly the causal ones (padding only follows the
    # sequence); padded queries get weight 0 below, whatever their share.
    hidden = position[None, :] > position[:, None]  # (query, key)
    # Queries in blocks: the (batch, head, query, key) work tensors stay bounded instead of growing
    # with length^2, and a block needs only the keys up to its last query, which saves about a third
    # of the work.  The loop runs over blocks, a handful per layer, never over positions.
    block = max(1, _COPYING_BLOCK_ELEMENTS // max(1, batch * factor.shape[1] * length))
    share = torch.cat([
        _copying_share(vectors[:, :, start:start + block], factor, key_biases, attended[:, :, start:start + block],
                       hidden[start:start + block], start)
        for start in range(0, length, block)
    ], dim=-1)
    real = position[None, :] < lengths[:, None]
    query_weight = real[:, None, :].to(share.dtype)
    return (share * query_weight).sum(dim=-1) / query_weight.sum(dim=-1)


_COPYING_BLOCK_ELEMENTS = 1 << 23  # logits per block of queries (32 MB in float32); smaller blocks cost more calls


def _copying_share(
    vectors: Float[Tensor, "batch head query d_head"],
    factor: Float[Tensor, "batch head d_head key"],
    key_biases: list[Float[Tensor, "batch key"]],
    attended: Int[Tensor, "batch head query"],
    hidden: Bool[Tensor, "query key"],
    start: int,
) -> Float[Tensor, "batch head query"]:
    """Copying share of the queries ``start ..``: the attended key's part of the above-mean mass."""
    stop = start + vectors.shape[2]
    logits = torch.matmul(vectors, factor[..., :stop])  # (batch, head, query, key)
    for bias in key_biases:
        logits += bias[:, None, None, :stop]
    # softmax over the vocabulary = exp(logit) / Z; Z cancels in the share below, and so does any
    # constant shift, so subtract the max over attendable keys for stability.  In place: the block's
    # logits are the only large tensor.  Hidden keys get weight 0, and relu(0 - mean) = 0, so no
    # second mask is needed after the mean.
    logits.masked_fill_(hidden[:, :stop], float("-inf"))
    weights = logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
    counts = torch.arange(start + 1, stop + 1, device=vectors.device)[:, None]  # attendable keys of each query
    above_mean = weights.sub_(weights.sum(dim=-1, keepdim=True) / counts).relu_()
    total = above_mean.sum(dim=-1)
    inside = attended < stop  # a key past the block's last query is never attendable: its share is 0
    picked = above_mean.gather(-1, torch.where(inside, attended, 0)[..., None]).squeeze(-1) * inside
    return torch.where(total > 0, picked / total.clamp(min=1e-30), 0.0)


def ov_copying_scores(
    embed: Float[Tensor, "vocab d_model"],
    value_weight: Float[Tensor, "layer head d_model d_head"],
    output_weight: Float[Tensor, "layer head d_head d_model"],
    unembed: Float[Tensor, "d_model vocab"],
) -> Float[Tensor, "layer head"]:
    """sum(λ)/sum(|λ|) over the eigenvalues λ of each head's OV circuit ``W_E W_V W_O W_U``.

    The vocab x vocab circuit shares its nonzero eigenvalues with the d_head x d_head product
    ``W_O (W_U W_E) W_V`` (eig(AB) = eig(BA) up to zeros), so only that is decomposed.
    """
    # (d_model, d_model): the one vocabulary-sized contraction, in the weights' precision (float64
    # here costs minutes for a 262k vocabulary on a CPU); the small eigenproblems run in float64.
    vocabulary_core = (unembed @ embed).double()
    small = einsum(
        output_weight.double(), vocabulary_core, value_weight.double(),
        "layer head d_head_out d_model_out, d_model_out d_model_in, layer head d_model_in d_head_in"
        " -> layer head d_head_out d_head_in",
    )
    eigenvalues = torch.linalg.eigvals(small)
    score = eigenvalues.sum(dim=-1).real / eigenvalues.abs().sum(dim=-1).clamp(min=1e-30)
    return score.to(embed.dtype)


# ----------------------------------------------------------------------------------------------
# Running a model


def _optional_parameter(bridge: "TransformerBridge", name: str) -> Tensor | None:
    """A stacked bias such as ``b_O``, or None for bias-free models (Llama, Gemma)."""
    try:
        parameter = getattr(bridge, name)
    except AttributeError:
        return None
    return None if parameter is None else parameter.detach()


def _query_head_weights(bridge: "TransformerBridge", name: str) -> Tensor:
    """``W_V``-like weights expanded from KV heads to query heads (grouped-query attention)."""
    weight = getattr(bridge, name)
    n_heads = bridge.cfg.n_heads
    if weight.shape[1] != n_heads:  # (layer, kv_head, ...) -> (layer, head, ...), HF repeat_kv order
        weight = weight.repeat_interleave(n_heads // weight.shape[1], dim=1)
    return weight


def _norm_gain(module: torch.nn.Module, offset: bool) -> Tensor | None:
    weight = getattr(getattr(module, "original_component", module), "weight", None)
    if weight is None:
        return None
    return weight.detach() + 1.0 if offset else weight.detach()


def _ov_weights(bridge: "TransformerBridge") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """W_E, W_V (ln1 gain folded in), W_O, W_U (final-norm gain folded in), query-head shaped."""
    offset = bool(getattr(bridge.cfg, "rmsnorm_uses_offset", False))
    value_weight = _query_head_weights(bridge, "W_V").detach()
    gains = [_norm_gain(block.ln1, offset) for block in bridge.blocks]
    if all(gain is not None for gain in gains):
        value_weight = value_weight * torch.stack([gain.to(value_weight.device) for gain in gains])[:, None, :, None]
    unembed = bridge.W_U.detach()
    final_gain = _norm_gain(bridge.ln_final, offset) if hasattr(bridge, "ln_final") else None
    if final_gain is not None:
        unembed = unembed * final_gain.to(unembed.device)[:, None]
    device = value_weight.device  # a model split over GPUs: W_U may sit on the last one
    return bridge.W_E.detach().to(device), value_weight, bridge.W_O.detach().to(device), unembed.to(device)


@dataclass
class _BatchScores:
    seeds: list[int]
    values: dict[str, Tensor]  # metric -> (layer, batch, head)


def _attention_pass(
    bridge: "TransformerBridge", batch: SequenceBatch, with_loss: bool, extra_hooks: Sequence = ()
) -> tuple[Tensor, Tensor | None]:
    """One forward over repeated sequences: attention metrics (metric, layer, batch, head), loss."""
    targets = _AttentionTargets.of(batch.tokens, batch.lengths)  # once per batch, read by every layer
    per_layer: list[Tensor] = []

    def score_pattern(pattern: Tensor, hook) -> None:
        # .to: on a model split over GPUs each layer's pattern sits on its layer's device
        scores = _mean_attention_at(pattern, targets.to(pattern.device))
        per_layer.append(scores.to(batch.tokens.device))

    hooks = list(extra_hooks) + [(f"blocks.{layer}.attn.hook_pattern", score_pattern)
                                 for layer in range(bridge.cfg.n_layers)]
    loss = None
    if with_loss:
        logits = bridge.run_with_hooks(batch.tokens, fwd_hooks=hooks)
        loss = next_token_loss(logits, batch.tokens.to(logits.device)).to(batch.tokens.device)
    else:
        run_until(bridge, batch.tokens, hooks, stop_hook=f"blocks.{bridge.cfg.n_layers - 1}.attn.hook_pattern")
    return torch.stack(per_layer, dim=1), loss


_MLP_SKIP_WORKS: dict[str, bool] = {}  # architecture -> whether the MLP-skipping hooks run


def _skip_mlp_hooks(n_layers: int) -> list:
    """Hooks that run each MLP on one position and add zeros instead of its output.

    With the embeddings fed to every layer, each MLP's output is thrown away by the next layer's
    input replacement, and the MLPs are most of a layer's cost; the shapes still broadcast.
    """

    def one_position(normalized, hook):
        return normalized[:, :1]

    def nothing(output, hook):
        return torch.zeros_like(output)

    hooks = [(f"blocks.{layer}.ln2.hook_out", one_position) for layer in range(n_layers)]
    return hooks + [(f"blocks.{layer}.hook_mlp_out", nothing) for layer in range(n_layers)]


@dataclass(frozen=True)
class _CopyingWeights:
    """The weights the copying score reads, on the sequences' device."""

    output_weight: Tensor  # (layer, head, d_head, d_model)
    output_bias: Tensor | None  # (layer, d_model); read by the reference variant only
    unembed: Tensor  # (d_model, vocab)
    unembed_bias: Tensor | None  # (vocab,)

    @classmethod
    def of(cls, bridge: "TransformerBridge", variant: str, device: torch.device) -> _CopyingWeights:
        with readable_weights(bridge):  # disk-offloaded weights are materialised only for these reads
            output_weight = bridge.W_O.detach().to(device)
            output_bias = _optional_parameter(bridge, "b_O") if variant == "reference" else None
            unembed, unembed_bias = bridge.W_U.detach().to(device), _optional_parameter(bridge, "b_U")
        return cls(output_weight, None if output_bias is None else output_bias.to(device),
                   unembed, None if unembed_bias is None else unembed_bias.to(device))


class _CopyingCollector:
    """Hooks that score a layer's copying once both its attention pattern and its head vectors arrived.

    Hook order inside attention differs by architecture (OPT fires hook_z before hook_pattern), so
    each layer waits for both of its pieces; after the last layer the forward stops.
    """

    def __init__(self, weights: _CopyingWeights, batch: SequenceBatch, n_layers: int, n_heads: int):
        self.weights, self.batch, self.n_layers, self.n_heads = weights, batch, n_layers, n_heads
        self.reset()

    def reset(self) -> None:
        """Forget every piece and score (before running the forward again)."""
        self.pending: dict[int, dict[str, Tensor]] = {layer: {} for layer in range(self.n_layers)}
        self.per_layer: dict[int, Tensor] = {}

    def hook(self, layer: int, name: str):
        """The forward hook that delivers piece ``name`` ("pattern" or "vectors") of ``layer``."""
        def hook_fn(activation, hook):
            pieces = self.pending[layer]
            pieces[name] = activation
            if not all(piece in pieces for piece in ("pattern", "vectors")):
                return None
            self.per_layer[layer] = self._score(layer, pieces.pop("pattern"), pieces.pop("vectors"))
            if len(self.per_layer) == self.n_layers:
                raise StopForward  # the rest of the model is not needed
            return None
        return hook_fn

    def _score(self, layer: int, pattern: Tensor, vectors: Tensor) -> Float[Tensor, "batch head"]:
        weights, batch = self.weights, self.batch
        device = batch.tokens.device
        vectors = vectors.to(device)  # this layer's device -> the weights' device
        if vectors.shape[2] != self.n_heads:  # hook_v of a GQA model: KV heads -> query heads
            vectors = repeat(vectors, "batch position kv_head d_head -> batch position (kv_head group) d_head",
                             group=self.n_heads // vectors.shape[2])
        return copying_scores(
            pattern.to(device), vectors, weights.output_weight[layer], weights.unembed, batch.tokens, batch.lengths,
            output_bias=None if weights.output_bias is None else weights.output_bias[layer],
            unembed_bias=weights.unembed_bias,
        )

    def stacked(self) -> Float[Tensor, "layer batch head"]:
        """Every layer's scores; an error if some layer's hooks never fired."""
        if len(self.per_layer) != self.n_layers:
            raise RuntimeError(f"copying hooks fired for layers {sorted(self.per_layer)} only; "
                               "the bridge's hook names changed?")
        return torch.stack([self.per_layer[layer] for layer in range(self.n_layers)])


def _embedding_feed_hooks(n_layers: int) -> list[tuple]:
    """Hooks that replace every layer's input by the embedding (the input of layer 0)."""
    state: dict[str, Tensor] = {}

    def keep_embedding(residual, hook):
        state["embedding"] = residual

    def feed_embedding(residual, hook):
        return state["embedding"]

    return [("blocks.0.hook_resid_pre", keep_embedding)] + [
        (f"blocks.{layer}.hook_resid_pre", feed_embedding) for layer in range(1, n_layers)
    ]


def _run_copying_forward(bridge: "TransformerBridge", tokens: Tensor, hooks: list[tuple],
                         collector: _CopyingCollector, skip_mlps: bool) -> None:
    """Run the hooked forward until the collector has every layer, skipping the MLPs where that works."""
    try:
        bridge.run_with_hooks(tokens, fwd_hooks=hooks + (_skip_mlp_hooks(collector.n_layers) if skip_mlps else []))
    except StopForward:
        pass
    except RuntimeError:
        if not skip_mlps:
            raise
        # This architecture reshapes around its MLP (OPT); run it in full from now on.
        _MLP_SKIP_WORKS[type(bridge.original_model).__name__] = False
        collector.reset()
        try:
            bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        except StopForward:
            pass


def _copying_pass(
    bridge: "TransformerBridge", batch: SequenceBatch, variant: str, source: str
) -> Float[Tensor, "layer batch head"]:
    """Copying scores of every head on unrepeated sequences, one forward for all layers.

    With ``source="embeddings"`` every layer's input is replaced by the embedding (the input of
    layer 0), so each layer sees what the reference code feeds it, in a single pass.
    """
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    weights = _CopyingWeights.of(bridge, variant, batch.tokens.device)
    collector = _CopyingCollector(weights, batch, n_layers, n_heads)
    # Olsson: the attention-weighted output z; Bansal's code: the value at the position itself.
    vector_hook = "hook_z" if variant == "olsson" else "hook_v"
    hooks = _embedding_feed_hooks(n_layers) if source == "embeddings" else []
    for layer in range(n_layers):
        hooks.append((f"blocks.{layer}.attn.hook_pattern", collector.hook(layer, "pattern")))
        hooks.append((f"blocks.{layer}.attn.{vector_hook}", collector.hook(layer, "vectors")))
    skip = source == "embeddings" and _MLP_SKIP_WORKS.get(type(bridge.original_model).__name__, True)
    _run_copying_forward(bridge, batch.tokens, hooks, collector, skip)
    return collector.stacked()


def _rows(values: Tensor, metric: str, seeds: Sequence[int]) -> pd.DataFrame:
    """(layer, batch, head) tensor -> long table."""
    n_layers, batch, n_heads = values.shape
    layer, row, head = torch.meshgrid(torch.arange(n_layers), torch.arange(batch), torch.arange(n_heads), indexing="ij")
    seed_of_row = torch.tensor(list(seeds))
    return pd.DataFrame({
        "seed": seed_of_row[row.flatten()].numpy(),
        "layer": layer.flatten().numpy(),
        "head": head.flatten().numpy(),
        "metric": metric,
        "value": values.detach().float().cpu().flatten().numpy(),
    })


def _loss_rows(loss: Tensor, batch: SequenceBatch) -> pd.DataFrame:
    lengths, periods = batch.lengths.cpu(), batch.periods.cpu()
    target = torch.arange(1, loss.shape[1] + 1)  # loss[:, p] predicts the token at p + 1
    valid = target[None, :] < lengths[:, None]
    row, column = valid.nonzero(as_tuple=True)
    return pd.DataFrame({
        "seed": torch.tensor(batch.seeds)[row].numpy(),
        "position": target[column].numpy(),
        "repeat": ((target[column] - 1) // periods[row] + 1).numpy(),
        "loss": loss.detach().float().cpu()[row, column].numpy(),
    })


def _validate_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    for metric in metrics:
        check_choice("metric", metric, METRICS)
    return metrics


def _kind_batches(bridge: "TransformerBridge", config: SequenceConfig, kinds: Sequence[str], max_batch_tokens: int,
                  seeds: Sequence[int]) -> list[tuple[str, SequenceBatch]]:
    """(kind, batch) for each kind of sequence in ``kinds``, every batch of one kind before the next."""
    context = model_context(bridge)  # a sequence longer than the model's context stops here, never scored
    return [(kind, batch) for kind in kinds
            for batch in make_batches(bridge.tokenizer, config, kind, max_batch_tokens, seeds, context)]


def _ov_copying_rows(bridge: "TransformerBridge", seed: int) -> pd.DataFrame:
    """The OV-copying score of every head (weights only), filed under ``seed``."""
    with readable_weights(bridge):  # the weights of disk-offloaded layers, for this read only
        weights = _ov_weights(bridge)
    scores = ov_copying_scores(*weights)
    return _rows(scores[:, None, :], "ov_copying", [seed])


@torch.no_grad()  # scores only read activations: a recorded graph would hold every layer's (GBs at 100 seeds)
def score_heads(
    bridge: "TransformerBridge",
    config: SequenceConfig = SequenceConfig(),
    metrics: Iterable[str] = METRICS,
    *,
    copying_variant: str = "olsson",
    copying_source: str = "embeddings",
    seeds: Sequence[int] | None = None,
    max_batch_tokens: int = 4096,
    progress: bool = False,
    loss: bool = False,
    extra_hooks: Sequence = (),
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Score every head of ``bridge`` on the sequences of ``config``.

    Returns a long table with columns ``seed, layer, head, metric, value`` (``ov_copying``
    depends on the weights alone: one row per head, under the first seed).  With
    ``loss=True`` also returns the per-token loss on the repeated sequences (columns ``seed,
    position, repeat, loss``), computed in the same forward passes.  ``extra_hooks`` join the
    repeated-sequence passes (an ablation, say).

    >>> from interp.models.loading import load_model                         # doctest: +SKIP
    >>> bridge, _ = load_model("smollm2-135m")                       # doctest: +SKIP
    >>> table = score_heads(bridge, SequenceConfig(num_seeds=2))     # doctest: +SKIP
    >>> table.query("metric == 'prefix_matching'").nlargest(1, "value")  # doctest: +SKIP
    """
    metrics = _validate_metrics(metrics)
    check_choice("copying variant", copying_variant, COPYING_VARIANTS)
    check_choice("copying source", copying_source, COPYING_SOURCES)
    device = bridge.cfg.device or "cpu"
    chosen = list(config.seeds() if seeds is None else seeds)
    tables, loss_tables = [], []
    wanted_attention = [metric for metric in ATTENTION_METRICS if metric in metrics]
    kinds = (["repeated"] if wanted_attention or loss else []) + (["unrepeated"] if "copying" in metrics else [])
    batches = _kind_batches(bridge, config, kinds, max_batch_tokens, chosen)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="scoring heads", unit="batch")
    for kind, batch in batches:
        batch = batch.to(device)
        if kind == "repeated":
            values, batch_loss = _attention_pass(bridge, batch, with_loss=loss, extra_hooks=extra_hooks)
            for metric in wanted_attention:
                tables.append(_rows(values[ATTENTION_METRICS.index(metric)], metric, batch.seeds))
            if batch_loss is not None:
                loss_tables.append(_loss_rows(batch_loss, batch))
        else:
            values = _copying_pass(bridge, batch, copying_variant, copying_source)
            tables.append(_rows(values, "copying", batch.seeds))
    if "ov_copying" in metrics:
        tables.append(_ov_copying_rows(bridge, chosen[0]))
    table = (pd.concat(tables, ignore_index=True) if tables
             else pd.DataFrame(columns=["seed", "layer", "head", "metric", "value"]))
    if loss:
        loss_table = pd.concat(loss_tables, ignore_index=True)
        return table, loss_table
    return table


def repeated_sequence_loss(bridge: "TransformerBridge", config: SequenceConfig = SequenceConfig(),
                           **kwargs) -> pd.DataFrame:
    """Per-token loss on the repeated sequences: columns ``seed, position, repeat, loss``.

    ``position`` is the predicted token's position (BOS = 0), ``repeat`` its repeat (1..4);
    an induction-capable model's loss drops sharply from repeat 1 to repeats 2..4.
    """
    _, loss_table = score_heads(bridge, config, metrics=(), loss=True, **kwargs)
    return loss_table
