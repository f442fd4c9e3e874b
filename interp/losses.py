"""Next-token loss: one definition for the repeated-sequence, text-window and ICL losses.

>>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens
>>> [round(value, 4) for value in next_token_loss(logits, torch.tensor([[0, 1, 2]]))[0].tolist()]  # log 4 each
[1.3863, 1.3863]
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["next_token_loss"]


def next_token_loss(
    logits: Float[Tensor, "batch position vocab"], tokens: Int[Tensor, "batch position"]
) -> Float[Tensor, "batch predicted"]:
    """Cross-entropy of each next token, ``loss[:, p]`` for the token at ``p + 1`` (float32 at least).

    Computed over the logits as they lie (rows contiguous in the vocabulary): slicing off the last
    position or moving the vocabulary axis first would copy the whole ``(batch, position, vocab)``
    tensor. The last position is scored against a dummy target and dropped.
    """
    targets = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return loss.view(tokens.shape)[:, :-1]
