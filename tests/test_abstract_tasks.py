"""Abstract pattern tasks, semantically unrelated labels, balanced demonstrations and demonstration seeds."""

from __future__ import annotations

import functools
import importlib.util
from collections import Counter

import pytest

from interp.data import data_path
from interp.errors import InterpError
from interp.tasks.prompts import (
    ABSTRACT_TASKS,
    BUILTIN_TASKS,
    UNRELATED_LABELS,
    PromptConfig,
    build_prompts,
    build_prompts_over_seeds,
    label_mapping,
    load_task,
    resolve_task_names,
    split_items,
)


@functools.cache
def generator():
    spec = importlib.util.spec_from_file_location("build_abstract_tasks", data_path("tasks", "build_abstract_tasks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def follows(name: str, text: str, label: str) -> bool:
    """Plain check that an input has the pattern its label claims."""
    parts = text.split()
    if name in ("repetition", "recursion", "centre_embedding"):
        distinct = len(set(parts)) == len(parts)
        if label == "bar":
            return distinct
        first, second = parts[0], parts[1]
        wanted = {"repetition": [first, second, first, second], "recursion": [first, second, second, second],
                  "centre_embedding": [first, second, parts[2], second, first]}[name]
        return parts == wanted and len(set(parts)) == len(parts) - 2  # X != Y (!= Z): two letters come back
    categories = generator().CATEGORIES
    pairs = {"foo": ("fruit", "animal"), "bar": ("furniture", "profession"), "zip": ("vehicle", "colour"),
             "vex": ("clothing", "country")}[label]
    return parts[0] in categories[pairs[0]] and parts[1] in categories[pairs[1]]


@pytest.mark.parametrize("name", list(ABSTRACT_TASKS))
def test_abstract_task_is_balanced_unique_and_follows_its_rule(name):
    task = load_task(name)
    assert len(task.items) == 400
    assert len({item.input for item in task.items}) == 400
    counts = Counter(item.answer for item in task.items)
    assert len(set(counts.values())) == 1 and len(counts) == (4 if name.endswith("4way") else 2)
    assert all(item.choices == task.items[0].choices for item in task.items)
    assert all(follows(name, item.input, item.answer) for item in task.items)


def test_generator_is_deterministic(tmp_path, monkeypatch):
    module = generator()
    monkeypatch.setattr(module, "OUT", tmp_path)
    module.main()
    for name in ABSTRACT_TASKS:
        assert (tmp_path / f"{name}.jsonl").read_text() == data_path("tasks", f"{name}.jsonl").read_text()


def test_task_groups_resolve_and_all_still_means_the_fourteen():
    assert resolve_task_names("all") == list(BUILTIN_TASKS) and len(BUILTIN_TASKS) == 14
    assert resolve_task_names("abstract, topic") == [*ABSTRACT_TASKS, "topic"]


@pytest.mark.parametrize("name, shots", [("repetition", 5), ("word_categories_4way", 5), ("word_categories_4way", 6),
                                         ("sentiment", 5), ("topic", 3)])
def test_classification_demonstrations_are_balanced_by_default(name, shots):
    task = load_task(name)
    prompts = build_prompts(task, shots, PromptConfig(max_items=40))
    classes = len(task.items[0].choices)
    majority = Counter()
    for prompt in prompts:
        counts = Counter(task.items[index].answer for index in prompt.demo_indices)
        full = [counts.get(label, 0) for label in task.items[0].choices]
        assert max(full) - min(full) <= 1 and sum(full) == shots
        majority.update(label for label, count in counts.items() if count > shots // classes)
    if shots % classes:  # the extra demonstrations go to each class about equally often
        assert len(majority) == classes


def test_unbalanced_option_and_free_form_tasks_keep_the_plain_draw():
    task = load_task("antonyms")
    same_seed = PromptConfig(max_items=5, demo_seed=0)
    assert build_prompts(task, 5, PromptConfig(max_items=5)) == build_prompts(task, 5, same_seed)
    with pytest.raises(InterpError, match="balanced_demos needs the same fixed choices"):
        build_prompts(task, 5, PromptConfig(balanced_demos=True))
    sentiment = load_task("sentiment")
    plain = build_prompts(sentiment, 5, PromptConfig(balanced_demos=False))
    shares = [Counter(sentiment.items[i].answer for i in p.demo_indices).most_common(1)[0][1] for p in plain]
    assert max(shares) >= 4, "an unbalanced draw of 5 from 2 classes gives 4:1 or 5:0 contexts"


@pytest.mark.parametrize("name", ["sentiment", "topic", "word_categories_4way"])
def test_unrelated_labels_replace_labels_consistently(name):
    task = load_task(name)
    config = PromptConfig(max_items=20, labels="unrelated")
    mapping = label_mapping(task, config)
    assert sorted(mapping) == sorted(task.items[0].choices)
    assert len(set(mapping.values())) == len(mapping) and set(mapping.values()) <= set(UNRELATED_LABELS)
    original = build_prompts(task, 4, PromptConfig(max_items=20))
    for plain, unrelated in zip(original, build_prompts(task, 4, config), strict=True):
        assert unrelated.demo_indices == plain.demo_indices and unrelated.answer_index == plain.answer_index
        assert unrelated.continuations == tuple(" " + mapping[choice.strip()] for choice in plain.continuations)
        shown = [line.rsplit(" -> ", 1)[1] for line in unrelated.context.splitlines()[:-1]]
        assert shown == [mapping[task.items[index].answer] for index in plain.demo_indices]
    assert label_mapping(task, PromptConfig(labels="original")) == {label: label for label in mapping}


def test_unrelated_labels_need_fixed_choices_and_a_known_mode():
    with pytest.raises(InterpError, match="labels='unrelated' needs fixed choices"):
        build_prompts(load_task("antonyms"), 1, PromptConfig(labels="unrelated"))
    with pytest.raises(InterpError, match="labels must be one of original, unrelated, got 'random'"):
        PromptConfig(labels="random")


def test_demonstration_seeds_redraw_only_the_demonstrations():
    task = load_task("centre_embedding")
    runs = build_prompts_over_seeds(task, 5, PromptConfig(max_items=30), demo_seeds=(0, 1, 2))
    demo, evaluated = split_items(task, PromptConfig(max_items=30))
    for prompts in runs.values():
        assert [prompt.item_index for prompt in prompts] == evaluated
        assert all(set(prompt.demo_indices) <= set(demo) for prompt in prompts)
    assert runs[0] == build_prompts(task, 5, PromptConfig(max_items=30))
    assert runs[1] != runs[0] and runs[2] != runs[1]
    with pytest.raises(InterpError, match="demo_seeds must be distinct"):
        build_prompts_over_seeds(task, 5, demo_seeds=(1, 1))


def _gguf_tokenizer(name):
    from transformers import AutoTokenizer

    from interp.models.loading import KNOWN_MODELS

    path = KNOWN_MODELS[name].locate()
    if path is None:
        pytest.skip(f"{name} is not installed")
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_labels_are_single_tokens_for_the_real_tokenizers(model):
    tokenizer = _gguf_tokenizer(model)
    labels = {label for name in ABSTRACT_TASKS for label in load_task(name).items[0].choices} | set(UNRELATED_LABELS)
    lengths = {label: len(tokenizer(" " + label, add_special_tokens=False)["input_ids"]) for label in labels}
    assert lengths == {label: 1 for label in labels}


def test_accuracy_over_demonstration_seeds_equals_one_seed_at_a_time(tiny_models, tmp_path):
    import json

    import numpy as np

    from interp.tasks.demo_seeds import evaluate_over_demo_seeds, seed_spread
    from interp.tasks.evaluation import evaluate_prompts
    from interp.tasks.prompts import read_task_file

    bridge, _ = tiny_models["gpt2"]
    path = tmp_path / "tiny_classes.jsonl"
    lines = [json.dumps({"input": f"w{i} w{i + 1}", "choices": ["cat", "dog"], "answer": ["cat", "dog"][i % 2]})
             for i in range(40)]
    path.write_text("\n".join(lines) + "\n")
    task = read_task_file(path)
    config = PromptConfig(max_items=6, labels="unrelated")
    table = evaluate_over_demo_seeds(bridge, task, 3, config, demo_seeds=(0, 1, 2))
    assert table["demo_seed"].tolist() == [0, 1, 2] and table["balanced_demos"].all()
    assert set(table["label_map"]) == {",".join(f"{k}={v}" for k, v in label_mapping(task, config).items())}
    for seed in (0, 1, 2):
        alone = evaluate_prompts(bridge, build_prompts(task, 3, PromptConfig(max_items=6, labels="unrelated",
                                                                             demo_seed=seed)))
        assert table.loc[table["demo_seed"] == seed, "accuracy"].item() == pytest.approx(alone["accuracy"])
    spread = seed_spread(table).iloc[0]
    assert spread["accuracy_sd"] == pytest.approx(np.std(table["accuracy"], ddof=1))
    assert len(evaluate_over_demo_seeds(bridge, task, 0, config, demo_seeds=(0, 1, 2))) == 1  # no shots, one run


def test_sul_task_spec_is_the_task_with_the_mapped_labels():
    from interp.tasks.prompts import load_task as load

    plain, sul = load("sentiment"), load("sul:sentiment")
    mapping = label_mapping(plain, PromptConfig(labels="unrelated"))
    assert sul.name == "sentiment_sul" and all(f"{k}={v}" in sul.source for k, v in mapping.items())
    assert [item.answer for item in sul.items] == [mapping[item.answer] for item in plain.items]
    config = PromptConfig(max_items=10)
    via_spec = build_prompts(sul, 5, config)
    via_config = build_prompts(plain, 5, PromptConfig(max_items=10, labels="unrelated"))
    assert [(p.context, p.continuations, p.answer_index) for p in via_spec] == \
        [(p.context, p.continuations, p.answer_index) for p in via_config]
    with pytest.raises(InterpError, match="needs fixed choices"):
        load("sul:antonyms")


def test_accuracy_command_writes_seed_rows_spread_and_the_sul_mapping(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app
    from interp.store import read_json, read_table

    result = CliRunner().invoke(app, ["accuracy", "--model", "toy-attn-2l", "--tasks", "repetition,sul:sentiment",
                                      "--shots", "0,2", "--demo-seeds", "0,1", "--max-items", "4",
                                      "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = read_table(tmp_path / "accuracy_seeds")
    assert sorted(zip(rows["task"], rows["shots"], rows["demo_seed"], strict=True)) == [
        ("repetition", 0, 0), ("repetition", 2, 0), ("repetition", 2, 1),
        ("sentiment_sul", 0, 0), ("sentiment_sul", 2, 0), ("sentiment_sul", 2, 1)]
    assert set(rows["chance"]) == {0.5} and (rows["n_items"] == 4).all()
    spread = read_table(tmp_path / "accuracy_spread")
    assert len(spread) == 4 and set(spread["n_seeds"]) == {1.0, 2.0}
    sources = [task["source"] for task in read_json(tmp_path / "accuracy.json")["tasks"]]
    assert "with unrelated labels (negative=" in sources[1] or "with unrelated labels (positive=" in sources[1]
    bad = CliRunner().invoke(app, ["accuracy", "--model", "toy-attn-2l", "--labels", "random", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "labels must be one of original, unrelated" in bad.output


def test_accuracy_run_resumes_from_its_cells(tmp_path, monkeypatch):
    from interp.tasks import demo_seeds
    from interp.tasks.demo_seeds import run_accuracy

    config = PromptConfig(max_items=3)
    first = run_accuracy("toy-attn-2l", "recursion", [0, 2], tmp_path, config, demo_seeds=(0, 1), device="cpu")
    assert len(list((tmp_path / "accuracy_cells").glob("*.json"))) == 3

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was computed again")

    monkeypatch.setattr(demo_seeds, "_seed_row", fail)
    again = run_accuracy("toy-attn-2l", "recursion", [0, 2], tmp_path, config, demo_seeds=(0, 1), device="cpu")
    assert again["accuracy_seeds"].equals(first["accuracy_seeds"])
    with pytest.raises(AssertionError, match="computed again"):  # other prompt settings: another key
        run_accuracy("toy-attn-2l", "recursion", [2], tmp_path, PromptConfig(max_items=4), demo_seeds=(0,),
                     device="cpu")
