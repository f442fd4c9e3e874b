"""Head/FFN pruning against plain loops; thresholds by hand; resumption; bad inputs; the CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import encode_tiny_task
from typer.testing import CliRunner

from interp.errors import InterpError
from interp.pruning.components import PruningConfig, masked_scores, masked_scores_reference, prune_count, pruning_mask
from interp.pruning.job import run_pruning
from interp.pruning.thresholds import prunable_percent, threshold_table
from interp.tasks.evaluation import evaluate_prompts
from interp.tasks.prompts import build_prompts, read_task_file

TOLERANCE = 1e-5  # float32 forwards; stacking copies in one batch changes summation order only




def _loop_mask(scores, percent):
    """The x% lowest scores, one component at a time: repeatedly take the smallest not yet taken."""
    flat = list(np.asarray(scores).ravel())
    count = int(percent * len(flat) // 100)
    taken = set()
    for _ in range(count):
        best = None
        for index, value in enumerate(flat):
            if index not in taken and (best is None or value < flat[best]):
                best = index
        taken.add(best)
    return np.array([index in taken for index in range(len(flat))]).reshape(np.shape(scores))


@pytest.mark.parametrize("shape", [(2, 4), (30, 9), (30,)])
def test_pruning_mask_removes_exactly_the_lowest(shape):
    generator = np.random.default_rng(0)
    scores = generator.random(shape).round(2)  # rounding makes ties, broken by position in both versions
    for percent in range(0, 100, 10):
        mask = pruning_mask(scores, percent)
        assert mask.shape == scores.shape
        assert np.array_equal(mask, _loop_mask(scores, percent)), percent
    nested = [pruning_mask(scores, percent) for percent in range(0, 100, 10)]
    assert all(np.all(small <= large) for small, large in itertools.pairwise(nested))  # x% is inside (x+10)%


def test_prune_count_and_tiebreak():
    assert [prune_count(10, percent) for percent in (0, 10, 30, 70, 90)] == [0, 1, 3, 7, 9]
    mask = pruning_mask(np.array([0.0, 0.0, 1.0]), 34, tiebreak=np.array([2.0, 1.0, 0.0]))
    assert mask.tolist() == [False, True, False]


def test_masked_scores_equal_one_forward_per_mask(tiny_model, task_file):
    bridge, record = tiny_model
    encoded = encode_tiny_task(bridge, task_file, items=3)
    generator = torch.Generator().manual_seed(1)
    head_masks = torch.rand(5, record.n_layers, record.n_heads, generator=generator) < 0.4
    ffn_masks = torch.rand(5, record.n_layers, generator=generator) < 0.5
    head_masks[0], ffn_masks[0] = False, False  # unpruned
    head_masks[3], ffn_masks[3] = head_masks[1], ffn_masks[1]  # a duplicate
    head_masks[4, 0], ffn_masks[4] = False, False  # only a later layer masked: resumes from it
    head_masks[4, 1, 0] = True
    from interp.importance.methods import activation_means

    means = activation_means(bridge, encoded, batch_size=6)
    for ablation in (None, means):
        got = masked_scores(bridge, encoded, head_masks, ffn_masks, ablation, batch_size=4, masks_per_forward=2)
        assert got.shape == (5, encoded.n_sequences)
        for index in range(1, 5):
            reference = masked_scores_reference(bridge, encoded, head_masks[index], ffn_masks[index], ablation,
                                                batch_size=6)
            assert torch.allclose(got[index], reference, atol=TOLERANCE, rtol=0), index
        clean = masked_scores_reference(bridge, encoded, head_masks[0], ffn_masks[0], None, batch_size=6)
        assert torch.allclose(got[0], clean, atol=TOLERANCE, rtol=0)
        assert float((got[1] - got[0]).abs().max()) > 1e-3  # masking changes something


def test_zero_percent_equals_the_unpruned_model(tiny_models, task_file, tmp_path):
    bridge, record = tiny_models["gpt2"]
    config = PruningConfig(max_items=4, n_choices=2, rankings=("own", "random"), n_random=2, percents=(0, 50))
    tables = run_pruning("heads", (bridge, record), [str(task_file)], [2], tmp_path, config, figures=False,
                         progress=False).tables
    table = tables["pruning_heads"]
    unpruned = evaluate_prompts(bridge, build_prompts(read_task_file(task_file), 2, config.prompt_config()),
                                batch_size=3)
    zero = table[table["head_percent"] == 0]
    assert len(zero) == 3 and (zero["heads_removed"] == 0).all()
    assert np.allclose(zero["accuracy"], unpruned["accuracy"]) and np.allclose(zero["loss"], unpruned["loss"],
                                                                               atol=1e-5)
    assert (table[table["head_percent"] == 50]["heads_removed"] == record.n_layers * record.n_heads // 2).all()


def test_sweep_resumes_without_recomputing(tiny_models, task_file, tmp_path, monkeypatch):
    bridge, record = tiny_models["llama"]
    config = PruningConfig(max_items=3, n_choices=2, rankings=("own",), percents=(0, 25, 50))
    first = run_pruning("ffns", (bridge, record), [str(task_file)], [1], tmp_path, config, figures=False,
                        progress=False).tables["pruning_ffns"]
    cells = sorted((tmp_path / "pruning" / "ffns").glob("*/cells/*.json"))
    assert len(cells) == 3
    cells[1].unlink()  # as if the run had stopped before this cell
    import interp.pruning.job as pruning
    import interp.pruning.rankings as rankings

    calls = []
    original = pruning.masked_scores

    def counting(bridge, encoded, head_masks, *args, **kwargs):
        calls.append(len(head_masks))
        return original(bridge, encoded, head_masks, *args, **kwargs)

    monkeypatch.setattr(pruning, "masked_scores", counting)
    monkeypatch.setattr(rankings, "masked_scores", counting)  # the FFN oracle ranking evaluates masks too
    again = run_pruning("ffns", (bridge, record), [str(task_file)], [1], tmp_path, config, figures=False,
                        progress=False).tables["pruning_ffns"]
    # only the missing cell's group, whole, as an uninterrupted run evaluates it (rankings were stored)
    assert calls == [3]
    pd.testing.assert_frame_equal(first.drop(columns="seconds"), again.drop(columns="seconds"))
    calls.clear()
    import interp.models.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *args,
                        **kwargs: pytest.fail("nothing to do, yet a model was loaded"))
    run_pruning("ffns", str(record.name), [str(task_file)], [1], tmp_path, config, device=record.device, figures=False,
                progress=False)  # nothing to do: the key comes from the model's files, no model is loaded
    assert calls == []
    other = PruningConfig(max_items=2, n_choices=2, rankings=("own",), percents=(0, 25, 50))
    changed = run_pruning("ffns", (bridge, record), [str(task_file)], [1], tmp_path, other, figures=False,
                          progress=False).tables["pruning_ffns"]
    assert len(calls) == 2 and (changed["n_items"] == 2).all()  # other settings: ranking and cells recomputed


@pytest.mark.parametrize("percents, accuracy, tolerance, expected", [
    ([0, 10, 20, 30], [0.80, 0.795, 0.78, 0.79], 1.0, 10),  # 20% falls 2 points: stop before, even if 30% recovers
    ([0, 10, 20, 30], [0.80, 0.80, 0.79, 0.70], 1.0, 20),  # exactly 1 point down still counts
    ([0, 10, 20, 30], [0.80, 0.70, 0.80, 0.80], 1.0, 0),
    ([0, 10, 20, 30], [0.80, 0.70, 0.80, 0.80], 10.0, 30),
    ([30, 0, 10], [0.5, 0.6, 0.65], 1.0, 10),  # unsorted input; gains count as within tolerance
])
def test_prunable_percent_by_hand(percents, accuracy, tolerance, expected):
    assert prunable_percent(percents, accuracy, tolerance) == expected


def test_threshold_table_interval_and_average():
    rows = []
    for task, curve in (("a", [0.8, 0.8, 0.5]), ("b", [0.6, 0.6, 0.6])):
        rows += [{"ranking": "own", "shots": 0, "task": task, "percent": percent, "accuracy": value, "n_items": 100}
                 for percent, value in zip([0, 10, 20], curve, strict=True)]
    table = threshold_table(pd.DataFrame(rows), tolerance=1.0).set_index("task")
    assert table.loc["a", "prunable_percent"] == 10 and table.loc["b", "prunable_percent"] == 20
    # average curve 0.7, 0.7, 0.55 -> 10%; its Wilson bounds on n=200 around 0.55 reach 0.62 < 0.69: still 10%
    assert table.loc["average", "prunable_percent"] == 10 and table.loc["average", "n_items"] == 200
    assert table.loc["a", "prunable_ci_low"] == 0 and table.loc["a", "prunable_ci_high"] == 10
    assert table.loc["b", "prunable_ci_high"] == 20


def test_bad_inputs_name_the_value(tiny_models, task_file, tmp_path):
    for bad in ((0, 100), (-5,), ()):
        with pytest.raises(InterpError, match="percent"):
            PruningConfig(percents=bad)
    with pytest.raises(InterpError, match="'best'"):
        PruningConfig(rankings=("best",))
    with pytest.raises(InterpError, match="'median'"):
        PruningConfig(ablation="median")
    with pytest.raises(InterpError, match="shape"):
        pruning_mask(np.ones(4), 10, tiebreak=np.ones(3))
    bridge, record = tiny_models["gpt2"]
    encoded = encode_tiny_task(bridge, task_file, items=2)
    with pytest.raises(InterpError, match=r"\(3, 2, 3\)"):
        masked_scores(bridge, encoded, torch.zeros(3, 2, 3, dtype=torch.bool), torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(InterpError, match="heads only"):
        run_pruning("ffns", (bridge, record), [str(task_file)], [0], tmp_path, PruningConfig(rankings=("copying",)),
                    figures=False, progress=False)
    with pytest.raises(InterpError, match="induction_scores"):
        run_pruning("heads", (bridge, record), [str(task_file)], [0], tmp_path,
                    PruningConfig(rankings=("prefix_matching",), max_items=2, n_choices=2, percents=(0, 10)),
                    figures=False, progress=False)


def test_cli_smoke(tiny_model_dirs, task_file, tmp_path):
    from interp.cli import app

    runner = CliRunner()
    common = ["--model", str(tiny_model_dirs["gpt2"]), "--tasks", str(task_file), "--shots", "1", "--out",
              str(tmp_path),
              "--max-items", "3", "--n-choices", "2", "--no-figures"]
    result = runner.invoke(app,
                           ["prune", "heads", *common, "--percents", "0,50", "--rankings", "own,random", "--n-random",
                            "1"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "pruning_heads.parquet")
    assert set(table["ranking"]) == {"own", "random:0"} and set(table["head_percent"]) == {0, 50}
    assert (tmp_path / "pruning_heads_thresholds.parquet").exists()
    bad = runner.invoke(app, ["prune", "heads", *common, "--percents", "0,150"])
    assert bad.exit_code == 2 and "150" in bad.output
    unknown = runner.invoke(app, ["prune", "everything", *common])
    assert unknown.exit_code == 2 and "everything" in unknown.output


# --------------------------------------------------------------------------- layer dropping and LASER sweeps


def test_layer_sweep_saves_a_pruned_model_equal_to_the_hooks_and_resumes(tiny_model_dirs, tiny_models, task_file,
                                                                         tmp_path):
    from interp.pruning.sweeps import LayerSweepConfig, run_layer_sweep

    bridge, record = tiny_models["gpt2"]
    config = LayerSweepConfig(max_items=3, n_choices=2, text_windows=3, text_length=24)
    tables = run_layer_sweep((bridge, record), [str(task_file)], [1], tmp_path, config, figures=False,
                             progress=False).tables
    sweep = tables["layer_pruning"]
    assert set(sweep["method"]) == {"angular", "baseline"} and set(sweep["n"]) == {0, 1}
    assert sweep[sweep["n"] == 0]["accuracy"].nunique() == 1
    saved = tables["layer_pruning_saved"].iloc[0]
    assert saved["max_logprob_difference_reloaded_vs_hooks"] < 1e-4  # the cut model is the hooked one
    assert saved["n_layers_pruned"] == record.n_layers - 1 and saved["parameters_pruned"] < saved["parameters_original"]
    cells = sorted((tmp_path / "pruning" / "layers").glob("*/cells/*.json"))
    assert len(cells) == 3  # unpruned, angular n=1, baseline n=1
    stamps = [path.stat().st_mtime_ns for path in cells]
    run_layer_sweep((bridge, record), [str(task_file)], [1], tmp_path, config, figures=False, progress=False)
    assert [path.stat().st_mtime_ns for path in cells] == stamps  # nothing recomputed
    assert (tmp_path / "pruning_claims.parquet").exists() and (tmp_path / "layer_pruning_saved.parquet").exists()


def test_laser_cell_equals_a_plain_forward_with_the_swap(tiny_models, task_file):
    from interp.pruning.laser import laser_intervention
    from interp.pruning.sweeps import LaserSweepConfig, _laser_cell
    from interp.tasks.evaluation import score_sequences

    bridge, record = tiny_models["llama"]
    encoded = encode_tiny_task(bridge, task_file, items=3)
    config = LaserSweepConfig(rhos=(0.5, 0.1), matrices=("mlp_gate",), batch_size=4)
    got = _laser_cell(bridge, encoded, 1, "mlp_gate", config)
    for index, rho in enumerate(config.rhos):
        with laser_intervention(bridge, 1, "mlp_gate", rho):
            reference = score_sequences(bridge, encoded, batch_size=6).logprob_sum
        assert torch.allclose(got[index], reference, atol=TOLERANCE, rtol=0), rho
    assert float((got[1] - score_sequences(bridge, encoded, batch_size=6).logprob_sum).abs().max()) > 1e-4


def test_laser_sweep_selects_on_the_first_fifth_and_cli(tiny_model_dirs, task_file, tmp_path):
    from interp.cli import app

    runner = CliRunner()
    common = ["--model", str(tiny_model_dirs["opt"]), "--tasks", str(task_file), "--shots", "1", "--out", str(tmp_path),
              "--max-items", "10", "--n-choices", "2", "--no-figures"]
    result = runner.invoke(app, ["prune", "laser", *common, "--rhos", "0.5,0.1", "--layers", "1"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "laser.parquet")
    assert len(table) == 1 + 2 * 2 and (table["n_select"] == 2).all() and (table["n_report"] == 8).all()
    selected = pd.read_parquet(tmp_path / "laser_selected.parquet").iloc[0]
    candidates = table.sort_values(["select_accuracy", "select_loss"], ascending=[False, True])
    assert (selected["layer"], selected["matrix"],
            selected["rho"]) == tuple(candidates.iloc[0][["layer", "matrix", "rho"]])
    for bad, word in ((["--rhos", "0.5,1.5"], "1.5"), (["--rhos", "0"], "rho=0.0"), (["--matrices", "mlp_x"], "mlp_x"),
                      (["--layers", "7"], "7")):
        failed = runner.invoke(app, ["prune", "laser", *common, *bad])
        assert failed.exit_code == 2 and word in failed.output, failed.output
    failed = runner.invoke(app, ["prune", "layers", *common, "--block-sizes", "5"])
    assert failed.exit_code == 2 and "5" in failed.output


def test_combined_grid_removes_both_and_figures_build(tiny_models, task_file, tmp_path):
    from interp.output.figures import (
        angular_distance_figure,
        laser_heatmap_figure,
        layer_drop_figure,
        pruning_curves_figure,
        pruning_grid_figure,
        pruning_rankings_figure,
    )

    bridge, record = tiny_models["opt"]
    config = PruningConfig(max_items=3, n_choices=2, head_percents=(0, 50), ffn_percents=(0, 50))
    table = run_pruning("combined", (bridge, record), [str(task_file)], [1], tmp_path, config, figures=False,
                        progress=False).tables["pruning_combined"]
    assert len(table) == 4
    both = table[(table["head_percent"] == 50) & (table["ffn_percent"] == 50)].iloc[0]
    assert (both["heads_removed"] == record.n_heads * record.n_layers // 2
            and both["ffns_removed"] == record.n_layers // 2)
    assert pruning_grid_figure(table, "grid").data[0].z.shape == (2, 2)
    curves = pd.DataFrame({"task": ["a", "a", "b", "b"] * 2, "ranking": ["own"] * 4 + ["random:0"] * 4,
                           "head_percent": [0, 10] * 4, "accuracy": [0.8, 0.7, 0.6, 0.5, 0.8, 0.75, 0.6, 0.55]})
    # 2 tasks + average
    assert len(pruning_curves_figure(curves[curves["ranking"] == "own"], "head_percent", "t").data) == 3
    assert len(pruning_rankings_figure(curves, "head_percent", "t").data) == 2
    distances = pd.DataFrame({"layer": [0, 1, 0], "n": [1, 1, 2], "distance": [0.2, 0.1, 0.3]})
    assert angular_distance_figure(distances, "d").data[0].z.shape == (2, 2)
    drops = pd.DataFrame({"method": ["angular", "baseline"], "fraction_dropped": [0.5, 0.5], "accuracy": [0.5, 0.4],
                          "text_loss": [3.0, 4.0]})
    assert len(layer_drop_figure(drops, "l").data) == 4
    laser = pd.DataFrame({"matrix": "mlp_out", "layer": [1, 1], "rho": [0.5, 0.1], "loss_delta": [0.1, -0.2]})
    assert laser_heatmap_figure(laser, "mlp_out", "h").data[0].z.shape == (1, 2)


def test_cross_task_rankings_use_the_other_task(tiny_models, task_file, tmp_path):
    from interp.store import read_table

    other = tmp_path / "skip.jsonl"
    other.write_text("".join(json.dumps({"input": f"w{i}", "answer": f"w{i + 3}"}) + "\n" for i in range(0, 90, 3)))
    bridge, record = tiny_models["gpt2"]
    config = PruningConfig(max_items=2, n_choices=2, percents=(0, 50),
                           rankings=("own", "aggregate", "most_correlated", "least_correlated", "task:skip"))
    result = run_pruning("heads", (bridge, record), [str(task_file), str(other)], [0], tmp_path, config, figures=False,
                         progress=False)
    table = result.tables["pruning_heads"]
    succ = table[table["task"] == "succ"].set_index("ranking")
    assert succ.loc["most_correlated", "ranking_source"].iloc[0] == "skip"  # the only other task
    assert succ.loc["task:skip", "ranking_source"].iloc[0] == "skip"
    rankings = read_table(tmp_path / "pruning_rankings")
    heads = rankings[rankings["component"] == "head"].pivot_table(index=["layer", "head"], columns="task",
                                                                  values="value")
    expected = pruning_mask(heads.mean(axis=1).to_numpy(), 50)  # aggregate: mean of the raw scores
    assert int(expected.sum()) == succ[succ.index == "aggregate"]["heads_removed"].max()
    skip_half = table[(table["task"] == "skip") & (table["head_percent"] == 50)].set_index("ranking")
    assert skip_half.loc["task:skip", "accuracy"] == skip_half.loc["own", "accuracy"]  # same ranking, same cell value
    # Rerun on one task: its aggregate is its own ranking, not the two-task mean kept on disk.
    # A cell ranked by task:skip depends on skip's items: a run without skip cannot vouch for it.
    with pytest.raises(InterpError, match="task 'skip' is not among the run's tasks"):
        run_pruning("heads", (bridge, record), [str(task_file)], [0], tmp_path, config, figures=False, progress=False)
    alone_config = PruningConfig(max_items=2, n_choices=2, percents=(0, 50), rankings=("own", "aggregate"))
    alone = run_pruning("heads", (bridge, record), [str(task_file)], [0], tmp_path, alone_config, figures=False,
                        progress=False).tables["pruning_heads"].set_index("ranking")
    assert alone.loc["aggregate", "ranking_source"].iloc[0] == "mean over succ"
    assert succ.loc["aggregate", "ranking_source"].iloc[0] == "mean over succ,skip"
    assert (alone["task"] == "succ").all() and sorted(set(alone.index)) == ["aggregate", "own"]
    assert len(alone) == 2 * 2  # two rankings x two percentages, no stale two-task cell mixed in
    # Figures: the sweep returns (and draws) the same cross-task transfer figure the report draws.
    from interp.jobs import draw_figures
    from interp.output.catalogue import collect_figures

    assert "pruning_heads_0shot_transfer" in result.figures
    draw_figures(result.figures, tmp_path / "figures", True, ("html",))
    assert (tmp_path / "figures" / "pruning_heads_0shot_transfer.html").exists()
    names = [entry.name for entry in collect_figures(tmp_path)]
    assert "pruning_heads_0shot_transfer" in names and "pruning_heads_0shot_tasks" in names
