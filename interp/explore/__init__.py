"""Exploring a model in a notebook: heads on any text, activation patching, composition scores.

A line or two each, DataFrames and plotly figures back, no results folder::

    from interp import explore

    bridge = explore.load("toy-attn-2l")                      # or "smollm2-135m", any spec `interp models` lists
    scores = explore.score(bridge)                            # every head: prefix matching, previous token, copying
    explore.view_head(bridge, "Mr and Mrs Dursley. Mr and Mrs Dursley.", layer=1, head=2).show()
    explore.view_layer(bridge, "Mr and Mrs Dursley. Mr and Mrs Dursley.", layer=0).show()
    explore.head_overview(bridge, 1, 2, text="...", scores=scores).show()   # from a score to the head
    table = explore.patch(bridge, clean, corrupted, answer=" Potter")       # heads, residual stream, patterns
    explore.patching_figure(table).show()
    explore.composition_figure(explore.compose(bridge)).show()

Modules: :mod:`~interp.explore.viewer` (attention views), :mod:`~interp.explore.patching`
(activation patching), :mod:`~interp.explore.composition` (Q/K/V composition; ``compose`` here,
so the name does not shadow the module),
:mod:`~interp.explore.text` (prompts and token labels), :mod:`~interp.explore.api` (the
one-liners above).
"""

from interp.explore.api import compose, load, patch, score
from interp.explore.composition import composition_figure, composition_table
from interp.explore.patching import (
                                     PatchingConfig,
                                     activation_patching,
                                     answer_metric,
                                     induction_prompts,
                                     patching_figure,
                                     repeated_name_prompts,
)
from interp.explore.viewer import attention_patterns, head_overview, save_html, view_head, view_layer

__all__ = [
    "PatchingConfig",
    "activation_patching",
    "answer_metric",
    "attention_patterns",
    "compose",
    "composition_figure",
    "composition_table",
    "head_overview",
    "induction_prompts",
    "load",
    "patch",
    "patching_figure",
    "repeated_name_prompts",
    "save_html",
    "score",
    "view_head",
    "view_layer",
]
