"""Multiple-choice scoring by log-likelihood, as lm-eval-harness does it.

Each (prompt, choice) pair becomes one token sequence: context tokens + continuation tokens. The
score of a choice is the summed log-probability of its continuation tokens given the context.
``accuracy`` picks the choice with the highest sum; ``accuracy_norm`` divides each sum by the
continuation's length in characters first (lm-eval's ``acc_norm``). ``loss`` is the mean
negative log-likelihood per token of the correct continuation, averaged over items.

Sequences are right-padded into batches; with causal attention, padding after a sequence's
last token cannot change any of its log-probabilities, so no attention mask is needed.

**Shared context** (``share_context=True``, what evaluation, exact ablation and pruning use): the
choices of one prompt share its context, so a batch row holds one prompt: its context once, then,
for each choice, the continuation tokens that are *inputs* (all but the last). Every choice's first
token is read from the context's last position, so single-token choices cost nothing beyond the
context. Where a row holds several multi-token continuations, a block attention mask lets each
continuation see the context and itself only, and per-token position ids restart each continuation
at the context's length, so every log-probability equals that of the choice's own sequence (up to
float rounding; tested to 1e-5). ``share_context=False`` keeps one row per (prompt, choice).

>>> wilson_interval(8, 10)  # doctest: +ELLIPSIS
(0.49..., 0.94...)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.stats import wilson_interval  # re-exported: callers import it from here
from interp.tasks.schema import Prompt

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "Batch",
    "EncodedPrompts",
    "SHARED_CONTEXT_MASK_FILL",
    "SequenceScores",
    "context_token_ids",
    "encode_prompts",
    "evaluate_prompts",
    "iterate_batches",
    "make_batch",
    "multiple_choice_metrics",
    "score_sequences",
    "target_logprobs",
    "wilson_interval",
]


@dataclass(frozen=True)
class EncodedPrompts:
    """Every (prompt, choice) pair as token ids, with where its continuation starts."""

    tokens: tuple[tuple[int, ...], ...]  # one entry per sequence
    context_lengths: tuple[int, ...]  # tokens before the continuation, per sequence
    item_of_sequence: Int[Tensor, " sequence"]  # which prompt each sequence belongs to
    choice_of_sequence: Int[Tensor, " sequence"]
    answer_index: Int[Tensor, " item"]  # the correct choice of each prompt
    gold_sequence: Int[Tensor, " item"]  # the sequence holding each prompt's correct choice
    continuation_chars: Float[Tensor, " sequence"]  # for length-normalised accuracy
    n_choices: Int[Tensor, " item"]

    @property
    def n_items(self) -> int:
        return len(self.answer_index)

    @property
    def n_sequences(self) -> int:
        return len(self.tokens)


SHARED_CONTEXT_MASK_FILL = torch.finfo(torch.float32).min  # additive mask value where a packed token may not look


@dataclass(frozen=True)
class Batch:
    """Right-padded token ids for some sequences, and the (row, position, token) of every target.

    One row per sequence, or (shared context) one row per prompt holding several sequences; then
    ``target_slots`` says which entry of ``sequence_ids`` each target belongs to, and a row holding
    more than one multi-token continuation carries ``position_ids`` and an additive ``attention_mask``
    that every forward over ``tokens`` must receive (:meth:`forward_kwargs`).
    """

    sequence_ids: Int[Tensor, " sequence"]  # the sequences scored in this batch
    tokens: Int[Tensor, "batch pos"]
    valid: Float[Tensor, "batch pos"]  # 1 on real tokens, 0 on padding
    target_rows: Int[Tensor, " target"]
    target_positions: Int[Tensor, " target"]  # the position whose logits predict the target
    target_tokens: Int[Tensor, " target"]
    target_slots: Int[Tensor, " target"] | None = None  # None: one sequence per row, the slot is the row
    position_ids: Int[Tensor, "batch pos"] | None = None  # packed rows: each token's position in its own sequence
    attention_mask: Float[Tensor, "batch 1 pos pos"] | None = None  # packed rows: 0 where a token may look

    @property
    def slots(self) -> Int[Tensor, " target"]:
        """Index into ``sequence_ids`` of every target's sequence."""
        return self.target_rows if self.target_slots is None else self.target_slots

    def forward_kwargs(self) -> dict[str, Tensor]:
        """Keyword arguments every forward over ``tokens`` needs (empty unless rows are packed)."""
        if self.attention_mask is None:
            return {}
        return {"attention_mask": self.attention_mask, "position_ids": self.position_ids}


@dataclass(frozen=True)
class SequenceScores:
    """Summed continuation log-probability and continuation length of every sequence."""

    logprob_sum: Float[Tensor, " sequence"]
    n_tokens: Float[Tensor, " sequence"]


