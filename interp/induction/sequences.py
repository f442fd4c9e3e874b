"""Seeded synthetic sequences for the induction scores: repeated and unrepeated random tokens.

Two protocols (the chosen one is recorded in every result's metadata):

- ``bansal`` (default; Bansal et al. 2023): seed ``s`` in ``0..num_seeds-1`` gives a length
  ``L = 25 + 2s``; prefix matching uses BOS + the same ``L`` random tokens repeated 4 times
  (``4L + 1`` tokens), copying uses BOS + ``4L`` distinct random tokens.
- ``olsson`` (Olsson et al. 2022): ``L = 25`` for every seed, 4 repeats; copying uses BOS + 25
  distinct tokens, as in their paper.

Random tokens are drawn without replacement from a *pool*: the vocabulary minus special tokens,
minus the most and the least frequent ``exclude_ratio`` of tokens by frequency rank.  The rank is
the BPE merge order when the tokenizer has merges (Bansal's proxy for frequency: early merges
are frequent pairs); for a Unigram (SentencePiece) tokenizer it is the piece's log-probability;
otherwise, as a documented fallback, the token id (most tokenizers number tokens roughly by
frequency).  Sequences are drawn with a ``torch.Generator`` seeded by ``s`` on the CPU, so they
are identical on every machine and device (the paper's code seeded torch but drew with numpy).

A model reads at most its context (``max_length``, set by the jobs from
:func:`interp.models.context.model_context`).  Seeds whose sequences would be longer are either
*capped* (``fit="cap"``: ``L`` shortened to the longest that fits, the seed still drawing its own
tokens) or *dropped* (``fit="drop"``); a protocol whose shortest sequence does not fit stops with
an :class:`~interp.errors.InterpError`.  Which seeds were changed is in :meth:`SequenceConfig.fit_report`.

>>> from interp.induction.sequences import SequenceConfig
>>> config = SequenceConfig(protocol="bansal", num_seeds=3)
>>> [config.period(seed) for seed in config.seeds()]
[25, 27, 29]
>>> capped = SequenceConfig(protocol="bansal", num_seeds=6, max_length=128)
>>> [capped.period(seed) for seed in capped.seeds()], capped.fit_report()["capped_seeds"]
([25, 27, 29, 31, 31, 31], [4, 5])
>>> SequenceConfig(protocol="bansal", num_seeds=6, max_length=128, fit="drop").seeds()
[0, 1, 2, 3]
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InterpError, check_choice
from interp.models.context import ContextLimit, check_fits

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "FITS",
    "PROTOCOLS",
    "SequenceBatch",
    "SequenceConfig",
    "frequency_ranked_tokens",
    "make_batches",
    "token_pool",
]

PROTOCOLS = ("bansal", "olsson")
FITS = ("cap", "drop")


@dataclass(frozen=True)
class SequenceConfig:
    """How the random sequences are drawn."""

    protocol: str = "bansal"  # the paper's protocol; "olsson" for fixed length 25
    num_seeds: int = 100  # Bansal et al. use seeds 0..99 (lengths 25..223)
    exclude_ratio: float = 0.04  # Bansal et al. drop the 4% most and 4% least frequent tokens
    repeats: int = 4  # both papers repeat the random block 4 times
    base_length: int = 25  # both papers start at 25 random tokens
    first_seed: int = 0  # shift to draw fresh sequences (e.g. a held-out set)
    max_length: int | None = None  # the model's context in tokens; None: no limit (jobs set it from the model)
    fit: str = "cap"  # seeds too long for max_length: "cap" keeps the seed count, "drop" keeps each seed's L

    def __post_init__(self) -> None:
        check_choice("protocol", self.protocol, PROTOCOLS)
        if not isinstance(self.num_seeds, int) or self.num_seeds < 1:
            raise InterpError(f"num_seeds must be a positive integer, got {self.num_seeds!r}")
        if not 0 <= self.exclude_ratio < 0.5:
            raise InterpError(f"exclude_ratio must be in [0, 0.5), got {self.exclude_ratio!r}")
        if self.repeats < 2:
            raise InterpError(f"repeats must be at least 2 (prefix matching needs a repeat), got {self.repeats!r}")
        if self.base_length < 2 or self.first_seed < 0:
            raise InterpError(f"base_length must be >= 2 and first_seed >= 0, "
                              f"got {self.base_length}, {self.first_seed}")
        check_choice("context fit", self.fit, FITS)
        if self.max_length is not None:
            shortest = self.sequence_length(self.base_length)
            if shortest > self.max_length:
                raise InterpError(
                    f"the {self.protocol} protocol's shortest sequence has {shortest} tokens (BOS + {self.repeats} x "
                    f"{self.base_length}) but the model reads at most {self.max_length}; induction scores cannot be "
                    "measured on this model with this protocol")
            if not self.seeds():
                raise InterpError(f"no seed from {self.first_seed} fits the model's {self.max_length} tokens; "
                                  "use fit='cap' or a smaller first_seed")

    def sequence_length(self, period: int) -> int:
        """Tokens in a repeated sequence of period ``period``: BOS + ``repeats`` blocks."""
        return 1 + self.repeats * period

    def _protocol_period(self, seed: int) -> int:
        return self.base_length + 2 * seed if self.protocol == "bansal" else self.base_length

    def _fits(self, seed: int) -> bool:
        return self.max_length is None or self.sequence_length(self._protocol_period(seed)) <= self.max_length

    def seeds(self) -> list[int]:
        requested = range(self.first_seed, self.first_seed + self.num_seeds)
        return [seed for seed in requested if self.fit == "cap" or self._fits(seed)]

    def period(self, seed: int) -> int:
        """Number of distinct random tokens ``L`` in the repeated block for ``seed`` (capped to the context)."""
        if self._fits(seed):
            return self._protocol_period(seed)
        return (self.max_length - 1) // self.repeats

    def fit_report(self) -> dict:
        """What the context changed: for the metadata and the console."""
        requested = list(range(self.first_seed, self.first_seed + self.num_seeds))
        too_long = [seed for seed in requested if not self._fits(seed)]
        longest = max(self.sequence_length(self.period(seed)) for seed in self.seeds())
        return {"max_length": self.max_length, "fit": self.fit, "capped_seeds": too_long if self.fit == "cap" else [],
                "dropped_seeds": too_long if self.fit == "drop" else [], "longest_sequence": longest}

    def fit_note(self) -> str | None:
        """One console line when the context changed the protocol, else None."""
        report = self.fit_report()
        if report["capped_seeds"]:
            seeds = report["capped_seeds"]
            return (f"context {self.max_length} tokens: seeds {seeds[0]}..{seeds[-1]} "
                    f"({len(seeds)} of {self.num_seeds}) "
                    f"capped at L = {self.period(seeds[0])} ({report['longest_sequence']} tokens) instead of "
                    f"L = {self._protocol_period(seeds[0])}..{self._protocol_period(seeds[-1])}")
        if report["dropped_seeds"]:
            seeds = report["dropped_seeds"]
            return (f"context {self.max_length} tokens: seeds {seeds[0]}..{seeds[-1]} left out "
                    "(longer than the context); "
                    f"{len(self.seeds())} of {self.num_seeds} seeds scored")
        return None

    def copying_length(self, seed: int) -> int:
        """Number of distinct random tokens in the unrepeated copying sequence."""
        return self.repeats * self.period(seed) if self.protocol == "bansal" else self.period(seed)

    def to_dict(self) -> dict:
        lengths = f"L = {self.base_length} + 2 * seed" if self.protocol == "bansal" else f"L = {self.base_length}"
        if self.max_length is not None and self.protocol == "bansal" and self.fit == "cap":
            lengths = f"L = min({self.base_length} + 2 * seed, {(self.max_length - 1) // self.repeats})"
        return {**self.__dict__, "lengths": lengths}


# Ranking a 262k-token vocabulary (Gemma 3) takes seconds: do it once per tokenizer object.
_RANKINGS: "weakref.WeakKeyDictionary[PreTrainedTokenizerBase, tuple[list[int], str]]" = weakref.WeakKeyDictionary()


def frequency_ranked_tokens(tokenizer: "PreTrainedTokenizerBase") -> tuple[list[int], str]:
    """Non-special token ids, most frequent first, and the name of the ranking used."""
    try:
        return _RANKINGS[tokenizer]
    except (KeyError, TypeError):
        pass
    ranking = _rank_tokens(tokenizer)
    try:
        _RANKINGS[tokenizer] = ranking
    except TypeError:  # not weak-referenceable: recompute next time
        pass
    return ranking


def _rank_tokens(tokenizer: "PreTrainedTokenizerBase") -> tuple[list[int], str]:
    vocabulary: dict[str, int] = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    rank: dict[int, float] = {}
    method = "token id (fallback: no merges or scores in the tokenizer)"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    model = json.loads(backend.to_str())["model"] if backend is not None else {}
    if model.get("type") == "BPE" and model.get("merges"):
        method = "BPE merge order"
        # Tokens that no merge produces (the base alphabet) are the most frequent of all.
        for index, merge in enumerate(model["merges"]):
            left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
            token_id = vocabulary.get(left + right)
            if token_id is not None and token_id not in rank:
                rank[token_id] = index
        base = -1.0 - len(vocabulary)
        for token_id in vocabulary.values():
            rank.setdefault(token_id, base + token_id)
    elif model.get("type") == "Unigram" and model.get("vocab"):
        method = "Unigram log-probability"
        for piece, score in model["vocab"]:
            if piece in vocabulary:
                rank[vocabulary[piece]] = -score
    ids = sorted((token_id for token_id in vocabulary.values() if token_id not in special),
                 key=lambda token_id: (rank.get(token_id, token_id), token_id))
    return ids, method


def token_pool(tokenizer: "PreTrainedTokenizerBase", exclude_ratio: float = 0.04) -> tuple[Int[Tensor, " token"], str]:
    """Token ids random sequences may use: the middle of the frequency ranking, no specials."""
    ranked, method = frequency_ranked_tokens(tokenizer)
    cut = int(len(ranked) * exclude_ratio)
    pool = ranked[cut: len(ranked) - cut]
    return torch.tensor(pool, dtype=torch.long), method


def _bos(tokenizer: "PreTrainedTokenizerBase") -> int:
    for candidate in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    raise InterpError("the tokenizer has neither a BOS nor an EOS token to start sequences with")


def _distinct_tokens(pool: Tensor, count: int, seed: int) -> Tensor:
    if count > len(pool):
        raise InterpError(f"seed {seed} needs {count} distinct tokens but the token pool has only {len(pool)}; "
                          "use fewer seeds, the olsson protocol, or a smaller exclude_ratio")
    generator = torch.Generator().manual_seed(seed)
    return pool[torch.randperm(len(pool), generator=generator)[:count]]


@dataclass
class SequenceBatch:
    """Right-padded sequences of several seeds, run through the model together.

    Right padding is exact for causal models: no real position attends to a pad.
    """

    tokens: Int[Tensor, "batch position"]
    lengths: Int[Tensor, " batch"]  # real tokens per row, BOS included
    periods: Int[Tensor, " batch"]  # L of each row
    seeds: list[int] = field(default_factory=list)

    def to(self, device: "str | torch.device") -> "SequenceBatch":
        return SequenceBatch(self.tokens.to(device), self.lengths.to(device), self.periods.to(device), self.seeds)


def _pad(rows: Sequence[Tensor], pad_id: int) -> Tensor:
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True, padding_value=pad_id)


def make_batches(
    tokenizer: "PreTrainedTokenizerBase",
    config: SequenceConfig,
    kind: str,
    max_batch_tokens: int = 4096,
    seeds: Sequence[int] | None = None,
    context: "ContextLimit | None" = None,
) -> list[SequenceBatch]:
    """Batches of ``kind`` = ``"repeated"`` (prefix matching) or ``"unrepeated"`` (copying).

    Seeds are grouped in order (lengths grow with the seed) so that padding stays small, with at
    most ``max_batch_tokens`` padded tokens per batch (one long sequence may exceed it alone).
    A sequence longer than ``context`` (the model's) stops with an :class:`InterpError`.
    """
    check_choice("sequence kind", kind, ("repeated", "unrepeated"))
    pool, _ = token_pool(tokenizer, config.exclude_ratio)
    bos = _bos(tokenizer)
    rows, periods = [], []
    chosen = list(config.seeds() if seeds is None else seeds)
    for seed in chosen:
        period = config.period(seed)
        if kind == "repeated":
            block = _distinct_tokens(pool, period, seed)
            body = block.repeat(config.repeats)
        else:
            body = _distinct_tokens(pool, config.copying_length(seed), seed)
        rows.append(torch.cat([torch.tensor([bos]), body]))
        periods.append(period)
        if context is not None:
            check_fits(len(rows[-1]), context, f"{config.protocol} seed {seed} ({kind}, L = {period})",
                       "pass SequenceConfig(max_length=...) to cap or drop the seeds that do not fit, "
                       "or use the olsson protocol")
    batches, start = [], 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows) and (stop + 1 - start) * len(rows[stop]) <= max_batch_tokens:
            stop += 1
        batch_rows = rows[start:stop]
        batches.append(
            SequenceBatch(
                tokens=_pad(batch_rows, pad_id=bos),
                lengths=torch.tensor([len(row) for row in batch_rows]),
                periods=torch.tensor(periods[start:stop]),
                seeds=chosen[start:stop],
            )
        )
        start = stop
    return batches
