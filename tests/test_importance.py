"""Importance scores against plain loop versions; exact ablation equality; the sweep, CLI and crossref."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import encode_tiny_task
from scipy import stats
from typer.testing import CliRunner

from interp.errors import InterpError
from interp.importance.crossref import CrossrefConfig, retained_share, run_crossref
from interp.importance.job import run_importance
from interp.importance.methods import (
    ABLATIONS,
    ImportanceConfig,
    ablation_importance,
    ablation_steps,
    activation_means,
    gradient_importance,
    single_ablation_scores,
)
from interp.store import read_table, write_table
from interp.tasks.evaluation import encode_prompts
from interp.tasks.prompts import PromptConfig, build_prompts


def test_exact_ablation_equals_one_ablation_per_forward(tiny_model, task_file):
    bridge, _ = tiny_model
    encoded = encode_tiny_task(bridge, task_file)
    means = activation_means(bridge, encoded, batch_size=3)
    results = ablation_importance(bridge, encoded, ImportanceConfig(batch_size=5, ablations_per_forward=3), means=means)
    changed = 0.0
    for kind in ABLATIONS:
        for layer in range(bridge.cfg.n_layers):
            for head in [*range(bridge.cfg.n_heads), None]:
                reference = single_ablation_scores(bridge, encoded, layer, head, kind, means, batch_size=4)
                got = results[kind]["ffn_logprob"][layer] if head is None else results[kind]["head_logprob"][layer,
                                                                                                             head]
                assert torch.allclose(got, reference, atol=1e-5, rtol=0), (kind, layer, head)
                changed = max(changed, float((got - results[kind]["clean_logprob"]).abs().max()))
    assert changed > 1e-3  # the ablations really change something


def _keep_in(stored, key):
    """A hook that records its activation under ``key`` and passes it on."""
    def hook_fn(x, hook):
        stored[key] = x
        return x
    return hook_fn


def _plain_gradient(bridge, encoded):
    """Loop version: one sequence at a time, one head at a time."""
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    head, ffn, n_tokens = np.zeros((n_layers, n_heads)), np.zeros(n_layers), 0
    for sequence in encoded.gold_sequence.tolist():
        tokens = torch.tensor([encoded.tokens[sequence]])
        start = encoded.context_lengths[sequence]
        stored = {}
        hooks = [(f"blocks.{layer}.attn.hook_z", _keep_in(stored, ("z", layer))) for layer in range(n_layers)]
        hooks += [(f"blocks.{layer}.hook_mlp_out", _keep_in(stored, ("m", layer))) for layer in range(n_layers)]
        with torch.enable_grad():
            logits = bridge.run_with_hooks(tokens, fwd_hooks=hooks, return_type="logits")[0]
            log_probs = torch.log_softmax(logits, -1)
            loss = -torch.stack([log_probs[p - 1, tokens[0, p]] for p in range(start, tokens.shape[1])]).mean()
            keys = list(stored)
            grads = dict(zip(keys, torch.autograd.grad(loss, [stored[k] for k in keys]), strict=True))
        for layer in range(n_layers):
            for h in range(n_heads):
                for position in range(tokens.shape[1]):
                    z_dot_grad = stored[("z", layer)][0, position, h].detach() @ grads[("z", layer)][0, position, h]
                    head[layer, h] += abs(float(z_dot_grad))
            for position in range(tokens.shape[1]):
                ffn[layer] += abs(float(stored[("m", layer)][0, position].detach() @ grads[("m", layer)][0, position]))
        n_tokens += tokens.shape[1]
    return head / n_tokens, ffn / n_tokens


def test_gradient_importance_matches_plain_loop(tiny_model, task_file):
    bridge, _ = tiny_model
    encoded = encode_tiny_task(bridge, task_file, items=3)
    scores = gradient_importance(bridge, encoded, batch_size=2)
    head, ffn = _plain_gradient(bridge, encoded)
    assert np.allclose(scores["head_gradient"].numpy(), head, rtol=1e-4, atol=1e-7)
    assert np.allclose(scores["ffn_gradient"].numpy(), ffn, rtol=1e-4, atol=1e-7)
    assert (scores["head_gradient"] > 0).all()


def test_attribution_tracks_exact_mean_ablation(tiny_models, task_file):
    bridge, _ = tiny_models["llama"]
    encoded = encode_tiny_task(bridge, task_file, items=6, choices=4)
    scores = gradient_importance(bridge, encoded, batch_size=4)
    results = ablation_importance(bridge, encoded, ImportanceConfig(ablations=("mean",), batch_size=8))["mean"]
    gold = encoded.gold_sequence
    clean_loss = -(results["clean_logprob"][gold] / results["n_tokens"][gold]).mean()
    exact = -(results["head_logprob"][..., gold] / results["n_tokens"][gold]).mean(-1) - clean_loss
    rho = stats.spearmanr(scores["head_attribution"].flatten(), exact.flatten()).statistic
    assert np.isfinite(scores["head_attribution"]).all() and rho > 0.3


def test_sweep_writes_resumes_and_cli_reports_bad_input(tiny_model_dirs, tiny_models, task_file, tmp_path):
    from interp.cli import app

    bridge_record = tiny_models["gpt2"]
    config = ImportanceConfig(max_items=2, batch_size=8, ablations=("zero",), n_choices=2)
    table = run_importance(bridge_record, [str(task_file)], [0, 1], "ablation", tmp_path, config,
                           progress=False).tables["importance"]
    assert set(table["shots"]) == {0, 1} and set(table["metric"]) >= {"zero_accuracy_delta", "zero_loss_delta"}
    done = tmp_path / "importance" / "succ__1shot__ablation.parquet"
    stamp = done.stat().st_mtime_ns
    run_importance(bridge_record, [str(task_file)], [0, 1], "ablation", tmp_path, config, progress=False)
    assert done.stat().st_mtime_ns == stamp  # resumed: nothing recomputed
    assert len(read_table(tmp_path / "task_accuracy")) == 2
    mean_config = ImportanceConfig(max_items=3, batch_size=8, ablations=("mean",), n_choices=2)
    for method in ("attribution", "ablation"):
        run_importance(bridge_record, [str(task_file)], [1], method, tmp_path / "agree", mean_config, progress=False)
    agreement = read_table(tmp_path / "agree" / "attribution_vs_ablation")
    assert "head" in set(agreement["component"]) and agreement["spearman"].between(-1, 1).all()  # 2 FFNs: too few
    runner = CliRunner()
    for arguments, message in ((["--method", "magic"], "choose one of: gradient, ablation, attribution"),
                               (["--tasks", "nope"], "unknown task 'nope'"),
                               (["--shots", "30"], "too few for 30 shots"),
                               (["--method", "ablation", "--layers", "1-0"], "'1-0' is not an increasing range"),
                               (["--method", "ablation", "--layers", "5", "--shots", "0"], "layer 5 does not exist")):
        result = runner.invoke(app, ["importance", "--model", str(tiny_model_dirs["gpt2"]), "--tasks", str(task_file),
                                     "--out", str(tmp_path / "cli"), *arguments])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["importance", "--model", str(tiny_model_dirs["gpt2"]), "--tasks", str(task_file),
                                 "--shots", "0", "--method", "gradient", "--max-items", "3", "--out",
                                 str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "importance.parquet").exists()
    result = runner.invoke(app,
                           ["importance", "--model", str(tiny_model_dirs["gpt2"]), "--tasks", str(task_file), "--shots",
                            "0",
                                 "--method", "ablation", "--ablations", "zero", "--layers", "1", "--max-items", "2",
                                 "--out", str(tmp_path / "one_layer")])
    assert result.exit_code == 0, result.output
    ablated = read_table(tmp_path / "one_layer" / "importance").query("metric == 'zero_loss_delta'")
    assert ablated.dropna(subset=["value"])["layer"].unique().tolist() == [1]  # layer 0 left unmeasured (NaN)
    assert ablated.query("layer == 0")["value"].isna().all()


def _fake_results(folder, n_layers=4, n_heads=5, seed=0):
    rng = np.random.default_rng(seed)
    layers, heads = np.meshgrid(range(n_layers), range(n_heads), indexing="ij")
    rows = []
    for metric in ("prefix_matching", "copying"):
        values = rng.random(n_layers * n_heads)
        rows.append(pd.DataFrame({"model": "m", "layer": layers.ravel(), "head": heads.ravel(), "metric": metric,
                                  "mean": values, "var": 0.0, "ci_low": values, "ci_high": values, "n_seeds": 3}))
    write_table(pd.concat(rows), folder / "induction_scores")
    importance = []
    for task in ("a", "b"):
        for shots in (0, 5):
            values = rng.random(n_layers * n_heads)
            importance.append(pd.DataFrame({"model": "m", "task": task, "shots": shots, "method": "gradient",
                                            "component": "head", "layer": layers.ravel(), "head": heads.ravel(),
                                            "metric": "gradient", "value": values}))
            importance.append(pd.DataFrame({"model": "m", "task": task, "shots": shots, "method": "gradient",
                                            "component": "ffn", "layer": range(n_layers), "head": -1,
                                            "metric": "gradient", "value": rng.random(n_layers)}))
    write_table(pd.concat(importance), folder / "importance")


def test_crossref_against_plain_computations(tmp_path):
    _fake_results(tmp_path)
    tables = run_crossref(tmp_path, CrossrefConfig(top_k=5), figures=False)
    importance = read_table(tmp_path / "importance")
    induction = read_table(tmp_path / "induction_scores")
    heads = importance[(importance.component == "head") & (importance.task == "b") & (importance.shots == 5)]
    merged = heads.merge(induction[induction.metric == "copying"], on=["layer", "head"])
    row = tables["crossref_correlations"].query("task == 'b' and shots == 5 and induction_metric == 'copying'")
    assert row["spearman"].item() == pytest.approx(stats.spearmanr(merged["value"], merged["mean"]).statistic)
    top_important = set(merged.nlargest(5, "value")[["layer", "head"]].itertuples(index=False))
    top_induction = set(merged.nlargest(5, "mean")[["layer", "head"]].itertuples(index=False))
    overlap = tables["crossref_overlap"].query("task == 'b' and shots == 5 and induction_metric == 'copying'")
    assert overlap["overlap"].item() == len(top_important & top_induction)
    both = tables["crossref_both_heads"].query("task == 'b' and shots == 5 and induction_metric == 'copying'")
    assert set(both[["layer", "head"]].itertuples(index=False)) == top_important & top_induction
    assert 0 < overlap["p_value"].item() <= 1
    matrix = tables["crossref_rank_matrix"].set_index("key")
    assert np.allclose(np.diag(matrix.to_numpy()), 1.0) and matrix.shape == (4, 4)
    shares = tables["crossref_layers"].groupby(["task", "shots", "component"])["share"].sum()
    assert np.allclose(shares, 1.0)


def test_retained_share_is_monotone_and_complete():
    rng = np.random.default_rng(1)
    curve = retained_share(rng.random(30), rng.normal(size=30), steps=10)["retained"].to_numpy()
    assert curve[0] == pytest.approx(1.0) and curve[-1] == pytest.approx(0.0)
    assert (np.diff(curve) <= 1e-12).all()


def test_crossref_bad_metric_lists_choices(tmp_path):
    _fake_results(tmp_path)
    with pytest.raises(InterpError, match="choose one of: gradient"):
        run_crossref(tmp_path, CrossrefConfig(importance_metric="nope"), figures=False)


@pytest.mark.slow
def test_real_model_importance_is_finite_and_ablation_exact(smollm2):
    bridge, _ = smollm2
    from interp.tasks.prompts import load_task

    prompts = build_prompts(load_task("country_capital"), 1, PromptConfig(max_items=2, n_choices=2))
    encoded = encode_prompts(bridge.tokenizer, prompts)
    scores = gradient_importance(bridge, encoded, batch_size=2)
    assert scores["head_gradient"].shape == (30, 9) and torch.isfinite(scores["head_gradient"]).all()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine two threads mostly wait for each other
    try:
        results = ablation_importance(bridge, encoded, ImportanceConfig(ablations=("zero",), batch_size=4,
                                                                        layers=(0, 20)))["zero"]
    finally:
        torch.set_num_threads(threads)
    assert torch.isnan(results["head_logprob"][1]).all()  # layers not asked for are not computed
    for layer, head in ((0, 3), (20, 8)):
        reference = single_ablation_scores(bridge, encoded, layer, head, "zero", batch_size=4)
        assert torch.allclose(results["head_logprob"][layer, head], reference, atol=1e-5, rtol=0)


def test_ablation_deltas_carry_the_paired_interval_of_their_items(tiny_models, task_file):
    from interp.importance.methods import ablation_importance, importance_table
    from interp.stats import paired_difference
    from interp.tasks.evaluation import multiple_choice_metrics

    bridge, _ = tiny_models["gpt2"]
    config = ImportanceConfig(batch_size=8, ablations=("zero",))
    encoded = encode_tiny_task(bridge, task_file, shots=1, items=6)
    table, _ = importance_table(bridge, encoded, "ablation", config)
    results = ablation_importance(bridge, encoded, config)["zero"]
    clean = multiple_choice_metrics(results["clean_logprob"], results["n_tokens"], encoded)
    ablated = multiple_choice_metrics(results["head_logprob"], results["n_tokens"], encoded)
    for metric, name, method in (("zero_accuracy_delta", "correct", "paired mcnemar"),
                                 ("zero_loss_delta", "gold_loss", "paired bootstrap")):
        row = table.query(f"metric == '{metric}' and component == 'head' and layer == 1 and head == 0").iloc[0]
        plain = paired_difference(ablated[name][1, 0].numpy(), clean[name].numpy())  # one head by hand
        assert row["value"] == pytest.approx(plain.mean_difference)
        assert (row["ci_low"], row["ci_high"],
                row["p_value"]) == pytest.approx((plain.ci_low, plain.ci_high, plain.p_value))
        assert row["interval_method"] == method and row["ci_low"] <= row["value"] <= row["ci_high"]


def test_ablation_reports_progress_once_per_layer_kind_and_batch_of_prompts(tiny_model, task_file):
    bridge, _ = tiny_model
    encoded = encode_tiny_task(bridge, task_file)
    assert encoded.n_sequences > encoded.n_items  # several choices a prompt: batches count prompts, not sequences
    config = ImportanceConfig(batch_size=3, ablations=("zero", "mean"))
    calls = []
    ablation_importance(bridge, encoded, config, progress=calls.append)
    assert len(calls) == ablation_steps(encoded, config, bridge.cfg.n_layers)
