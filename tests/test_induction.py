"""The induction job: tables, metadata, caching, resumption, figures and the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import interp.induction.job as induction
from interp.induction.job import InductionConfig, induction_figures, load_induction, run_induction

COLUMNS = ["model", "layer", "head", "metric", "mean", "var", "ci_low", "ci_high", "n_seeds", "interval_method"]


@pytest.fixture
def tiny_gpt2(tiny_models):
    return tiny_models["gpt2"]


def test_writes_a_tidy_table_and_metadata(tiny_gpt2, tmp_path):
    result = run_induction(tiny_gpt2, tmp_path, InductionConfig(num_seeds=3), figures=False, progress=False,
                           echo=lambda _: None)
    table = pd.read_parquet(tmp_path / "induction_scores.parquet")
    assert list(table.columns) == COLUMNS
    assert pd.read_csv(tmp_path / "induction_scores.csv").shape == table.shape
    heads = table.dropna(subset=["layer"])
    assert set(heads["metric"]) == {"prefix_matching", "copying", "ov_copying", "previous_token", "duplicate_token",
                                    "induction_stripe"}
    assert (heads[heads.metric != "ov_copying"]["n_seeds"] == 3).all()
    intervals = heads.dropna(subset=["ci_low", "ci_high"])  # one-seed metrics (ov_copying) have no interval
    assert set(heads["metric"]) - set(intervals["metric"]) <= {"ov_copying"}
    assert ((intervals["ci_low"] <= intervals["mean"] + 1e-9)
            & (intervals["mean"] <= intervals["ci_high"] + 1e-9)).all()
    metadata = json.loads((tmp_path / "induction_metadata.json").read_text())
    assert metadata["seeds"] == [0, 1, 2] and metadata["protocol"]["protocol"] == "bansal"
    assert {"torch", "transformer-lens", "transformers"} <= set(metadata["versions"])
    assert metadata["model"]["architecture"] == "GPT2LMHeadModel"
    assert {"loss_repeat_1", "loss_repeats_2_4"} <= set(table["metric"])
    assert not list(tmp_path.glob("**/*.tmp")), "no temporary files are left behind"
    assert load_induction(tmp_path).scores.shape == result.scores.shape


def test_second_run_reuses_and_extends_the_cache(tiny_gpt2, tmp_path, monkeypatch):
    run_induction(tiny_gpt2, tmp_path, InductionConfig(num_seeds=2), figures=False, progress=False, echo=lambda _: None)
    scored = []
    original = induction.score_heads

    def counting(bridge, config, metrics, **kwargs):
        scored.append(list(kwargs.get("seeds") or []))
        return original(bridge, config, metrics, **kwargs)

    monkeypatch.setattr(induction, "score_heads", counting)
    result = run_induction(tiny_gpt2, tmp_path, InductionConfig(num_seeds=3), figures=False, progress=False,
                           echo=lambda _: None)
    assert [seeds for seeds in scored if seeds] == [[2]], "only the new seed is computed"
    assert result.metadata["reused_seeds"] == [0, 1]


def test_an_interrupted_run_resumes_without_losing_finished_seeds(tiny_gpt2, tmp_path, monkeypatch):
    monkeypatch.setattr(induction, "SEEDS_PER_CHUNK", 1)
    original = induction.score_heads
    calls = []

    def failing_on_third(bridge, config, metrics, **kwargs):
        calls.append(kwargs.get("seeds"))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(bridge, config, metrics, **kwargs)

    monkeypatch.setattr(induction, "score_heads", failing_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_induction(tiny_gpt2, tmp_path, InductionConfig(num_seeds=4), figures=False, progress=False,
                      echo=lambda _: None)
    monkeypatch.setattr(induction, "score_heads", original)
    result = run_induction(tiny_gpt2, tmp_path, InductionConfig(num_seeds=4), figures=False, progress=False,
                           echo=lambda _: None)
    assert result.metadata["reused_seeds"] == [0, 1]
    fresh = run_induction(tiny_gpt2, tmp_path / "fresh", InductionConfig(num_seeds=4), figures=False, progress=False,
                          echo=lambda _: None)
    pd.testing.assert_frame_equal(result.scores, fresh.scores)


def test_figures_are_rendered_from_saved_results(tiny_gpt2, tmp_path):
    run_induction(tiny_gpt2, tmp_path, InductionConfig(num_seeds=2), figures=False, progress=False, echo=lambda _: None)
    written = induction_figures(tmp_path)
    assert {"prefix_matching_mean", "copying_var", "prefix_vs_copying", "repeated_loss"} <= set(written)
    png = tmp_path / "figures" / "prefix_matching_mean.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_bad_config_values_are_named():
    from interp.errors import InterpError

    with pytest.raises(InterpError, match="copying variant 'exact'"):
        InductionConfig(copying_variant="exact")
    with pytest.raises(InterpError, match="seeds must be a positive integer, got -3"):
        InductionConfig(num_seeds=-3)


def test_cli_runs_the_job_on_a_local_model_directory(tiny_model_dirs, tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    result = CliRunner().invoke(app, ["induction", "--model", str(tiny_model_dirs["opt"]), "--seeds", "2",
                                      "--out", str(tmp_path), "--no-figures", "--protocol", "olsson"])
    assert result.exit_code == 0, result.output
    assert "top prefix matching heads" in result.output
    table = pd.read_parquet(tmp_path / "induction_scores.parquet")
    assert table["n_seeds"].max() == 2
