"""The lm-eval adapter, offline: a custom lm-eval task read from local JSON files.

lm-eval-harness evaluates the (optionally masked) toy model through :func:`hooked_lm`; the same
task loaded as ``lm-eval:NAME`` goes through the workbench's own prompts and scoring
(``interp.tasks.evaluation``).  Contexts, per-choice log-likelihoods and accuracies must agree.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("lm_eval", reason="the lm-eval extra is not installed (pip install 'interp[lm-eval]')")

from interp.errors import InterpError  # noqa: E402
from interp.hooks import heads_removed_hooks  # noqa: E402
from interp.models.loading import load_model  # noqa: E402
from interp.reach.lm_eval_adapter import INCLUDE_ENV, hooked_lm, split_lm_eval_spec  # noqa: E402
from interp.tasks.evaluation import encode_prompts, evaluate_prompts, multiple_choice_metrics, score_sequences  # noqa: E402
from interp.tasks.prompts import PromptConfig, build_prompts, load_task  # noqa: E402

TASK = "interp_successor"
ITEMS = 12  # evaluated documents (lm-eval's limit; the workbench's max_items)


def _task_yaml(name: str, data: str, output_type: str = "multiple_choice") -> str:
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
            "test_split: test\n"
            f"fewshot_split: test\noutput_type: {output_type}\ndoc_to_text: \"{{{{input}}}} ->\"\n"
            "doc_to_choice: \"{{choices}}\"\ndoc_to_target: label\ntarget_delimiter: \" \"\n"
            "fewshot_delimiter: \"\\n\"\n"
            "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
            "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n")


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    """A successor task (number -> next number, 4 choices, the answer's place varying) as lm-eval YAML + JSONL."""
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    rows = []
    for number in range(1, 41):
        distractors = [str(number + 3), str(number + 11), str(number + 30)]
        label = number % 4
        choices = distractors[:label] + [str(number + 1)] + distractors[label:]
        rows.append({"input": str(number), "choices": choices, "label": label})
    (folder / "successor.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "successor.yaml").write_text(_task_yaml(TASK, str(folder / "successor.jsonl")))
    rolling = _task_yaml("interp_rolling", str(folder / "successor.jsonl"), "loglikelihood_rolling")
    (folder / "rolling.yaml").write_text(rolling)
    return folder


@pytest.fixture(scope="module")
def toy():
    return load_model("toy-attn-2l", device="cpu")


@pytest.fixture(scope="module")
def manager(task_folder):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(task_folder), include_defaults=False)


def _lm_eval_run(lm, manager, shots):
    import lm_eval

    return lm_eval.simple_evaluate(model=lm, tasks=[TASK], task_manager=manager, num_fewshot=shots, limit=ITEMS,
                                   fewshot_random_seed=0, bootstrap_iters=0, log_samples=True)


def _workbench_prompts(task_folder, monkeypatch, shots, bos):
    monkeypatch.setenv(INCLUDE_ENV, str(task_folder))
    return build_prompts(load_task(f"lm-eval:{TASK}"), shots, PromptConfig(max_items=ITEMS, seed=0, prepend_bos=bos))


@pytest.mark.parametrize("shots, removed, bos", [(3, (), True), (0, ((1, 2), (0, 0)), True), (2, (), False)])
def test_lm_eval_accuracy_equals_the_workbench(toy, task_folder, manager, monkeypatch, shots, removed, bos):
    bridge, _ = toy
    hooks = heads_removed_hooks(bridge, removed) if removed else []
    result = _lm_eval_run(hooked_lm(bridge, hooks, batch_size=5, prepend_bos=bos), manager, shots)
    samples = sorted(result["samples"][TASK], key=lambda sample: sample["doc_id"])
    prompts = _workbench_prompts(task_folder, monkeypatch, shots, bos)
    assert len(prompts) == len(samples) == ITEMS
    # the same contexts and continuations: lm-eval's few-shot sampler, seed and delimiters
    for prompt, sample in zip(prompts, samples, strict=True):
        assert [tuple(argument) for argument in sample["arguments"]] == [(prompt.context, continuation)
                                                                        for continuation in prompt.continuations]
        assert prompt.answer_index == sample["target"]
    encoded = encode_prompts(bridge.tokenizer, prompts)
    scores = score_sequences(bridge, encoded, batch_size=4, fwd_hooks=hooks)
    lm_eval_logprobs = torch.tensor([response[0][0] for sample in samples for response in sample["resps"]],
                                    dtype=torch.float64)
    assert torch.allclose(scores.logprob_sum, lm_eval_logprobs, atol=1e-4, rtol=0)
    metrics = multiple_choice_metrics(scores.logprob_sum, scores.n_tokens, encoded)
    assert result["results"][TASK]["acc,none"] == pytest.approx(float(metrics["correct"].mean()), abs=1e-12)
    # acc_norm divides by the choice's length without the delimiter (lm-eval's definition)
    choice_chars = torch.tensor([len(continuation) - 1 for prompt in prompts for continuation in prompt.continuations],
                                dtype=torch.float64)
    normalised = encoded.continuation_chars / choice_chars  # turns the workbench's division into lm-eval's
    norm_metrics = multiple_choice_metrics(scores.logprob_sum * normalised, scores.n_tokens, encoded)
    accuracy = result["results"][TASK]["acc,none"]
    accuracy_norm = float(norm_metrics["correct_norm"].mean())
    assert result["results"][TASK]["acc_norm,none"] == pytest.approx(accuracy_norm, abs=1e-12)
    if not removed and shots == 3:  # the workbench's own job path gives the same accuracy
        assert evaluate_prompts(bridge, prompts, batch_size=4)["accuracy"] == pytest.approx(accuracy)


def test_masking_changes_what_lm_eval_sees(toy):
    bridge, _ = toy
    request = [type("Request", (), {"args": ("1 -> 2\n5 -> 6\n7 -> 8\n1 ->", " 2")})()]
    clean = hooked_lm(bridge).loglikelihood(request)[0][0]
    pruned = hooked_lm(bridge, heads_removed_hooks(bridge, [(1, 2)])).loglikelihood(request)[0][0]
    assert abs(clean - pruned) > 1e-3  # L1H2, the induction head, matters for copying " 2" from the context


def test_rolling_loglikelihood_equals_a_plain_loop(toy):
    bridge, _ = toy
    text = "In the beginning God created the heaven and the earth."
    for hooks in ([], heads_removed_hooks(bridge, [(1, 2)])):
        lm = hooked_lm(bridge, hooks)
        got = lm.loglikelihood_rolling([type("Request", (), {"args": (text,)})()])[0]
        tokens = [lm.prefix_token_id] + lm.tok_encode(text)
        with torch.no_grad():
            logits = bridge.run_with_hooks(torch.tensor([tokens]), fwd_hooks=hooks, return_type="logits")[0]
        expected = sum(float(torch.log_softmax(logits[position].double(), -1)[tokens[position + 1]])
                       for position in range(len(tokens) - 1))
        assert math.isclose(got, expected, abs_tol=1e-3)


def test_generation_and_other_task_types_are_refused_in_one_line(toy, task_folder, monkeypatch):
    bridge, _ = toy
    with pytest.raises(InterpError, match="generation tasks"):
        hooked_lm(bridge).generate_until([])
    monkeypatch.setenv(INCLUDE_ENV, str(task_folder))
    with pytest.raises(InterpError, match="output type loglikelihood_rolling"):
        load_task("lm-eval:interp_rolling")
    with pytest.raises(InterpError, match="lm-eval:NAME"):
        split_lm_eval_spec("lm-eval:")
    with pytest.raises(InterpError, match="batch_size must be positive"):
        hooked_lm(bridge, batch_size=0)


def test_jobs_take_lm_eval_tasks_by_name(task_folder, monkeypatch, tmp_path):
    from interp.importance.job import run_importance
    from interp.importance.methods import ImportanceConfig
    from interp.pruning.components import PruningConfig
    from interp.pruning.job import run_pruning

    monkeypatch.setenv(INCLUDE_ENV, str(task_folder))
    name = f"lm-eval:{TASK}"
    importance = run_importance("toy-attn-2l", [name], [1], "gradient", tmp_path, ImportanceConfig(max_items=4),
                                device="cpu", progress=False, echo=lambda message: None)
    accuracy = importance.tables["task_accuracy"]
    assert list(accuracy["task"]) == [name] and int(accuracy["n_items"].iloc[0]) == 4
    pruning = run_pruning("heads", "toy-attn-2l", [name], [1], tmp_path,
                          PruningConfig(percents=(0, 50), rankings=("random",), n_random=1, max_items=4),
                          device="cpu", figures=False, progress=False, echo=lambda message: None)
    cells = pruning.tables["pruning_heads"]
    assert set(cells["head_percent"]) == {0, 50} and set(cells["task"]) == {name}
    # the unpruned cell is the lm-eval task's own accuracy on the same items
    assert cells.loc[cells["head_percent"] == 0, "accuracy"].iloc[0] == pytest.approx(accuracy["accuracy"].iloc[0])
