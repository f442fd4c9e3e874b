"""Toy attention-only models: the shipped ones have (or lack) induction heads; training and dynamics run."""

from __future__ import annotations

import dataclasses
import gzip
import json

import pandas as pd
import pytest
import torch

from interp.errors import InterpError
from interp.induction.sequences import SequenceConfig
from interp.toy.training import (
    PRESETS,
    ToyConfig,
    checkpoint_steps,
    default_corpus,
    latest_checkpoint,
    list_checkpoints,
)

OLSSON = SequenceConfig(protocol="olsson", num_seeds=10)

def _mean_scores(bridge, metrics=("prefix_matching", "previous_token")) -> pd.DataFrame:
    from interp.induction.scores import score_heads

    table = score_heads(bridge, OLSSON, metrics=metrics)
    return table.groupby(["metric", "layer", "head"], as_index=False)["value"].mean()


@pytest.fixture(scope="module")
def shipped_scores():
    from interp.models.loading import load_model

    return {name: _mean_scores(load_model(name, device="cpu")[0]) for name in ("toy-attn-1l", "toy-attn-2l")}


def test_shipped_two_layer_model_has_an_induction_head_in_layer_1(shipped_scores):
    prefix = shipped_scores["toy-attn-2l"].query("metric == 'prefix_matching'")
    top = prefix.loc[prefix["value"].idxmax()]
    assert top["layer"] == 1
    assert top["value"] > 0.5  # attention mass on the token after the earlier occurrence
    previous = shipped_scores["toy-attn-2l"].query("metric == 'previous_token' and layer == 0")
    assert previous["value"].max() > 0.5  # the layer-0 half of the circuit


def test_shipped_one_layer_model_has_no_prefix_matching_head(shipped_scores):
    # Uniform attention over Olsson's 101 tokens gives about 0.03; an induction head gives > 0.3.
    assert shipped_scores["toy-attn-1l"].query("metric == 'prefix_matching'")["value"].max() < 0.1


def test_shipped_one_layer_model_has_no_induction_head(shipped_scores):
    best_one_layer = shipped_scores["toy-attn-1l"].query("metric == 'prefix_matching'")["value"].max()
    best_two_layer = shipped_scores["toy-attn-2l"].query("metric == 'prefix_matching'")["value"].max()
    assert best_one_layer < 0.25 * best_two_layer


def test_layer_0_previous_token_head_feeds_the_induction_head(shipped_scores):
    """Zeroing the best previous-token head's output collapses the induction head (K-composition)."""
    from interp.hooks import mask_heads_hook
    from interp.induction.scores import score_heads
    from interp.models.loading import load_model

    scores = shipped_scores["toy-attn-2l"]
    previous_head = int(scores.query("metric == 'previous_token' and layer == 0").nlargest(1, "value")["head"].iloc[0])
    induction_head = int(scores.query("metric == 'prefix_matching' and layer == 1").nlargest(1,
                                                                                             "value")["head"].iloc[0])
    bridge, _ = load_model("toy-attn-2l", device="cpu")
    removed = torch.zeros(1, bridge.cfg.n_heads, dtype=torch.bool)
    removed[0, previous_head] = True
    ablation = [("blocks.0.attn.hook_z", mask_heads_hook(removed, None, copies=1))]

    def prefix_matching(hooks) -> float:
        table = score_heads(bridge, OLSSON, metrics=("prefix_matching",), extra_hooks=hooks)
        return float(table[(table["layer"] == 1) & (table["head"] == induction_head)]["value"].mean())

    clean, ablated = prefix_matching(()), prefix_matching(ablation)
    print(f"L1H{induction_head} prefix matching {clean:.3f}; with L0H{previous_head} zeroed {ablated:.3f}")
    assert clean > 0.5 and ablated < 0.5 * clean