def context_token_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    """A prompt's context tokens: the tokenizer's BOS (else EOS) first when ``prompt.prepend_bos``, then the text.

    The text is tokenised without special tokens, so the BOS policy is the prompt's alone and never
    the tokenizer's (a bridge's tokenizer adds one, a plain Hugging Face tokenizer may not).
    """
    ids = list(tokenizer(prompt.context, add_special_tokens=False)["input_ids"])
    if not prompt.prepend_bos:
        return ids
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise InterpError("the tokenizer has neither a BOS nor an EOS token to start prompts with; "
                          "use --no-prepend-bos")
    return [int(bos)] + ids


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt], max_length: int | None = None,
                   task_name: str = "task") -> EncodedPrompts:
    """Tokenise every (prompt, choice); say which item does not fit ``max_length`` tokens."""
    tokens, context_lengths, items, choices, chars, gold, answers, counts = [], [], [], [], [], [], [], []
    for item_number, prompt in enumerate(prompts):
        context = context_token_ids(tokenizer, prompt)
        for choice_number, continuation in enumerate(prompt.continuations):
            continuation_ids = list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
            if not continuation_ids:
                raise InterpError(f"{task_name}: item {prompt.item_index}: choice {continuation!r} "
                                  "encodes to no tokens")
            sequence = context + continuation_ids
            if max_length is not None and len(sequence) > max_length:
                advice = (f"use fewer shots (this prompt has {len(prompt.demo_indices)} demonstrations)"
                          if prompt.demo_indices
                          else "the item alone is longer than the context: shorten it or leave it out of the task")
                raise InterpError(f"{task_name}: item {prompt.item_index} does not fit the model's context: "
                                  f"{len(sequence)} tokens, limit {max_length}; {advice}")
            if choice_number == prompt.answer_index:
                gold.append(len(tokens))
            tokens.append(tuple(sequence))
            context_lengths.append(len(context))
            items.append(item_number)
            choices.append(choice_number)
            chars.append(len(continuation))
        answers.append(prompt.answer_index)
        counts.append(len(prompt.continuations))
    return EncodedPrompts(
        tokens=tuple(tokens),
        context_lengths=tuple(context_lengths),
        item_of_sequence=torch.tensor(items, dtype=torch.long),
        choice_of_sequence=torch.tensor(choices, dtype=torch.long),
        answer_index=torch.tensor(answers, dtype=torch.long),
        gold_sequence=torch.tensor(gold, dtype=torch.long),
        continuation_chars=torch.tensor(chars, dtype=torch.float64),
        n_choices=torch.tensor(counts, dtype=torch.long),
    )


def make_batch(encoded: EncodedPrompts, sequence_ids: Sequence[int], device: str | torch.device,
               pad_id: int = 0, share_context: bool = False) -> Batch:
    """Right-pad the given sequences into one :class:`Batch` on ``device``; shared context: one row per prompt."""
    if share_context:
        return _shared_context_batch(encoded, sequence_ids, device, pad_id)
    lengths = [len(encoded.tokens[index]) for index in sequence_ids]
    width = max(lengths)
    tokens = torch.full((len(sequence_ids), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(sequence_ids), width))
    rows, positions, targets = [], [], []
    for row, index in enumerate(sequence_ids):
        sequence = encoded.tokens[index]
        tokens[row, : len(sequence)] = torch.tensor(sequence)
        valid[row, : len(sequence)] = 1.0
        start = encoded.context_lengths[index]
        rows.extend([row] * (len(sequence) - start))
        positions.extend(range(start - 1, len(sequence) - 1))
        targets.extend(sequence[start:])
    as_long = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return Batch(as_long(list(sequence_ids)), tokens.to(device), valid.to(device), as_long(rows), as_long(positions),
                 as_long(targets))


def _rows_of_prompts(encoded: EncodedPrompts, sequence_ids: Sequence[int]) -> list[list[int]]:
    """The sequences grouped by prompt, prompts in order of first appearance."""
    rows: dict[int, list[int]] = {}
    items = encoded.item_of_sequence.tolist()
    for index in sequence_ids:
        rows.setdefault(items[index], []).append(int(index))
    return list(rows.values())


def _packed_row(encoded: EncodedPrompts, sequences: Sequence[int]) -> tuple[list[int], list[int], list[int], list]:
    """One prompt's row: (tokens, position ids, segment per token (-1: context), targets (slot, position, token))."""
    first = sequences[0]
    context_length = encoded.context_lengths[first]
    tokens = list(encoded.tokens[first][:context_length])
    positions, segments, targets = list(range(context_length)), [-1] * context_length, []
    for slot, index in enumerate(sequences):
        continuation = encoded.tokens[index][context_length:]
        start = len(tokens)
        # Inputs are every continuation token but the last; the first target is read at the context's end.
        reads = [context_length - 1] + list(range(start, start + len(continuation) - 1))
        targets.extend(zip([slot] * len(continuation), reads, continuation, strict=True))
        tokens.extend(continuation[:-1])
        positions.extend(range(context_length, context_length + len(continuation) - 1))
        segments.extend([slot] * (len(continuation) - 1))
    return tokens, positions, segments, targets


