"""Explicit estimators: gradient importance over all tokens or the answer positions, the BOS policy of task
prompts, paired pruning thresholds, and the cross-reference per estimator with q-values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import encode_tiny_task
from scipy import stats

from interp.errors import InterpError
from interp.importance.methods import ImportanceConfig, gradient_importance
from interp.pruning.thresholds import encode_items, paired_effects, threshold_table
from interp.tasks.evaluation import encode_prompts
from interp.tasks.prompts import PromptConfig, build_prompts, read_task_file


def _plain_answer_gradient(bridge, encoded):
    """Loop version of the answer-position estimator: one gold sequence, one head, one answer position at a time."""
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    head, n_positions = np.zeros((n_layers, n_heads)), 0
    for sequence in encoded.gold_sequence.tolist():
        tokens = torch.tensor([encoded.tokens[sequence]])
        start = encoded.context_lengths[sequence]
        stored = {}
        hooks = [
            (
                f"blocks.{layer}.attn.hook_z",
                lambda z, hook, layer=layer, stored=stored: stored.__setitem__(layer, z) or z,
            )
            for layer in range(n_layers)
        ]
        with torch.enable_grad():
            log_probs = torch.log_softmax(bridge.run_with_hooks(tokens, fwd_hooks=hooks, return_type="logits")[0], -1)
            loss = -torch.stack(
                [log_probs[position - 1, tokens[0, position]] for position in range(start, tokens.shape[1])]
            ).mean()
            grads = torch.autograd.grad(loss, [stored[layer] for layer in range(n_layers)])
        for position in range(start - 1, tokens.shape[1] - 1):  # the positions whose logits predict an answer token
            for layer in range(n_layers):
                for index in range(n_heads):
                    head[layer, index] += abs(
                        float(stored[layer][0, position, index].detach() @ grads[layer][0, position, index])
                    )
            n_positions += 1
    return head / n_positions


def test_answer_position_gradient_matches_a_plain_loop(tiny_model, task_file):
    bridge, _ = tiny_model
    encoded = encode_tiny_task(bridge, task_file, items=3)
    answer = gradient_importance(bridge, encoded, batch_size=2, positions="answer")
    assert np.allclose(answer["head_gradient"].numpy(), _plain_answer_gradient(bridge, encoded), rtol=1e-4, atol=1e-7)
    every = gradient_importance(bridge, encoded, batch_size=2, positions="all")
    assert not np.allclose(answer["head_gradient"].numpy(), every["head_gradient"].numpy())
    # attribution estimates mean ablation at every position, whichever tokens the gradient scores sum over
    assert torch.allclose(answer["head_attribution"], every["head_attribution"])


def test_gradient_positions_are_checked():
    with pytest.raises(InterpError, match="unknown gradient positions 'last'; choose one of: all, answer"):
        ImportanceConfig(gradient_positions="last")


def test_estimator_choices_name_their_results():
    assert ImportanceConfig().result_label("gradient") == "gradient"
    assert ImportanceConfig(gradient_positions="answer").result_label("gradient") == "gradient-answer"
    assert ImportanceConfig(gradient_positions="answer", prepend_bos=False).result_label("ablation") == "ablation-nobos"
    assert ImportanceConfig(gradient_positions="answer").estimator("ablation") == "exact"


def test_bos_policy_matches_the_bridge_tokenizer_or_leaves_bos_out(tiny_models, task_file):
    task = read_task_file(task_file)
    for bridge, _ in tiny_models.values():
        with_bos = encode_prompts(bridge.tokenizer, build_prompts(task, 1, PromptConfig(max_items=3)))
        without = encode_prompts(bridge.tokenizer, build_prompts(task, 1, PromptConfig(max_items=3, prepend_bos=False)))
        prompts = build_prompts(task, 1, PromptConfig(max_items=3))
        for prompt, sequence in zip(prompts, with_bos.gold_sequence.tolist(), strict=True):
            context = with_bos.tokens[sequence][: with_bos.context_lengths[sequence]]
            assert list(context) == list(
                bridge.tokenizer(prompt.context)["input_ids"]
            )  # what the bridge's tokenizer adds
        assert all(tokens[0] == bridge.tokenizer.bos_token_id for tokens in with_bos.tokens)
        assert all(len(a) == len(b) + 1 and a[1:] == b for a, b in zip(with_bos.tokens, without.tokens, strict=True))


# --------------------------------------------------------------------------- paired thresholds


def _cells(baseline: list[int], pruned: dict[int, list[int]], task: str = "t") -> list[dict]:
    rows = [
        {
            "ranking": "own",
            "shots": 0,
            "task": task,
            "percent": 0,
            "accuracy": float(np.mean(baseline)),
            "n_items": len(baseline),
            "item_correct": encode_items(baseline),
        }
    ]
    for percent, items in pruned.items():
        rows.append(
            {
                "ranking": "own",
                "shots": 0,
                "task": task,
                "percent": percent,
                "accuracy": float(np.mean(items)),
                "n_items": len(items),
                "item_correct": encode_items(items),
            }
        )
    return rows


def test_paired_interval_is_narrower_than_unpaired_bounds():
    # 200 items; pruning 10% flips 1 right answer to wrong, 20% flips 3, 30% flips 30
    baseline = [1] * 150 + [0] * 50
    flip = lambda count: [0] * count + [1] * (150 - count) + [0] * 50  # noqa: E731
    rows = _cells(baseline, {10: flip(1), 20: flip(3), 30: flip(30)})
    paired = threshold_table(pd.DataFrame(rows), tolerance=5.0).set_index("task").loc["t"]
    unpaired = (
        threshold_table(pd.DataFrame(rows).drop(columns="item_correct"), tolerance=5.0).set_index("task").loc["t"]
    )
    assert paired["prunable_percent"] == unpaired["prunable_percent"] == 20
    assert paired["interval_method"].startswith("paired") and unpaired["interval_method"].startswith("unpaired")
    # the same items answer both times: losing 3 of 200 is confidently within 5 points only when paired
    assert paired["prunable_ci_low"] == 20 and unpaired["prunable_ci_low"] == 0


def test_paired_effects_by_hand_and_the_average_weighs_tasks_equally():
    rows = _cells([1, 1, 1, 1], {10: [1, 1, 0, 0]}, task="a") + _cells([1] * 8, {10: [1] * 8}, task="b")
    effects = paired_effects(pd.DataFrame(rows)).set_index("task")
    assert effects.loc["a", "accuracy_change"] == pytest.approx(-0.5)
    assert effects.loc["a", "p_value"] == pytest.approx(0.5)  # 2 discordant pairs, both losses: 2 * (1/2)^2
    assert effects.loc["b", "accuracy_change"] == 0.0
    assert effects.loc["average", "accuracy_change"] == pytest.approx(-0.25)  # (-0.5 + 0) / 2, not -2/12
    assert effects.loc["average", "interval_method"].startswith("paired: bootstrap")


# --------------------------------------------------------------------------- both estimators, end to end


@pytest.fixture(scope="module")
def toy():
    from interp.models.loading import load_model

    return load_model("toy-attn-2l", device="cpu")


def test_crossref_and_report_keep_estimators_apart(toy, tmp_path):
    from interp.importance.crossref import CrossrefConfig, run_crossref
    from interp.importance.job import run_importance
    from interp.induction.job import InductionConfig, run_induction
    from interp.output.report import findings

    run_induction(
        toy,
        tmp_path,
        InductionConfig(num_seeds=5, protocol="olsson"),
        figures=False,
        progress=False,
        echo=lambda line: None,
    )
    for positions in ("all", "answer"):
        config = ImportanceConfig(max_items=4, gradient_positions=positions)
        run_importance(
            toy,
            "antonyms,country_capital",
            [0, 1],
            "gradient",
            tmp_path,
            config,
            progress=False,
            echo=lambda line: None,
        )
    importance = pd.read_parquet(tmp_path / "importance.parquet")
    assert set(importance["estimator"]) == {"all", "answer"} and importance["prepend_bos"].all()
    assert (tmp_path / "importance" / "antonyms__1shot__gradient-answer.parquet").exists()
    tables = run_crossref(tmp_path, CrossrefConfig(top_k=4), figures=False)
    correlations = tables["crossref_correlations"]
    assert set(correlations["estimator"]) == {"all", "answer"} and len(correlations) == 2 * (4 + 1) * 2
    for _, part in correlations.groupby("estimator"):  # one BH family per estimator
        assert np.allclose(part["q_value"], stats.false_discovery_control(part["p_value"]))
    assert (tables["crossref_overlap"]["test"] == "hypergeometric (exact)").all()
    agreement = tables["crossref_estimators"]
    assert set(agreement["task"]) == {"antonyms", "country_capital", "aggregate"}
    sentences = findings(tmp_path)["importance"]
    assert any(
        "rests on gradient importance summed over every token" in line
        and "answer positions only the same conclusion" in line
        for line in sentences
    )
    assert any("Benjamini-Hochberg" in line for line in sentences)
    assert any(line.startswith("The all and answer estimators rank heads alike") for line in sentences)


def test_method_agreement_orients_measures_and_matches_scipy_per_task():
    """Every pair of importance measures is compared on the (task, shots) both measured, with accuracy changes
    negated (removing a needed head lowers accuracy), equal to scipy's Spearman on the oriented values."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    from interp.importance.crossref import method_agreement

    generator = np.random.default_rng(0)
    gradient, harm = generator.random(12), generator.random(12)
    base = dict(component="head", layer=np.repeat([0, 1, 2], 4), head=np.tile([0, 1, 2, 3], 3), prepend_bos=True)
    table = pd.concat([
        pd.DataFrame(base | dict(method="gradient", estimator="all", metric="gradient", value=gradient, task="a",
                                 shots=1)),
        pd.DataFrame(base | dict(method="gradient", estimator="all", metric="gradient", value=gradient, task="b",
                                 shots=5)),
        pd.DataFrame(base | dict(method="ablation", estimator="exact", metric="zero_accuracy_delta", value=-harm,
                                 task="a", shots=1)),
    ])
    rows = method_agreement(table, k=3)
    assert rows[["task", "shots"]].values.tolist() == [["a", 1]]  # b/5 has one measure only
    assert rows["spearman"].iloc[0] == pytest.approx(stats.spearmanr(gradient, harm).statistic)
    top = lambda values: set(np.argsort(-values)[:3])  # noqa: E731
    assert rows["top_k_overlap"].iloc[0] == len(top(gradient) & top(harm))
    assert rows["expected_overlap"].iloc[0] == pytest.approx(9 / 12)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_overlap_with_ties_equals_the_average_over_every_tie_breaking(k):
    """Discrete measures (accuracy changes) tie; the overlap is the mean over all ways of breaking them."""
    import itertools

    import numpy as np

    from interp.importance.crossref import expected_top_k_overlap

    left, right = np.array([0.5, 0.2, 0.2, 0.2, 0.0]), np.array([0.1, 0.1, 0.3, 0.1, 0.1])

    def top(values, priority):  # ties broken by a random priority
        return set(sorted(range(len(values)), key=lambda index: (-values[index], priority[index]))[:k])

    orders = list(itertools.permutations(range(5)))
    brute = np.mean([len(top(left, a) & top(right, b)) for a in orders for b in orders])
    assert expected_top_k_overlap(left, right, k) == pytest.approx(brute)
