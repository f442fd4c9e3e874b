"""The causal test: stacked head-set ablation against plain loops, the toy model's known circuit, the resumable sweep.

Tolerances: 1e-5 on summed log-probabilities and 1e-5 on mean losses (float32 models; the stacked,
resumed, shared-context forward only reorders the same arithmetic).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import encode_tiny_task

from interp.errors import InterpError
from interp.hooks import heads_removed_hooks, z_hook
from interp.importance.causal import (
    head_count,
    head_set_scores,
    random_heads_mask,
    repeated_loss_by_head_set,
    top_heads_mask,
)
from interp.importance.causal_sweep import CausalConfig, run_causal
from interp.importance.methods import activation_means
from interp.induction.scores import repeated_sequence_loss
from interp.induction.sequences import SequenceConfig

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def toy():
    from interp.models.loading import load_model

    return load_model("toy-attn-2l", device="cpu")


def _loop_scores(bridge, encoded, heads, means=None) -> torch.Tensor:
    """Plain loop: one sequence at a time, its own full forward, the heads' z set to 0 (or the mean) one by one."""
    hooks = []
    for layer, head in heads:
        def remove(z, hook, layer=layer, head=head):
            z = z.clone()
            z[:, :, head] = 0.0 if means is None else means[0][layer, head]
            return z
        hooks.append((z_hook(layer), remove))
    out = torch.zeros(encoded.n_sequences, dtype=torch.float64)
    for index, tokens in enumerate(encoded.tokens):
        with torch.no_grad():
            logits = bridge.run_with_hooks(torch.tensor([tokens]), fwd_hooks=hooks, return_type="logits")[0]
        log_probs = torch.log_softmax(logits.double(), dim=-1)
        start = encoded.context_lengths[index]
        out[index] = sum(float(log_probs[position - 1, tokens[position]]) for position in range(start, len(tokens)))
    return out


def _sets(bridge) -> torch.Tensor:
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    sets = torch.zeros(4, n_layers, n_heads, dtype=torch.bool)
    sets[1, 1, 0] = True  # one head late: the resumed run starts at layer 1
    sets[2, 0, 1] = sets[2, 1, 3] = True
    sets[3, 0] = True  # a whole layer
    return sets


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_head_set_scores_equal_a_plain_loop(tiny_models, task_file, architecture):
    bridge, _ = tiny_models[architecture]
    encoded = encode_tiny_task(bridge, task_file, shots=2, items=4, choices=3)
    sets = _sets(bridge)
    means = activation_means(bridge, encoded, batch_size=3)
    for ablation, fill in (("zero", None), ("mean", means)):
        got = head_set_scores(bridge, encoded, sets, ablation, fill, batch_size=3, sets_per_forward=2)
        for index, mask in enumerate(sets):
            reference = _loop_scores(bridge, encoded, torch.nonzero(mask).tolist(), fill)
            assert torch.allclose(got[index], reference, atol=TOLERANCE, rtol=0), (ablation, index)
        assert float((got[3] - got[0]).abs().max()) > 1e-3  # removing a layer's heads changes the scores


def test_repeated_loss_equals_repeated_sequence_loss_with_heads_removed(tiny_models):
    bridge, _ = tiny_models["opt"]
    config = SequenceConfig(protocol="olsson", num_seeds=3)
    sets = _sets(bridge)
    got, seeds = repeated_loss_by_head_set(bridge, sets, config, "zero", sets_per_forward=3)
    assert got.shape == (4, 3, 2) and seeds == [0, 1, 2]
    for index, mask in enumerate(sets):
        table = repeated_sequence_loss(bridge, config,
                                       extra_hooks=heads_removed_hooks(bridge,
                                                                       [tuple(pair)
                                                                        for pair in torch.nonzero(mask).tolist()]))
        later = table[table["repeat"] > 1].groupby("seed")["loss"].mean().to_numpy()
        first = table[table["repeat"] == 1].groupby("seed")["loss"].mean().to_numpy()
        assert np.allclose(got[index, :, 1].numpy(), later, atol=TOLERANCE, rtol=0), index
        assert np.allclose(got[index, :, 0].numpy(), first, atol=TOLERANCE, rtol=0), index