def test_shipped_models_are_attention_only():
    from safetensors.torch import load_file

    from interp.models.loading import KNOWN_MODELS

    for name in ("toy-attn-1l", "toy-attn-2l"):
        weights = load_file(str(KNOWN_MODELS[name].locate() / "model.safetensors"))
        mlp = [tensor for key, tensor in weights.items() if ".mlp." in key]
        assert mlp and all(bool((tensor == 0).all()) for tensor in mlp)


def test_checkpoint_steps_are_log_spaced_and_include_both_ends():
    steps = checkpoint_steps(1000, per_octave=2)
    assert steps[0] == 0 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert 512 in steps and 724 in steps and 900 not in steps


@pytest.mark.parametrize("field, value", [("n_layers", 4), ("steps", -5), ("repeat_fraction", 1.5)])
def test_bad_training_config_names_the_value(field, value):
    with pytest.raises(InterpError, match=str(value)):
        ToyConfig(**{field: value})


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """The first 40 chapters of the shipped corpus: enough text for a 512-token BPE in a second."""
    with gzip.open(default_corpus(), "rt", encoding="utf-8") as handle:
        chapters = [next(handle) for _ in range(40)]
    path = tmp_path_factory.mktemp("corpus") / "genesis.txt"
    path.write_text("".join(chapters))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, small_corpus):
    from interp.toy.training import train

    config = dataclasses.replace(PRESETS["tiny"], corpus=str(small_corpus))
    run_dir = tmp_path_factory.mktemp("tiny_run")
    train(config, run_dir, progress=False, threads=1)
    return config, run_dir


def test_training_writes_hf_checkpoints_at_the_scheduled_steps(tiny_run):
    from interp.models.loading import load_model

    config, run_dir = tiny_run
    assert [step for step, _ in list_checkpoints(run_dir)] == checkpoint_steps(config.steps,
                                                                               config.checkpoints_per_octave)
    bridge, record = load_model(str(latest_checkpoint(run_dir)[1]), device="cpu")
    assert (record.n_layers, record.n_heads, record.d_vocab) == (2, 2, 512)
    config_json = json.loads((latest_checkpoint(run_dir)[1] / "config.json").read_text())
    assert config_json["architectures"] == ["LlamaForCausalLM"]
    losses = pd.read_parquet(run_dir / "train_loss.parquet")
    assert losses["step"].tolist() == list(range(1, config.steps + 1)) and losses["loss"].notna().all()


