"""The notebook surface: load a model, score its heads, patch and measure composition, in a line each.

Everything returns a DataFrame (tidy: one row per head, per patch or per pair) or a plotly
figure, in memory; nothing needs a results folder.  The batch jobs (``interp induction`` ...)
remain the way to produce saved, resumable results.

>>> from interp import explore                                                      # doctest: +SKIP
>>> bridge = explore.load("toy-attn-2l")                                            # doctest: +SKIP
>>> explore.score(bridge).query("metric == 'prefix_matching'").nlargest(1, "mean")  # doctest: +SKIP
>>> explore.view_head(bridge, "the cat sat. the cat sat.", layer=1, head=2).show()   # doctest: +SKIP
>>> clean, corrupted, answer = explore.repeated_name_prompts(bridge, "Moses met Aaron, and Moses")  # doctest: +SKIP
>>> table = explore.patch(bridge, clean, corrupted, answer=answer)                   # doctest: +SKIP
>>> explore.patching_figure(table).show()                                            # doctest: +SKIP
>>> explore.compose(bridge).query("kind == 'k'").nlargest(3, "score")           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
from torch import Tensor

from interp.errors import InterpError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = ["compose", "load", "patch", "score"]


def load(spec: str = "smollm2-135m", device: str = "auto", dtype: str = "float32") -> "TransformerBridge":
    """The model as a TransformerLens ``TransformerBridge`` (``interp.models.loading.load_model`` adds its record)."""
    from interp.models.loading import load_model

    bridge, _ = load_model(spec, device=device, dtype=dtype)
    return bridge


def score(bridge: "TransformerBridge", seeds: int = 5, protocol: str = "olsson",
          metrics: Sequence[str] = ("prefix_matching", "previous_token", "duplicate_token", "copying")) -> pd.DataFrame:
    """Every head's induction scores over ``seeds`` random sequences.

    Columns ``layer, head, metric, mean, var, ci_low, ci_high, n_seeds``.

    Olsson's protocol by default (L = 25: short, fits small models' contexts); ``"bansal"`` for
    the paper's lengths.  Five seeds is the fewest for which the intervals are worth reading.
    """
    from interp.induction.scores import score_heads
    from interp.induction.sequences import SequenceConfig
    from interp.stats import summarise_seeds

    per_seed = score_heads(bridge, SequenceConfig(protocol=protocol, num_seeds=seeds), metrics=tuple(metrics))
    return summarise_seeds(per_seed)


def patch(bridge: "TransformerBridge", clean: "str | Sequence[str] | Tensor", corrupted: "str | Sequence[str] | Tensor",
          answer: "str | int | Sequence[str | int] | Tensor",
          wrong: "str | int | Sequence[str | int] | Tensor | None" = None,
          activations: Sequence[str] = ("z", "resid_pre", "pattern"), directions: Sequence[str] = ("denoising",),
          position: int = -1) -> pd.DataFrame:
    """Activation patching of every head's output, the residual stream and every head's pattern.

    The metric is ``logit(answer) - logit(wrong)`` at ``position`` (the next-token prediction of
    the last token by default), or the answer's log-probability when ``wrong`` is None.  See
    :func:`interp.explore.patching.activation_patching` for the table's columns.
    """
    from interp.explore.patching import PatchingConfig, activation_patching, answer_metric
    from interp.explore.text import as_tokens

    batch = int(as_tokens(bridge, clean).shape[0])
    as_list = lambda value: value.tolist() if isinstance(value, Tensor) else value  # noqa: E731
    metric = answer_metric(bridge, as_list(answer), None if wrong is None else as_list(wrong), batch=batch)
    config = PatchingConfig(activations=tuple(activations), directions=tuple(directions), position=position)
    return activation_patching(bridge, clean, corrupted, metric, config)


def compose(bridge: "TransformerBridge", kinds: Sequence[str] = ("q", "k", "v"),
            fold_norms: bool = True) -> pd.DataFrame:
    """Q, K and V composition of every pair of heads in different layers, beside the random baseline."""
    from interp.explore.composition import composition_table

    if not kinds:
        raise InterpError("compose needs at least one composition kind: q, k or v")
    return composition_table(bridge, tuple(kinds), fold_norms=fold_norms)