def test_head_sets_top_k_random_draws_and_counts():
    scores = np.array([[0.1, 0.9, 0.3], [0.9, 0.2, 0.0]])
    assert top_heads_mask(scores, 2).tolist() == [[False, True, False], [True, False, False]]  # tie: earlier head first
    draws = [random_heads_mask((30, 9), head_count(270, percent), draw=3) for percent in (1, 5, 10, 20)]
    assert [int(mask.sum()) for mask in draws] == [3, 14, 27, 54]
    assert all((small <= large).all() for small, large in itertools.pairwise(draws))  # nested across k, as a ranking is
    assert not np.array_equal(random_heads_mask((30, 9), 27, draw=0), random_heads_mask((30, 9), 27, draw=1))
    with pytest.raises(InterpError, match="percent"):
        head_count(270, 0)


def _gain(losses: torch.Tensor) -> torch.Tensor:
    """In-context gain per head set: loss on repeat 1 minus loss on repeats 2-4, mean over sequences."""
    return (losses[:, :, 0] - losses[:, :, 1]).mean(1)


def test_toy_known_circuit(toy):
    """toy-attn-2l: L1H2 is an induction head fed by the previous-token head L0H0 (interp/data/models/toy-attn-2l).

    Removing L1H2 cuts the in-context gain on repeated tokens; removing a layer-0 head other than
    L0H0 does not; removing L0H0, or all four layer-1 heads (the top 50% by prefix matching, all
    strong induction heads in this model), removes the gain almost entirely.
    """
    bridge, _ = toy
    sets = torch.zeros(6, 2, 4, dtype=torch.bool)
    sets[1, 1, 2] = True  # L1H2
    sets[2, 0, 1], sets[3, 0, 3] = True, True  # layer-0 heads outside the circuit
    sets[4, 0, 0] = True  # the previous-token head
    sets[5, 1] = True  # every layer-1 head
    losses, _ = repeated_loss_by_head_set(bridge, sets, SequenceConfig(protocol="olsson", num_seeds=6), "zero")
    gain = _gain(losses)
    assert gain[0] > 6.0  # the clean model copies from context: the loss falls by several nats after repeat 1
    assert gain[0] - gain[1] > 0.3  # L1H2 matters
    assert float((losses[1, :, 1] - losses[0, :, 1]).mean()) > 0.3  # its removal raises the loss on repeats 2-4
    assert abs(float((losses[1, :, 0] - losses[0, :, 0]).mean())) < 0.15  # but not on the first occurrence
    assert (gain[2:4] > gain[0] - 0.1).all()  # other layer-0 heads leave the gain alone
    assert gain[4] < 1.5 and gain[5] < 1.5  # the circuit's bottleneck, or all induction heads: no gain left


def _small_config(**changes) -> CausalConfig:
    settings = dict(percents=(10, 50), n_random=2, max_items=6, repeat_seeds=2, n_resamples=200, batch_size=4)
    return CausalConfig(**{**settings, **changes})


def _induction_table(folder: Path, prefix: np.ndarray, copying: np.ndarray) -> None:
    from interp.store import write_table

    rows = []
    for metric, grid in (("prefix_matching", prefix), ("copying", copying)):
        for layer, head in np.ndindex(grid.shape):
            value = grid[layer, head]
            rows.append({"model": "toy-attn-2l", "layer": layer, "head": head, "metric": metric, "mean": value,
                         "var": 0.0,
                         "ci_low": value, "ci_high": value, "n_seeds": 4})
    write_table(pd.DataFrame(rows), folder / "induction_scores")