def test_interrupted_training_resumes_to_the_same_weights(tiny_run, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import interp.toy.training as toy

    config, full_run = tiny_run
    original = toy._save_checkpoint

    def save_then_stop(directory, *args):
        original(directory, *args)
        if directory.name == "step_000004":
            raise KeyboardInterrupt

    monkeypatch.setattr(toy, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        toy.train(config, tmp_path, progress=False, threads=1)
    assert latest_checkpoint(tmp_path)[0] == 4
    monkeypatch.setattr(toy, "_save_checkpoint", original)
    final = toy.train(config, tmp_path, progress=False, threads=1)
    resumed = load_file(str(final / "model.safetensors"))
    uninterrupted = load_file(str(latest_checkpoint(full_run)[1] / "model.safetensors"))
    for key, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[key], tensor, rtol=0, atol=1e-6)
    assert json.loads((final / "training_state.json").read_text())["step"] == config.steps


def test_dynamics_on_a_tiny_run_writes_one_row_per_checkpoint_head_and_metric(tiny_run, tmp_path):
    from interp.store import read_json, read_table
    from interp.toy.dynamics import DynamicsConfig, run_dynamics

    config, run_dir = tiny_run
    dynamics = DynamicsConfig(num_seeds=2, icl_examples=4)
    run_dynamics(tmp_path, dynamics, run=run_dir, device="cpu", figures=False, progress=False)
    steps = checkpoint_steps(config.steps, config.checkpoints_per_octave)
    heads = read_table(tmp_path / "head_scores")
    assert len(heads) == len(steps) * config.n_layers * config.n_heads * len(dynamics.metrics)
    assert sorted(heads["step"].unique()) == steps and heads["value"].between(0, 1).all()
    summary = read_table(tmp_path / "summary").pivot(index="step", columns="metric", values="value")
    assert summary.index.tolist() == steps and summary.notna().all().all()
    assert {"icl_score", "repeated_loss_repeat_1", "repeated_loss_repeat_4"} <= set(summary.columns)
    late, early = dynamics.icl_positions(config.n_ctx)
    difference = summary[f"text_loss_token_{late}"] - summary[f"text_loss_token_{early}"]
    torch.testing.assert_close(torch.tensor(summary["icl_score"].to_numpy()), torch.tensor(difference.to_numpy()))
    # The band score, recomputed token by token from the saved per-position loss curve.
    curve = read_table(tmp_path / "icl_curve")
    late_band, early_band = dynamics.icl_band_positions(config.n_ctx)
    for step in steps:
        at_step = curve[curve["step"] == step].set_index("position")["loss"]
        expected = (sum(at_step[token] for token in late_band) / len(late_band)
                    - sum(at_step[token] for token in early_band) / len(early_band))
        assert abs(summary.loc[step, "icl_score_band"] - expected) < 1e-5
    assert read_json(tmp_path / "dynamics.json")["checkpoints"][-1] == f"step_{config.steps:06d}"


def test_dynamics_figure_has_one_line_per_head_and_metric():
    from interp.output.figures import dynamics_figure

    heads = pd.DataFrame([(step, layer, head, metric, 0.1 * step) for step in (1, 2, 4) for layer in (0, 1)
                          for head in (0, 1) for metric in ("prefix_matching", "copying")],
                         columns=["step", "layer", "head", "metric", "value"])
    summary = pd.DataFrame([(step, metric, 1.0) for step in (1, 2, 4)
                            for metric in ("icl_score", "repeated_loss_repeat_1")],
                           columns=["step", "metric", "value"])
    figure = dynamics_figure(heads, summary, "toy")
    assert len(figure.data) == 4 * 2 + 1 + 1
    assert figure.layout.xaxis.type == "log"


def test_cli_rejects_bad_layer_count_and_missing_run(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "--run", str(tmp_path / "run"), "--layers", "5"])
    assert result.exit_code == 2 and "n_layers 5" in result.output
    result = runner.invoke(app, ["dynamics", "--run", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "missing" in result.output


def test_periodic_rows_repeat_one_chunk_with_a_random_period_and_phase():
    from interp.toy.training import _sample_batch

    config = ToyConfig(n_ctx=128, batch_size=64, repeat_fraction=0.5, repeat_length=(5, 30))
    stream = torch.randint(600, 700, (5000,))  # text tokens disjoint from the chunk tokens
    rows, later = _sample_batch(stream, config, torch.arange(3, 500), 0, torch.Generator().manual_seed(2))
    assert bool((rows[:, 0] == 0).all())
    periods, phases = set(), set()
    for row, mask in zip(rows[:, 1:], later[:, 1:], strict=True):  # after <bos>
        if bool((row >= 600).all()):  # a text row: nothing to predict from a copy
            assert not bool(mask.any())
            continue
        start = int(torch.nonzero(mask)[0])  # the second copy begins here and runs to the row's end
        assert bool(mask[start:].all()) and not bool(mask[:start].any())
        period = next(p for p in range(5, 31) if bool((row[start:] == row[start - p:len(row) - p]).all()))
        assert 0 <= start - period < period  # the random prefix is shorter than one period
        periods.add(period), phases.add(start - period)
    assert 8 <= len([row for row in rows if not bool((row[1:] >= 600).all())]) <= 56  # about half the rows
    assert len(periods) > 5 and len(phases) > 5  # no fixed offset predicts the repeats


def test_repeat_rows_hold_every_copy_of_the_chunk_and_mark_the_later_ones():
    from interp.toy.training import _loss, _sample_batch, build_model

    config = ToyConfig(n_layers=2, d_model=32, n_heads=2, n_ctx=128, batch_size=6, repeat_fraction=1.0,
                       repeat_layout="scattered", repeat_length=(10, 30), repeat_copies=3, text_loss_fraction=0.25)
    stream = torch.randint(600, 700, (5000,))  # text tokens disjoint from the chunk tokens
    vocab = torch.arange(3, 500)
    rows, later = _sample_batch(stream, config, vocab, 0, torch.Generator().manual_seed(1))
    assert rows.shape == later.shape == (6, 128) and bool((rows[:, 0] == 0).all())
    for row, mask in zip(rows, later, strict=True):
        chunk_positions = torch.nonzero(row[1:] < 500).flatten() + 1  # after <bos>
        size = len(chunk_positions) // 3
        assert 10 <= size <= 30 and len(chunk_positions) == 3 * size
        copies = row[chunk_positions].view(3, size)
        assert bool((copies == copies[0]).all())
        assert mask.sum() == 2 * size and not bool(mask[chunk_positions[:size]].any())

    class Tokenizer:  # build_model only reads these
        bos_token_id, eos_token_id, pad_token_id = 0, 1, 2

        def __len__(self):
            return 1024

    model = build_model(config, Tokenizer())
    loss = _loss(model, rows, later, config, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(InterpError, match="repeat_copies"):
        ToyConfig(repeat_copies=1)
    with pytest.raises(InterpError, match="text_loss_fraction"):
        ToyConfig(text_loss_fraction=0.0)


def test_gpt2_positions_train_and_load_through_the_same_loader(tmp_path, small_corpus):
    """The learned-position (GPT-2) variant kept for comparison: trains, stays attention-only, loads."""
    from safetensors.torch import load_file

    from interp.models.loading import load_model
    from interp.toy.training import train

    config = dataclasses.replace(PRESETS["tiny-gpt2"], corpus=str(small_corpus))
    final = train(config, tmp_path, progress=False, threads=1)
    assert json.loads((final / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    weights = load_file(str(final / "model.safetensors"))
    assert all(bool((tensor == 0).all()) for key, tensor in weights.items() if ".mlp." in key)
    bridge, record = load_model(str(final), device="cpu")
    assert (record.n_layers, record.n_heads) == (2, 2)


def test_hub_revisions_path_measures_each_revision_by_its_step(tiny_run, tmp_path, monkeypatch):
    """The Pythia path offline: snapshot_download stands in for the hub, serving the tiny run's checkpoints."""
    import huggingface_hub

    from interp.store import read_json, read_table
    from interp.toy.dynamics import DynamicsConfig, run_dynamics

    _, run_dir = tiny_run
    served = {f"step{step}": str(directory) for step, directory in list_checkpoints(run_dir)}
    requests = []

    def snapshot_download(repo_id, revision, allow_patterns):
        requests.append((repo_id, revision))
        return served[revision]

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    revisions = ["step8", "step2", "step4"]  # out of order on purpose: results come back by step
    run_dynamics(tmp_path, DynamicsConfig(num_seeds=2, icl_examples=4), model="org/toy", revisions=revisions,
                 device="cpu", figures=False, progress=False)
    assert requests == [("org/toy", revision) for revision in revisions]
    summary = read_table(tmp_path / "summary")
    assert sorted(summary["step"].unique()) == [2, 4, 8]
    assert read_json(tmp_path / "dynamics.json")["checkpoints"] == ["step2", "step4", "step8"]
    with pytest.raises(InterpError, match="step1000,step8000"):
        run_dynamics(tmp_path, DynamicsConfig(num_seeds=2), model="org/toy", revisions=[], figures=False)
    with pytest.raises(InterpError, match="'main'"):
        run_dynamics(tmp_path, DynamicsConfig(num_seeds=2), model="org/toy", revisions=["main"], figures=False)
