"""In-context-learning tasks: the JSONL schema, loading and validation, and few-shot prompts.

A task is a JSONL file, one item a line::

    {"input": "France", "answer": "Paris"}
    {"input": "I loved it.", "choices": ["positive", "negative"], "answer": "positive"}
    {"input": "wolf", "answer": "pup", "aliases": ["cub"]}

- ``input`` (string, required): what the model sees after the demonstrations.
- ``answer`` (string, required): the correct continuation.
- ``choices`` (list of strings, optional): the candidate continuations; must contain ``answer``.
  Without it, the candidates are ``answer`` plus ``n_choices - 1`` distractors drawn with a fixed
  seed from the *other* items' answers (never the answer itself or one of its aliases).
- ``aliases`` (list of strings, optional): other correct answers, never used as distractors.

Prompts follow one plain template (:class:`PromptConfig`)::

    {input} -> {answer}        (k demonstrations, one a line)
    {input} ->                 (the query; each choice is scored as " {choice}")

The k demonstrations come from a separate *demo split* (a fixed, seeded share of the items),
so an evaluated item never appears among its own demonstrations.  Three options of
:class:`PromptConfig` serve the induction-head experiments of Crosbie & Shutova (2025):

- ``balanced_demos``: the k demonstrations cover the classes equally (counts differ by at most
  one, the extra ones drawn at random), by default on classification tasks (every item has the
  same fixed choices);
- ``labels="unrelated"``: semantically unrelated labels (SUL; Wei et al. 2023): each class label
  becomes an arbitrary word from :data:`UNRELATED_LABELS`, the same mapping in demonstrations and
  query (:func:`label_mapping` gives it for the metadata);
- ``demo_seed``: redraws only the demonstrations (the split stays), for the spread over
  demonstration seeds (:func:`build_prompts_over_seeds`).

The abstract pattern tasks (:data:`ABSTRACT_TASKS`, built by ``data/tasks/build_abstract_tasks.py``)
map a pattern to an arbitrary label, so only the demonstrations can teach it.

>>> task = load_task("country_capital")
>>> len(task.items) >= 100, task.items[0].input
(True, 'France')
>>> prompts = build_prompts(task, shots=2, config=PromptConfig(max_items=3))
>>> print(prompts[0].context)  # doctest: +SKIP
Norway -> Oslo
Peru -> Lima
Chile ->
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interp.data import data_path
from interp.errors import InterpError
from interp.tasks.schema import Prompt, PromptConfig, Task, TaskItem

__all__ = [
    "ABSTRACT_TASKS",
    "BUILTIN_TASKS",
    "PAPER_TASKS",
    "Prompt",
    "PromptConfig",
    "Task",
    "TaskItem",
    "UNRELATED_LABELS",
    "build_prompts",
    "is_pattern_task",
    "build_prompts_over_seeds",
    "class_labels",
    "label_mapping",
    "load_paper_task",
    "load_task",
    "read_task_file",
    "resolve_task_names",
    "split_items",
    "with_unrelated_labels",
]

TASK_DIR = data_path("tasks")

# name -> what the task asks
BUILTIN_TASKS: dict[str, str] = {
    "antonyms": "word -> its opposite",
    "country_capital": "country -> capital city",
    "country_currency": "country -> currency name",
    "english_french": "English word -> French word",
    "english_spanish": "English word -> Spanish word",
    "singular_plural": "noun -> plural",
    "present_past": "verb -> simple past",
    "lowercase_uppercase": "word -> the same word in capitals",
    "word_first_letter": "word -> its first letter",
    "number_successor": "number -> the next number",
    "object_colour": "object -> its typical colour",
    "animal_young": "animal -> name of its young",
    "sentiment": "sentence -> positive / negative",
    "topic": "sentence -> sports / food / weather / technology",
}

# Abstract pattern tasks (Crosbie & Shutova 2025): a pattern -> an arbitrary label. Kept apart from
# BUILTIN_TASKS so that `--tasks all` still means the 14 tasks; `--tasks abstract` selects these.
ABSTRACT_TASKS: dict[str, str] = {
    "repetition": "letters X Y X Y -> foo, four distinct letters -> bar",
    "recursion": "letters X Y Y Y -> foo, four distinct letters -> bar",
    "centre_embedding": "letters X Y Z Y X -> foo, five distinct letters -> bar",
    "word_categories": "fruit + animal -> foo, furniture + profession -> bar",
    "word_categories_4way": "fruit + animal / furniture + profession / vehicle + colour / clothing + country "
                            "-> foo / bar / zip / vex",
}

# Semantically unrelated labels: short common words, each one token after a space for the SmolLM2
# and Gemma 3 tokenizers, tied to no task's classes (no sentiment, topic, category or label word).
UNRELATED_LABELS: tuple[str, ...] = ("elm", "rug", "ink", "lid", "wax", "dot", "orb", "rho")

# The paper's (Bansal et al. 2023) tasks on the Hugging Face hub, for `load_paper_task`:
# name -> (dataset id, config, split, input field, label field, label names)
PAPER_TASKS: dict[str, tuple[str, str | None, str, str, str, tuple[str, ...]]] = {
    "sst2": ("glue", "sst2", "validation", "sentence", "label", ("negative", "positive")),
    "rte": ("glue", "rte", "validation", "sentence1", "label", ("yes", "no")),
    "boolq": ("super_glue", "boolq", "validation", "question", "label", ("no", "yes")),
    "ag_news": ("ag_news", None, "test", "text", "label", ("world", "sports", "business", "technology")),
}


def _field_error(path: Path, line: int, name: str, problem: str) -> InterpError:
    return InterpError(f"{path}: line {line}: field {name!r} {problem}")


def _string_list(value: Any, path: Path, line: int, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(entry, str) and entry.strip() for entry in value):
        raise _field_error(path, line, name, "must be a list of non-empty strings")
    return tuple(value)


def read_task_file(path: Path | str, name: str | None = None) -> Task:
    """Read and validate a task JSONL file; errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise InterpError(f"task file {path} does not exist")
    items = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InterpError(f"{path}: line {line_number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise InterpError(f"{path}: line {line_number}: expected a JSON object with input and answer")
        for required in ("input", "answer"):
            if required not in record:
                raise _field_error(path, line_number, required, "is missing")
            if not isinstance(record[required], str) or not record[required].strip():
                raise _field_error(path, line_number, required, "must be a non-empty string")
        unknown = set(record) - {"input", "answer", "choices", "aliases"}
        if unknown:
            raise _field_error(path, line_number, sorted(unknown)[0],
                               "is not in the schema (input, answer, choices, aliases)")
        choices = None
        if "choices" in record:
            choices = _string_list(record["choices"], path, line_number, "choices")
            if record["answer"] not in choices:
                raise _field_error(path, line_number, "choices", f"does not contain the answer {record['answer']!r}")
            if len(set(choices)) != len(choices) or len(choices) < 2:
                raise _field_error(path, line_number, "choices", "must hold at least 2 distinct strings")
        aliases = _string_list(record["aliases"], path, line_number, "aliases") if "aliases" in record else ()
        items.append(TaskItem(record["input"], record["answer"], choices, aliases))
    if not items:
        raise InterpError(f"task file {path} has no items")
    return Task(name or path.stem, tuple(items), str(path))


def load_paper_task(name: str, max_items: int | None = 1000) -> Task:
    """Load one of the paper's tasks (:data:`PAPER_TASKS`) through the optional ``datasets`` package.

    Needs ``pip install datasets`` and a connected machine (or a populated Hugging Face cache);
    the items get the label names as fixed choices.
    """
    if name not in PAPER_TASKS:
        raise InterpError(f"unknown paper task {name!r}; choose one of: {', '.join(PAPER_TASKS)}")
    try:
        import datasets
    except ImportError:
        raise InterpError("paper tasks need the optional package `datasets` (pip install datasets)") from None
    dataset_id, config, split, input_field, label_field, labels = PAPER_TASKS[name]
    try:
        rows = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as error:  # network and cache failures come in many types
        raise InterpError(f"could not load dataset {dataset_id}/{config} ({str(error).splitlines()[0]})") from None
    items = []
    for row in rows:
        if max_items is not None and len(items) >= max_items:
            break
        label = row[label_field]
        if 0 <= label < len(labels):
            items.append(TaskItem(" ".join(str(row[input_field]).split()), labels[label], labels))
    return Task(name, tuple(items), f"hf:{dataset_id}/{config or ''}:{split}")


def load_task(spec: str) -> Task:
    """A built-in task name, ``paper:NAME`` (through ``datasets``), ``lm-eval:NAME`` (lm-eval-harness) or a JSONL path.

    ``sul:SPEC`` is task SPEC with semantically unrelated labels (:func:`with_unrelated_labels`), so any
    command that takes tasks can run an SUL version beside the original.
    """
    if spec.startswith("sul:"):
        return with_unrelated_labels(load_task(spec.removeprefix("sul:")))
    if spec in BUILTIN_TASKS or spec in ABSTRACT_TASKS:
        # named, not located: metadata must not carry where the package sits on this machine
        return dataclasses.replace(read_task_file(TASK_DIR / f"{spec}.jsonl", name=spec), source=f"builtin:{spec}")
    if spec.startswith("paper:"):
        return load_paper_task(spec.removeprefix("paper:"))
    if spec.startswith("lm-eval:"):  # an lm-eval-harness task (optional extra), e.g. lm-eval:hellaswag
        from interp.reach.lm_eval_adapter import load_lm_eval_task

        return load_lm_eval_task(spec)
    if spec.endswith(".jsonl") or Path(spec).is_file():
        return read_task_file(spec)
    raise InterpError(
        f"unknown task {spec!r}; choose one of: {', '.join([*BUILTIN_TASKS, *ABSTRACT_TASKS])}, paper:NAME "
        f"({', '.join(PAPER_TASKS)}), lm-eval:NAME, sul:TASK or a path to a .jsonl file"
    )


def resolve_task_names(spec: str) -> list[str]:
    """``all`` (the 14 tasks), ``abstract`` (the 5 pattern tasks) or a comma-separated list of names and those two.

    >>> resolve_task_names("antonyms, topic")
    ['antonyms', 'topic']
    >>> resolve_task_names("abstract,sentiment")[-2:]
    ['word_categories_4way', 'sentiment']
    """
    groups = {"all": list(BUILTIN_TASKS), "abstract": list(ABSTRACT_TASKS)}
    names = [entry for name in spec.split(",") if name.strip() for entry in groups.get(name.strip(), [name.strip()])]
    if not names:
        raise InterpError(f"no tasks in {spec!r}; give `all` or names like antonyms,topic")
    return names


def split_items(task: Task, config: PromptConfig) -> tuple[list[int], list[int]]:
    """Seeded split into (demonstration pool, evaluated items), as indices into ``task.items``."""
    order = np.random.default_rng(config.seed).permutation(len(task.items))
    n_demo = max(1, int(round(config.demo_fraction * len(task.items))))
    demo, evaluated = sorted(order[:n_demo].tolist()), sorted(order[n_demo:].tolist())
    if config.max_items is not None:
        evaluated = evaluated[: config.max_items]
    return demo, evaluated


def _choices_for(task: Task, index: int, config: PromptConfig, rng: np.random.Generator) -> tuple[str, ...]:
    item = task.items[index]
    if item.choices is not None:
        return item.choices
    excluded = {item.answer, *item.aliases}
    pool = sorted({other.answer for other in task.items} - excluded)
    if len(pool) < config.n_choices - 1:
        raise InterpError(
            f"task {task.name!r}: item {index} ({item.input!r}) has only {len(pool)} distinct distractors; "
            f"n_choices={config.n_choices} needs {config.n_choices - 1}"
        )
    distractors = rng.choice(len(pool), size=config.n_choices - 1, replace=False)
    choices = [item.answer] + [pool[position] for position in distractors]
    return tuple(choices[position] for position in rng.permutation(len(choices)))


def class_labels(task: Task) -> tuple[str, ...] | None:
    """The shared fixed choices when every item has the same set (a classification task), else None."""
    first = task.items[0].choices
    if first is None or any(item.choices is None or set(item.choices) != set(first) for item in task.items):
        return None
    return first


def label_mapping(task: Task, config: PromptConfig) -> dict[str, str]:
    """Original label -> shown label: identity for ``labels="original"``, a seeded SUL draw otherwise.

    >>> mapping = label_mapping(load_task("sentiment"), PromptConfig(labels="unrelated"))
    >>> sorted(mapping) == ["negative", "positive"] and set(mapping.values()) <= set(UNRELATED_LABELS)
    True
    """
    labels = [label for item in task.items for label in (item.choices or ())]
    ordered = list(dict.fromkeys(labels))  # first-appearance order: stable for a given file
    if config.labels == "original":
        return {label: label for label in ordered}
    if any(item.choices is None for item in task.items):
        raise InterpError(f"task {task.name!r}: labels='unrelated' needs fixed choices on every item")
    pool = [word for word in UNRELATED_LABELS if word not in ordered]
    if len(pool) < len(ordered):
        raise InterpError(f"task {task.name!r} has {len(ordered)} labels; only {len(pool)} unrelated words exist")
    drawn = np.random.default_rng([config.seed, 1]).permutation(len(pool))[: len(ordered)]
    return {label: pool[position] for label, position in zip(ordered, drawn, strict=True)}


def is_pattern_task(name: str) -> bool:
    """Whether a results table's task name is an abstract pattern task or a task with unrelated labels.

    These are the tasks where only the demonstrations can teach the label (Crosbie & Shutova 2025).
    SUL tasks are named ``NAME_sul`` in tables (:func:`with_unrelated_labels`), not ``sul:NAME``.

    >>> [is_pattern_task(name) for name in ("recursion", "topic_sul", "topic", "all")]
    [True, True, False, False]
    """
    return name in ABSTRACT_TASKS or name.endswith("_sul")


def with_unrelated_labels(task: Task, seed: int = 0) -> Task:
    """``task`` with :func:`label_mapping`'s SUL words for labels; named ``NAME_sul``, the mapping in ``source``.

    >>> task = with_unrelated_labels(load_task("topic"))
    >>> task.name, set(task.items[0].choices) <= set(UNRELATED_LABELS), "sports=" in task.source
    ('topic_sul', True, True)
    """
    mapping = label_mapping(task, PromptConfig(labels="unrelated", seed=seed))
    items = tuple(
        TaskItem(item.input, mapping[item.answer], tuple(mapping[choice] for choice in item.choices),
                 tuple(mapping[alias] for alias in item.aliases if alias in mapping))
        for item in task.items
    )
    described = ", ".join(f"{label}={shown}" for label, shown in mapping.items())
    return Task(f"{task.name}_sul", items, f"{task.source} with unrelated labels ({described})")


def _balanced_demonstrations(task: Task, demo: list[int], shots: int, classes: tuple[str, ...],
                             rng: np.random.Generator) -> list[int]:
    """``shots`` demo items whose class counts differ by at most one, in random order."""
    counts = np.full(len(classes), shots // len(classes))
    counts[rng.choice(len(classes), size=shots % len(classes), replace=False)] += 1
    chosen = []
    for label, count in zip(classes, counts, strict=True):
        pool = [index for index in demo if task.items[index].answer == label]
        if len(pool) < count:
            raise InterpError(f"task {task.name!r}: {shots} balanced shots need {count} demonstrations of "
                              f"{label!r}; the demo split has {len(pool)}")
        chosen += [pool[position] for position in rng.choice(len(pool), size=int(count), replace=False)]
    return [chosen[position] for position in rng.permutation(len(chosen))]


def _check_shots(task: Task, shots: int, config: PromptConfig, demo: list[int], evaluated: list[int]) -> None:
    if shots < 0:
        raise InterpError(f"shots must be 0 or more, got {shots}")
    if shots > len(demo):
        raise InterpError(
            f"task {task.name!r} has {len(demo)} demonstration items (demo_fraction={config.demo_fraction} of "
            f"{len(task.items)}); too few for {shots} shots"
        )
    if not evaluated:
        raise InterpError(f"task {task.name!r} has no items left to evaluate after the demo split")


def build_prompts(task: Task, shots: int, config: PromptConfig = PromptConfig()) -> list[Prompt]:
    """One prompt per evaluated item, with ``shots`` demonstrations from the demo split.

    >>> prompts = build_prompts(load_task("repetition"), 4, PromptConfig(max_items=2, labels="unrelated"))
    >>> [line.split(" -> ")[1] in UNRELATED_LABELS for line in prompts[0].context.splitlines()[:-1]]
    [True, True, True, True]
    """
    if task.source.startswith("lm-eval:"):  # lm-eval's own few-shot contexts and delimiters
        from interp.reach.lm_eval_adapter import lm_eval_prompts

        return lm_eval_prompts(task, shots, config)
    demo, evaluated = split_items(task, config)
    _check_shots(task, shots, config, demo, evaluated)
    classes = class_labels(task)
    balanced = classes is not None if config.balanced_demos is None else config.balanced_demos
    if balanced and classes is None:
        raise InterpError(f"task {task.name!r}: balanced_demos needs the same fixed choices on every item")
    shown = label_mapping(task, config)
    show = lambda label: shown.get(label, label)  # noqa: E731  (identity for free-form answers)
    demo_seed = config.seed if config.demo_seed is None else config.demo_seed
    prompts = []
    for index in evaluated:
        # One generator per item so that a prompt does not depend on which other items are evaluated.
        rng = np.random.default_rng([demo_seed, index])
        if balanced:
            chosen = _balanced_demonstrations(task, demo, shots, classes, rng)
        else:
            chosen = [demo[position] for position in rng.choice(len(demo), size=shots, replace=False)]
        lines = [config.template.format(input=task.items[d].input) + " " + show(task.items[d].answer) for d in chosen]
        lines.append(config.template.format(input=task.items[index].input))
        choices = _choices_for(task, index, config, rng)
        prompts.append(
            Prompt(
                item_index=index,
                context=config.separator.join(lines),
                continuations=tuple(" " + show(choice) for choice in choices),
                answer_index=choices.index(task.items[index].answer),
                demo_indices=tuple(chosen),
                prepend_bos=config.prepend_bos,
            )
        )
    return prompts


def build_prompts_over_seeds(task: Task, shots: int, config: PromptConfig = PromptConfig(),
                             demo_seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> dict[int, list[Prompt]]:
    """Prompts for each demonstration seed: same split and items, demonstrations redrawn (five, as Crosbie & Shutova).

    >>> runs = build_prompts_over_seeds(load_task("recursion"), 5, PromptConfig(max_items=3), demo_seeds=(0, 1))
    >>> [prompt.item_index for prompt in runs[0]] == [prompt.item_index for prompt in runs[1]]
    True
    """
    if not demo_seeds or len(set(demo_seeds)) != len(demo_seeds):
        raise InterpError(f"demo_seeds must be distinct and non-empty, got {list(demo_seeds)}")
    return {int(seed): build_prompts(task, shots, dataclasses.replace(config, demo_seed=int(seed)))
            for seed in demo_seeds}