def test_sweep_writes_tables_and_resumes(toy, tmp_path, monkeypatch):
    prefix = np.array([[0.0, 0.02, 0.0, 0.01], [0.80, 0.77, 0.81, 0.76]])
    _induction_table(tmp_path, prefix, prefix[::-1].copy())
    config = _small_config()
    tables = run_causal("toy-attn-2l", "antonyms", [1], tmp_path, config, bridge_record=toy, show_progress=False,
                        figures=False)
    assert {"causal_items", "causal_effects", "causal_vs_random", "causal_repeated"} <= set(tables)
    cells = sorted((tmp_path / "causal" / "cells").glob("*.json"))
    # clean + 2 ablations x 2 percents x (3 rankings + 2 draws)
    assert len(cells) == 1 + 2 * 2 * 5
    top = json.loads(next(path for path in cells if "prefix_matching__p10" in path.name
                          and "zero" in path.name).read_text())
    assert top["heads"] == [[1, 2]] and top["k"] == 1 and len(top["correct"]) == 6
    versus = tables["causal_vs_random"]
    assert set(versus["task"]) == {"antonyms", "all"} and versus["n_draws"].eq(2).all()
    assert versus[["difference_ci_low", "difference_ci_high"]].notna().all().all()
    meta = json.loads((tmp_path / "causal.json").read_text())
    assert "McNemar" in meta["estimators"]["accuracy_interval"]

    # A rerun with every cell on disk loads no model and rewrites nothing.
    import interp.models.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: pytest.fail("the model was loaded"))
    stamps = {path: path.stat().st_mtime_ns for path in cells}
    again = run_causal("toy-attn-2l", "antonyms", [1], tmp_path, config, show_progress=False, figures=False)
    assert {path: path.stat().st_mtime_ns for path in cells} == stamps
    pd.testing.assert_frame_equal(again["causal_effects"], tables["causal_effects"])

    # Tabulating only computes nothing, even with a cell missing.
    lost = next(path for path in cells if "random__p50__d1" in path.name and "mean" in path.name)
    before = json.loads(lost.read_text())
    lost.unlink()
    partial = run_causal("toy-attn-2l", "antonyms", [1], tmp_path, config, show_progress=False, figures=False,
                         compute=False)
    assert not lost.exists() and len(partial["causal_items"]) == len(tables["causal_items"]) - 6

    # One lost cell is recomputed alone, with the same numbers.
    run_causal("toy-attn-2l", "antonyms", [1], tmp_path, config, bridge_record=toy, show_progress=False, figures=False)
    assert json.loads(lost.read_text())["gold_logprob"] == pytest.approx(before["gold_logprob"], abs=TOLERANCE)
    assert all(path.stat().st_mtime_ns == stamps[path] for path in cells if path != lost)

    # New induction scores change the prefix-matching sets: exactly those cells are redone.
    _induction_table(tmp_path, prefix[:, ::-1].copy(), prefix[::-1].copy())
    run_causal("toy-attn-2l", "antonyms", [1], tmp_path, config, bridge_record=toy, show_progress=False, figures=False)
    redone = {path.name for path in cells if path.stat().st_mtime_ns != stamps[path] and path != lost}
    assert redone and all("prefix_matching" in name for name in redone)


def test_missing_induction_scores_is_a_clear_error(tmp_path):
    with pytest.raises(InterpError, match="need induction_scores .* run `interp induction"):
        run_causal("toy-attn-2l", "antonyms", [0], tmp_path, _small_config(), show_progress=False)


def test_report_and_figures_from_the_tables(toy, tmp_path):
    from interp.output.catalogue import collect_figures
    from interp.output.report import findings

    prefix = np.array([[0.0, 0.02, 0.0, 0.01], [0.80, 0.77, 0.81, 0.76]])
    _induction_table(tmp_path, prefix, prefix)
    run_causal("toy-attn-2l", "antonyms", [0], tmp_path,
               _small_config(ablations=("zero",), rankings=("prefix_matching",)),
               bridge_record=toy, show_progress=False, figures=False)
    entries = [entry for entry in collect_figures(tmp_path) if entry.section == "causal"]
    assert {entry.name for entry in entries} == {"causal_accuracy", "causal_gold_logprob", "causal_repeated_loss"}
    sentences = findings(tmp_path)["causal"]
    assert any("top 10% (1) heads by prefix matching" in sentence for sentence in sentences)
    assert any("repeats 2-4" in sentence for sentence in sentences)
    across = [sentence for sentence in sentences if sentence.startswith("Across k (0-shot, zero)")]
    assert len(across) == 1 and "10% (1): " in across[0] and "50% (4): " in across[0], sentences
    assert not any("normalises each attention" in sentence for sentence in sentences)  # a Llama-class toy

    # The same tables from a model with a norm on each attention output (Gemma 2/3): zero rows get the caveat.
    from interp.output.comparison import comparison_table
    from interp.store import read_json, write_json

    metadata = read_json(tmp_path / "causal.json")
    assert metadata["model"]["attention_output_norm"] is False
    write_json({**metadata, "model": {**metadata["model"], "attention_output_norm": True,
                                      "architecture": "Gemma3ForCausalLM"}}, tmp_path / "causal.json")
    sentences = findings(tmp_path)["causal"]
    assert any(sentence.startswith("Gemma3ForCausalLM normalises each attention block's output")
               for sentence in sentences)
    causal_rows = comparison_table([tmp_path]).query("section == 'causal test' and quantity.str.contains('zero')")
    assert causal_rows["text"].str.contains("read the mean-ablation row").any()


