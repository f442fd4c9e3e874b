"""Text in, tokens out: prompts for the viewer and for patching, and readable token labels.

Every prompt starts with the model's BOS token (or EOS where it has none), as the induction
sequences do, so a head's attention sink is at position 0 whatever the text.

>>> display_token(" Potter"), display_token("\\n")
('␣Potter', '↵')
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InterpError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = ["answer_token", "answer_tokens", "as_tokens", "display_token", "token_labels"]


def display_token(text: str) -> str:
    """A token's text with its leading space and newlines made visible (for axes and hovers)."""
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def _start_token(tokenizer) -> int:
    for candidate in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    raise InterpError("the tokenizer has neither a BOS nor an EOS token to start a prompt with")


def as_tokens(bridge: "TransformerBridge", prompt: "str | Sequence[str] | Tensor", prepend_bos: bool = True
              ) -> Int[Tensor, "batch pos"]:
    """Token ids (batch, pos) on the model's device for a text, a list of texts or given ids.

    Texts get the BOS token in front (``prepend_bos``); several texts must tokenise to the same
    length (patching compares them position by position).  Ids are used as they are.
    """
    device = bridge.cfg.device or "cpu"
    if isinstance(prompt, Tensor):
        tokens = prompt if prompt.dim() == 2 else prompt.unsqueeze(0)
        if tokens.dim() != 2 or tokens.shape[1] == 0 or tokens.dtype not in (torch.int64, torch.int32):
            raise InterpError("token ids must be an integer tensor (pos,) or (batch, pos), "
                              f"got {tuple(prompt.shape)} {prompt.dtype}")
        return tokens.long().to(device)
    texts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not texts or not all(isinstance(text, str) and text for text in texts):
        raise InterpError(f"a prompt must be a non-empty text, a list of them, or token ids; got {prompt!r}")
    start = [_start_token(bridge.tokenizer)] if prepend_bos else []
    rows = [start + bridge.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        raise InterpError(f"the texts tokenise to different lengths {lengths}; give texts of the same token length")
    return torch.tensor(rows, dtype=torch.long, device=device)


def token_labels(bridge: "TransformerBridge", tokens: Int[Tensor, " pos"]) -> list[str]:
    """Readable text of each token of one row."""
    return [display_token(bridge.tokenizer.decode([int(token)])) for token in tokens.tolist()]


def answer_token(bridge: "TransformerBridge", answer: "str | int", role: str = "answer") -> int:
    """The id of a one-token text such as ``" Potter"`` (or an id); ``role`` names it in errors."""
    if isinstance(answer, numbers.Integral) and not isinstance(answer, bool):
        if not 0 <= int(answer) < int(bridge.cfg.d_vocab):
            raise InterpError(f"{role} token id {answer} is outside the vocabulary 0..{bridge.cfg.d_vocab - 1}")
        return int(answer)
    if not isinstance(answer, str) or not answer:
        raise InterpError(f"the {role} must be a one-token text or a token id, got {answer!r}")
    ids = bridge.tokenizer(answer, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [display_token(bridge.tokenizer.decode([token])) for token in ids]
        raise InterpError(f"{role} {answer!r} is {len(ids)} tokens {pieces}; give a text that is one token "
                          "(often with its leading space) or a token id")
    return int(ids[0])


def answer_tokens(bridge: "TransformerBridge", answers: "str | int | Sequence[str | int]",
                  batch: int) -> Int[Tensor, " batch"]:
    """One answer id per prompt: a single answer is shared by every prompt of the batch."""
    chosen = [answers] if isinstance(answers, (str, numbers.Integral)) else list(answers)
    if len(chosen) == 1:
        chosen = chosen * batch
    if len(chosen) != batch:
        raise InterpError(f"{len(chosen)} answers for {batch} prompts; give one answer, or one per prompt")
    ids = [answer_token(bridge, answer) for answer in chosen]
    return torch.tensor(ids, dtype=torch.long, device=bridge.cfg.device or "cpu")
