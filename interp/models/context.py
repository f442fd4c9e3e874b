"""How many tokens a model can read, and the one error for an input that does not fit.

A model's context is the first length field its Hugging Face config states
(:data:`CONTEXT_FIELDS`, in TransformerLens's order); a model that states none (ALiBi models
such as BLOOM) gets its tokenizer's ``model_max_length``, unless that too is transformers'
"no limit" sentinel (``int(1e30)``), in which case TransformerLens's own ``n_ctx`` stands and
the source says so.  Every job that feeds a model tokens checks against this number
(see ``docs/methods.md``, "Context guard").

>>> from types import SimpleNamespace
>>> context_limit(SimpleNamespace(max_position_embeddings=128), SimpleNamespace(model_max_length=int(1e30)))
ContextLimit(tokens=128, source='config.max_position_embeddings')
>>> context_limit(SimpleNamespace(), SimpleNamespace(model_max_length=64))
ContextLimit(tokens=64, source='tokenizer.model_max_length')
>>> check_fits(130, ContextLimit(128, "config.n_positions"), "seed 3", "use olsson")
Traceback (most recent call last):
...
interp.errors.InterpError: seed 3 needs 130 tokens but the model reads at most 128 (config.n_positions); use olsson
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp.errors import InterpError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = ["CONTEXT_FIELDS", "ContextLimit", "check_fits", "context_limit", "model_context"]

# TransformerLens's order (model_bridge/sources/_hf_format.py); "max_length" is left out because older
# transformers configs carry it as a generation default (20), not as the model's context.
CONTEXT_FIELDS = (
    "n_positions",
    "max_position_embeddings",
    "max_context_length",
    "seq_length",
    "max_seq_len",
    "max_sequence_length",
)
_NO_LIMIT = 10**9  # transformers' VERY_LARGE_INTEGER (1e30) and friends: a tokenizer that states no limit


@dataclass(frozen=True)
class ContextLimit:
    """The most tokens a model reads in one sequence, and where that number came from."""

    tokens: int | None  # None: neither the config nor the tokenizer states a limit
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "source": self.source}


def context_limit(config: Any, tokenizer: Any = None) -> ContextLimit:
    """The context a model's config states, else its tokenizer's ``model_max_length``, else none."""
    for name in CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return ContextLimit(value, f"config.{name}")
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _NO_LIMIT:
        return ContextLimit(limit, "tokenizer.model_max_length")
    return ContextLimit(None, "none stated")


def model_context(bridge: "TransformerBridge") -> ContextLimit:
    """The context of a loaded model: :func:`context_limit`, else TransformerLens's ``n_ctx``."""
    original = getattr(bridge, "original_model", None)
    limit = context_limit(getattr(original, "config", None), getattr(bridge, "tokenizer", None))
    if limit.tokens is None:
        return ContextLimit(int(bridge.cfg.n_ctx), "TransformerLens n_ctx (the model and its tokenizer state none)")
    return limit


def check_fits(length: int, limit: ContextLimit, what: str, advice: str) -> None:
    """Raise a one-line :class:`InterpError` when ``length`` tokens exceed ``limit``."""
    if limit.tokens is not None and length > limit.tokens:
        raise InterpError(
            f"{what} needs {length} tokens but the model reads at most {limit.tokens} ({limit.source}); {advice}"
        )