def test_norms_on_the_attention_output_are_told_apart_from_llamas_misnamed_one():
    """Gemma 3 normalises each attention output (zeroing heads rescales the rest); Llama's
    post_attention_layernorm is the MLP's input norm, not one of those."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    from interp.models.structure import normalises_attention_output

    sizes = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1)
    assert normalises_attention_output(Gemma3ForCausalLM(Gemma3TextConfig(head_dim=8, **sizes)))
    assert not normalises_attention_output(LlamaForCausalLM(LlamaConfig(**sizes)))


def test_runs_split_by_shots_and_percent_merge_into_the_joint_run(toy, tmp_path):
    from interp.importance.causal_sweep import merge_causal

    prefix = np.array([[0.0, 0.02, 0.0, 0.01], [0.80, 0.77, 0.81, 0.76]])
    parts = {"joint": ([0, 1], (10, 50)), "first": ([0], (10, 50)), "second": ([1], (50,)), "third": ([1], (10,))}
    for name, (shots, percents) in parts.items():
        _induction_table(tmp_path / name, prefix, prefix[::-1].copy())
        run_causal("toy-attn-2l", "antonyms", shots, tmp_path / name, _small_config(percents=percents),
                   bridge_record=toy, show_progress=False, figures=False)
    merged = merge_causal([tmp_path / "first", tmp_path / "second", tmp_path / "third"], tmp_path / "merged",
                          figures=False)
    joint = run_causal("toy-attn-2l", "antonyms", [0, 1], tmp_path / "joint", _small_config(), show_progress=False,
                       figures=False, compute=False)
    order = ["task", "shots", "ablation", "ranking", "percent", "draw", "metric"]
    for name in ("causal_effects", "causal_vs_random"):
        keys = [key for key in order if key in joint[name]]
        expected = joint[name].sort_values(keys).reset_index(drop=True)
        got = merged[name].sort_values(keys).reset_index(drop=True)[expected.columns]
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-4)
    assert {"causal_repeated", "causal_items"} <= set(merged)
    meta = json.loads((tmp_path / "merged" / "causal.json").read_text())
    assert meta["config"]["percents"] == [10, 50] and meta["shots"] == [0, 1] and len(meta["merged_from"]) == 3

    # Runs of other settings, or whose shared cells disagree, are refused with the reason.
    other = tmp_path / "other"
    _induction_table(other, prefix, prefix[::-1].copy())
    run_causal("toy-attn-2l", "antonyms", [0], other, _small_config(seed=1), bridge_record=toy, show_progress=False,
               figures=False)
    with pytest.raises(InterpError, match="ran with seed=1"):
        merge_causal([tmp_path / "first", other], tmp_path / "bad")
    items = pd.read_parquet(tmp_path / "third" / "causal_items.parquet")
    items.loc[0, "gold_logprob"] -= 1.0
    items.to_parquet(tmp_path / "third" / "causal_items.parquet")
    with pytest.raises(InterpError, match="disagree on"):
        merge_causal([tmp_path / "joint", tmp_path / "third"], tmp_path / "bad")
    with pytest.raises(InterpError, match="at least two"):
        merge_causal([tmp_path / "joint"], tmp_path / "bad")


def test_per_task_differences_carry_benjamini_hochberg_q_values_within_each_family():
    from interp.importance.causal_sweep import _with_task_q_values
    from interp.stats import bh_qvalues

    p_values = [0.01, 0.04, 0.03, 0.5, 0.2, 0.02]
    table = pd.DataFrame({"task": ["a", "b", "c"] * 2 + ["all"], "shots": 5, "ablation": "zero", "percent": 10.0,
                          "ranking": ["prefix_matching"] * 3 + ["copying"] * 3 + ["prefix_matching"],
                          "metric": "accuracy", "difference_p_value": p_values + [0.001]})
    q_values = _with_task_q_values(table)["difference_q_value"].to_numpy()
    np.testing.assert_allclose(q_values[:3], bh_qvalues(p_values[:3]))
    np.testing.assert_allclose(q_values[3:6], bh_qvalues(p_values[3:]))
    assert np.isnan(q_values[6])  # the pooled row is one test, not one of many
