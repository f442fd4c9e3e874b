"""The task suite's data types: items, tasks, prompt settings and built prompts.

Kept apart from :mod:`interp.tasks.prompts` (which reads task files and builds prompts) so that
modules that only pass these around (evaluation, the lm-eval adapter) depend on the types, not on
the builders, and imports run one way.

>>> Task("demo", (TaskItem("hot", "cold"), TaskItem("up", "down")), source="inline").chance(4)
0.25
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from interp.errors import InterpError

__all__ = ["LABEL_MODES", "Prompt", "PromptConfig", "Task", "TaskItem"]

LABEL_MODES = ("original", "unrelated")


@dataclass(frozen=True)
class TaskItem:
    """One item: the input, the correct answer, optional fixed choices and other correct answers."""

    input: str
    answer: str
    choices: tuple[str, ...] | None = None  # None: distractors are drawn from other items
    aliases: tuple[str, ...] = ()  # other correct answers, never offered as distractors


@dataclass(frozen=True)
class Task:
    """A named list of items read from one JSONL file (or a dataset)."""

    name: str
    items: tuple[TaskItem, ...]
    source: str  # builtin:NAME, the file path as given, or a dataset id, for the metadata

    def chance(self, n_choices: int) -> float:
        """Accuracy of guessing uniformly among each item's choices, averaged over items."""
        sizes = [len(item.choices) if item.choices else n_choices for item in self.items]
        return float(np.mean([1.0 / size for size in sizes]))


@dataclass(frozen=True)
class PromptConfig:
    """How few-shot prompts are built from a task.

    >>> PromptConfig(n_choices=1)
    Traceback (most recent call last):
    ...
    interp.errors.InterpError: n_choices must be at least 2, got 1
    """

    template: str = "{input} ->"  # the query; a demonstration appends " {answer}"
    separator: str = "\n"  # between demonstrations and before the query
    n_choices: int = 4  # candidates for items without "choices": the answer + 3 distractors
    demo_fraction: float = 0.2  # share of items held out as the demonstration pool
    seed: int = 0  # fixes the demo split, the demonstrations and the distractors
    max_items: int | None = None  # evaluate only the first N non-demo items (None: all)
    # None: balanced exactly when every item has the same fixed choices (a classification task), where an
    # unbalanced draw would let the majority label of the demonstrations pass for in-context learning
    balanced_demos: bool | None = None
    labels: str = "original"  # "unrelated": class labels replaced by UNRELATED_LABELS words (SUL)
    demo_seed: int | None = None  # None: ``seed``; another value redraws only the demonstrations
    # The model's BOS token first, as TransformerLens runs every model and the induction sequences start
    # (docs/methods.md, "Estimators and BOS policy"); SmolLM2's BOS is its chat token <|im_start|>.
    prepend_bos: bool = True

    def __post_init__(self) -> None:
        if "{input}" not in self.template:
            raise InterpError(f"template {self.template!r} must contain {{input}}")
        if self.n_choices < 2:
            raise InterpError(f"n_choices must be at least 2, got {self.n_choices}")
        if not 0.0 < self.demo_fraction < 1.0:
            raise InterpError(f"demo_fraction must be between 0 and 1, got {self.demo_fraction}")
        if self.max_items is not None and self.max_items < 1:
            raise InterpError(f"max_items must be positive or None, got {self.max_items}")
        if self.labels not in LABEL_MODES:
            raise InterpError(f"labels must be one of {', '.join(LABEL_MODES)}, got {self.labels!r}")


@dataclass(frozen=True)
class Prompt:
    """A few-shot context with its candidate continuations (each starts with a space)."""

    item_index: int  # index into task.items
    context: str
    continuations: tuple[str, ...]
    answer_index: int  # which continuation is correct
    demo_indices: tuple[int, ...] = field(default=())  # items used as demonstrations
    prepend_bos: bool = True  # encode_prompts puts the tokenizer's BOS first (PromptConfig.prepend_bos)
