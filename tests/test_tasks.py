"""Task files, prompts and log-likelihood scoring, against plain versions."""

from __future__ import annotations

import json

import pytest
import torch

from interp.errors import InterpError
from interp.tasks.evaluation import (
    encode_prompts,
    evaluate_prompts,
    multiple_choice_metrics,
    score_sequences,
    wilson_interval,
)
from interp.tasks.prompts import BUILTIN_TASKS, PromptConfig, build_prompts, load_task, read_task_file, split_items


@pytest.mark.parametrize("name", list(BUILTIN_TASKS))
def test_shipped_task_is_valid_and_large_enough(name):
    task = load_task(name)
    assert len(task.items) >= 100
    inputs = [item.input for item in task.items]
    assert len(set(inputs)) == len(inputs), "duplicate inputs"
    prompts = build_prompts(task, 5, PromptConfig())
    assert all(prompt.continuations[prompt.answer_index] == " " + task.items[prompt.item_index].answer
               for prompt in prompts)
    for prompt in prompts:
        item = task.items[prompt.item_index]
        wrong = [c.strip() for i, c in enumerate(prompt.continuations) if i != prompt.answer_index]
        assert not set(wrong) & ({item.answer} | set(item.aliases)), "a distractor is a correct answer"


def test_demonstrations_come_from_the_demo_split_and_are_seeded():
    task = load_task("country_capital")
    config = PromptConfig(seed=3)
    demo, evaluated = split_items(task, config)
    assert not set(demo) & set(evaluated)
    prompts = build_prompts(task, 5, config)
    for prompt in prompts:
        assert prompt.item_index not in prompt.demo_indices
        assert set(prompt.demo_indices) <= set(demo) and len(set(prompt.demo_indices)) == 5
        assert prompt.context.endswith(task.items[prompt.item_index].input + " ->")
    assert build_prompts(task, 5, config) == prompts
    assert build_prompts(task, 5, PromptConfig(seed=4)) != prompts


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"input": "a"', "line 2: not valid JSON"),
        ('{"input": "a"}', "line 2: field 'answer' is missing"),
        ('{"input": 3, "answer": "b"}', "line 2: field 'input' must be a non-empty string"),
        ('{"input": "a", "answer": "b", "choices": ["c", "d"]}', "line 2: field 'choices' does not contain"),
        ('{"input": "a", "answer": "b", "label": 1}', "line 2: field 'label' is not in the schema"),
    ],
)
def test_malformed_task_file_names_file_line_and_field(tmp_path, line, message):
    path = _write(tmp_path / "bad.jsonl", ['{"input": "x", "answer": "y"}', line])
    with pytest.raises(InterpError) as error:
        read_task_file(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(InterpError, match="unknown task 'nope'.*antonyms.*topic"):
        load_task("nope")


def test_too_few_items_for_shots(tmp_path):
    path = _write(tmp_path / "small.jsonl", [json.dumps({"input": f"w{i}", "answer": f"w{i + 1}"}) for i in range(10)])
    with pytest.raises(InterpError, match="too few for 5 shots"):
        build_prompts(read_task_file(path), 5)


def test_prompt_longer_than_context_names_the_item(tiny_models):
    bridge, _ = tiny_models["gpt2"]
    prompts = build_prompts(load_task("antonyms"), 5, PromptConfig(max_items=2))
    with pytest.raises(InterpError, match=r"antonyms: item \d+ does not fit the model's context"):
        encode_prompts(bridge.tokenizer, prompts, max_length=8, task_name="antonyms")


def _plain_logprob(bridge, tokens, context_length):
    with torch.no_grad():
        logits = bridge(torch.tensor([tokens]), return_type="logits")[0]
    log_probs = torch.log_softmax(logits.float(), -1)
    return sum(float(log_probs[position - 1, tokens[position]]) for position in range(context_length, len(tokens)))


def test_batched_scoring_equals_one_sequence_at_a_time(tiny_model, tmp_path):
    bridge, _ = tiny_model
    path = _write(tmp_path / "t.jsonl",
                  [json.dumps({"input": f"w{i} w{i + 2}", "answer": f"w{i + 1}"}) for i in range(20)])
    prompts = build_prompts(read_task_file(path), 2, PromptConfig(max_items=4))
    encoded = encode_prompts(bridge.tokenizer, prompts)
    scores = score_sequences(bridge, encoded, batch_size=5)
    plain = torch.tensor([_plain_logprob(bridge, list(tokens), start)
                          for tokens, start in zip(encoded.tokens, encoded.context_lengths, strict=True)],
                         dtype=torch.float64)
    assert torch.allclose(scores.logprob_sum, plain, atol=1e-4)
    metrics = multiple_choice_metrics(scores.logprob_sum, scores.n_tokens, encoded)
    for item, prompt in enumerate(prompts):
        rows = (encoded.item_of_sequence == item).nonzero().flatten()
        assert metrics["correct"][item] == float(int(plain[rows].argmax()) == prompt.answer_index)
    summary = evaluate_prompts(bridge, prompts, batch_size=3)
    assert summary["accuracy"] == pytest.approx(float(metrics["correct"].mean()))


def test_wilson_interval_contains_the_estimate():
    low, high = wilson_interval(30, 40)
    assert low < 0.75 < high and 0 <= low and high <= 1
    assert wilson_interval(0, 10)[0] == 0.0


def test_a_builtin_task_is_recorded_by_name_not_by_where_the_package_sits():
    """Metadata written from a task's source must not carry this machine's install folder."""
    from interp.tasks.prompts import load_task

    assert load_task("antonyms").source == "builtin:antonyms"
    assert load_task("sul:topic").source.startswith("builtin:topic with unrelated labels (sports=")