def _shared_context_batch(encoded: EncodedPrompts, sequence_ids: Sequence[int], device: str | torch.device,
                          pad_id: int) -> Batch:
    """One row per prompt: its context once, then each chosen continuation's input tokens."""
    rows = _rows_of_prompts(encoded, sequence_ids)
    packed = [_packed_row(encoded, sequences) for sequences in rows]
    width = max(len(tokens) for tokens, *_ in packed)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(rows), width))
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.full((len(rows), width), -2, dtype=torch.long)  # -2: padding
    order, target_rows, target_slots, target_positions, target_tokens = [], [], [], [], []
    for row, (sequences,
              (row_tokens, row_positions, row_segments, targets)) in enumerate(zip(rows, packed, strict=True)):
        length = len(row_tokens)
        tokens[row, :length] = torch.tensor(row_tokens, dtype=torch.long)
        valid[row, :length] = 1.0
        positions[row, :length] = torch.tensor(row_positions, dtype=torch.long)
        segments[row, :length] = torch.tensor(row_segments, dtype=torch.long)
        for slot, read, token in targets:
            target_rows.append(row)
            target_slots.append(len(order) + slot)
            target_positions.append(read)
            target_tokens.append(token)
        order.extend(sequences)
    as_long = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    # A mask is needed only where a row holds two continuations that would otherwise see each other.
    needs_mask = any(len({segment for segment in row_segments if segment >= 0}) > 1 for _, _, row_segments, _ in packed)
    mask = position_ids = None
    if needs_mask:
        mask = _block_mask(segments).to(device)
        position_ids = positions.to(device)
    return Batch(as_long(order), tokens.to(device), valid.to(device), as_long(target_rows), as_long(target_positions),
                 as_long(target_tokens), as_long(target_slots), position_ids, mask)


def _block_mask(segments: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch 1 pos pos"]:
    """Additive mask: causal, and a continuation token sees the context and its own continuation only.

    Padding (segment -2) sees everything before it, so no query row is fully masked.
    """
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()  # (query, key)
    query = segments.unsqueeze(2)  # (batch, query, 1)
    key = segments.unsqueeze(1)  # (batch, 1, key)
    allowed = causal & ((key == -1) | (key == query) | (query == -2))
    return torch.where(allowed, 0.0, SHARED_CONTEXT_MASK_FILL).unsqueeze(1)


def count_batches(encoded: EncodedPrompts, batch_size: int, share_context: bool = False) -> int:
    """How many batches :func:`iterate_batches` yields over every sequence: of prompts when they share the context.

    For progress bars and time estimates, so that they count what the loop does.
    """
    rows = encoded.n_items if share_context else encoded.n_sequences
    return math.ceil(rows / batch_size)


def iterate_batches(encoded: EncodedPrompts, sequence_ids: Sequence[int], batch_size: int,
                    device: str | torch.device, pad_id: int = 0, share_context: bool = False) -> Iterator[Batch]:
    """Batches of ``batch_size`` rows in the given order: sequences, or (shared context) prompts."""
    if batch_size < 1:
        raise InterpError(f"batch_size must be positive, got {batch_size}")
    if share_context:
        rows = _rows_of_prompts(encoded, sequence_ids)
        for start in range(0, len(rows), batch_size):
            chunk = [index for row in rows[start : start + batch_size] for index in row]
            yield _shared_context_batch(encoded, chunk, device, pad_id)
        return
    for start in range(0, len(sequence_ids), batch_size):
        yield make_batch(encoded, list(sequence_ids[start : start + batch_size]), device, pad_id)


def target_logprobs(bridge: "TransformerBridge", final_residual: Float[Tensor, "batch pos d_model"],
                    batch: Batch) -> Float[Tensor, " target"]:
    """Log-probability of every target token, unembedding only the positions that predict one (one copy)."""
    return target_logprob_readout(bridge, batch)(final_residual.unsqueeze(0))[0]


def target_logprob_readout(bridge: "TransformerBridge", batch: Batch) -> Callable[[Tensor], Tensor]:
    """A :class:`interp.hooks.ResumedRun` readout: (copies, batch, pos, d_model) -> (copies, target) log-probs."""

    def readout(final: Float[Tensor, "copies batch pos d_model"]) -> Float[Tensor, "copies target"]:
        picked = final[:, batch.target_rows, batch.target_positions]  # (copies, target, d_model)
        return logits_to_target_logprobs(bridge.unembed(bridge.ln_final(picked)), batch)

    return readout


def logits_to_target_logprobs(logits: Float[Tensor, "*copies target vocab"], batch: Batch) -> Float[Tensor,
                                                                                                    "*copies target"]:
    """Log-probability of each target token from the logits at the positions that predict it."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    index = batch.target_tokens.expand(*log_probs.shape[:-1]).unsqueeze(-1)
    return log_probs.gather(-1, index).squeeze(-1)


def sum_by_row(values: Float[Tensor, "*copies target"], batch: Batch) -> Float[Tensor, "*copies sequence"]:
    """Sum per-target values into their sequence (the order of ``batch.sequence_ids``)."""
    shape = (*values.shape[:-1], len(batch.sequence_ids))
    return torch.zeros(shape, dtype=values.dtype, device=values.device).index_add_(-1, batch.slots, values)


def pad_id_of(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def score_sequences(bridge: "TransformerBridge", encoded: EncodedPrompts, batch_size: int = 8,
                    fwd_hooks: Sequence[tuple[str, Any]] = (), sequence_ids: Sequence[int] | None = None,
                    share_context: bool = True) -> SequenceScores:
    """Summed continuation log-probability of each sequence: one ordinary forward per batch of ``batch_size`` rows."""
    device = bridge.cfg.device
    ids = list(range(encoded.n_sequences)) if sequence_ids is None else list(sequence_ids)
    logprob_sum = torch.zeros(encoded.n_sequences, dtype=torch.float64)
    n_tokens = torch.zeros(encoded.n_sequences, dtype=torch.float64)
    with torch.no_grad():
        for batch in iterate_batches(encoded, ids, batch_size, device, pad_id_of(bridge.tokenizer), share_context):
            logits = bridge.run_with_hooks(batch.tokens, fwd_hooks=list(fwd_hooks), return_type="logits",
                                           **batch.forward_kwargs())
            values = logits_to_target_logprobs(logits[batch.target_rows, batch.target_positions], batch)
            logprob_sum[batch.sequence_ids.cpu()] = sum_by_row(values, batch).double().cpu()
            n_tokens[batch.sequence_ids.cpu()] = sum_by_row(torch.ones_like(values), batch).double().cpu()
    return SequenceScores(logprob_sum, n_tokens)


def multiple_choice_metrics(logprob_sum: Float[Tensor, "*copies sequence"], n_tokens: Float[Tensor, " sequence"],
                            encoded: EncodedPrompts) -> dict[str, Tensor]:
    """Per-item correctness (raw and length-normalised) and gold loss, for any leading copies axis.

    Returns ``correct``, ``correct_norm`` and ``gold_loss``, each shaped ``(*copies, item)``.
    """
    copies = logprob_sum.shape[:-1]
    width = int(encoded.n_choices.max())
    grid = torch.full((*copies, encoded.n_items, width), -math.inf, dtype=torch.float64)
    grid_norm = grid.clone()
    grid[..., encoded.item_of_sequence, encoded.choice_of_sequence] = logprob_sum.double().cpu()
    grid_norm[..., encoded.item_of_sequence, encoded.choice_of_sequence] = (
        logprob_sum.double().cpu() / encoded.continuation_chars
    )
    gold = encoded.gold_sequence
    return {
        # ties count as wrong unless the answer is the first maximum, as argmax breaks them
        "correct": (grid.argmax(-1) == encoded.answer_index).double(),
        "correct_norm": (grid_norm.argmax(-1) == encoded.answer_index).double(),
        "gold_loss": -logprob_sum.double().cpu()[..., gold] / n_tokens.double().cpu()[gold],
    }


def summarise(metrics: dict[str, Tensor]) -> dict[str, float]:
    """Accuracy with its Wilson interval, normalised accuracy and mean gold loss (one copy)."""
    n_items = int(metrics["correct"].shape[-1])
    correct = float(metrics["correct"].sum())
    low, high = wilson_interval(correct, n_items)
    return {
        "accuracy": correct / n_items,
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        "accuracy_interval_method": "wilson",  # scipy binomtest(...).proportion_ci(method="wilson")
        "accuracy_norm": float(metrics["correct_norm"].mean()),
        "loss": float(metrics["gold_loss"].mean()),
        "n_items": n_items,
    }


def evaluate_prompts(bridge: "TransformerBridge", prompts: Sequence[Prompt], batch_size: int = 8,
                     task_name: str = "task") -> dict[str, float]:
    """Accuracy (with a 95% CI), length-normalised accuracy and gold loss of ``prompts``."""
    encoded = encode_prompts(bridge.tokenizer, prompts, bridge.cfg.n_ctx, task_name)
    scores = score_sequences(bridge, encoded, batch_size)
    return summarise(multiple_choice_metrics(scores.logprob_sum, scores.n_tokens, encoded))

