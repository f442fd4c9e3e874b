"""The comparison page: tables found below each model's folder, intervals carried, absences said."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.output.comparison import comparison_table, write_comparison
from interp.store import write_table


def _scores(model: str, n_layers: int, best: tuple[int, int]) -> pd.DataFrame:
    rows = []
    for layer in range(n_layers):
        for head in range(2):
            for metric in ("prefix_matching", "copying"):
                value = 0.9 if (layer, head) == best else 0.1 + 0.01 * layer + 0.001 * head
                rows.append({"model": model, "layer": layer, "head": head, "metric": metric, "mean": value,
                             "ci_low": value - 0.05, "ci_high": value + 0.05, "n_seeds": 7})
    return pd.DataFrame(rows)


def _causal(difference: float) -> pd.DataFrame:
    rows = []
    for percent in (5.0, 10.0, 20.0):
        for task in ("all", "antonyms"):
            rows.append({"task": task, "shots": 5, "ablation": "zero", "percent": percent, "ranking": "prefix_matching",
                         "k": 2, "metric": "accuracy", "change": -0.2, "change_ci_low": -0.3, "change_ci_high": -0.1,
                         "random_mean": -0.05, "random_sd": 0.01, "random_min": -0.06, "random_max": -0.04,
                         "n_draws": 5, "difference": difference if percent == 10.0 else 99.0,
                         "difference_ci_low": difference - 0.1, "difference_ci_high": difference + 0.1,
                         "difference_p_value": 0.01, "difference_method": "bootstrap", "n": 40})
    return pd.DataFrame(rows)


@pytest.fixture
def folders(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    write_table(_scores("model-a", 4, (3, 1)), first / "induction_scores")
    write_table(_causal(-0.15), first / "causal" / "causal_vs_random")  # found below the folder
    write_table(pd.DataFrame([{"scope": "repeated", "ablation": "zero", "ranking": "prefix_matching", "percent": 10.0,
                               "k": 2, "draw": 0, "metric": "loss_repeats_later", "ablated": 0.9, "clean": 0.4,
                               "change": 0.5, "ci_low": 0.4, "ci_high": 0.6, "interval_method": "bootstrap", "n": 10,
                               "difference": 0.3, "difference_ci_low": 0.2, "difference_ci_high": 0.4,
                               "random_mean": 0.2, "random_min": 0.1, "random_max": 0.3, "n_draws": 5}]),
                first / "causal" / "causal_repeated")
    write_table(pd.DataFrame([{"ranking": "own", "task": "average", "shots": 5, "prunable_percent": 30,
                               "prunable_ci_low": 10, "prunable_ci_high": 40, "tolerance_points": 1.0,
                               "baseline_accuracy": 0.8}]), first / "pruning" / "pruning_heads_thresholds", csv=False)
    abstract = _causal(-0.2).query("task == 'antonyms' and percent == 10.0").assign(ablation="knockout")
    # a SUL task is named NAME_sul in tables (not sul:NAME, its spelling on the command line)
    write_table(pd.concat([abstract.assign(task="word_categories_4way"), abstract.assign(task="topic_sul")]),
                first / "crosbie" / "causal_vs_random")
    write_table(_scores("model-b", 2, (0, 0)), second / "induction_scores", csv=False)
    return first, second


def test_each_model_gets_its_top_heads_causal_difference_and_claims(folders):
    table = comparison_table(list(folders))
    first = table[table["model"] == "model-a"].set_index("quantity")
    assert first.loc["prefix matching #1", "text"] == "L3H1 at depth 1.00 of 4 layers"
    assert first.loc["prefix matching #1", "ci_low"] == pytest.approx(0.85)
    causal = first[first["section"] == "causal test"]
    assert len(causal) == 2  # the pooled task at 10%, and the repeated-token loss
    assert causal["value"].iloc[0] == pytest.approx(-0.15)
    repeated = causal.iloc[1]
    assert repeated["value"] == pytest.approx(0.5) and "0.40 -> 0.90" in repeated["text"]
    assert "minus random +0.30 [+0.20, +0.40]" in repeated["text"]
    assert causal["ci_high"].iloc[0] == pytest.approx(-0.05)
    assert "paired over items, bootstrap" in causal["estimator"].iloc[0]
    assert first.loc["heads, 5-shot (pruning/)", "text"].startswith("30% of heads (95% interval 10-40%)")
    crosbie = first[first["section"] == "abstract patterns"]
    assert crosbie.index.tolist() == ["topic_sul 5-shot, top 10% prefix matching, knockout: accuracy change",
                                      "word_categories_4way 5-shot, top 10% prefix matching, knockout: accuracy change"]
    assert "minus random -0.200 [-0.300, -0.100], 40 items" in crosbie["text"].iloc[0]
    second = table[table["model"] == "model-b"].set_index("quantity")
    assert second.loc["prefix matching #1", "text"] == "L0H0 at depth 0.00 of 2 layers"
    assert second.filter(like="causal", axis=0).empty
    missing = second[second["section"] != "induction heads"]
    assert missing["text"].str.startswith("not measured").all() and missing["value"].isna().all()


def test_page_and_table_are_written_with_one_column_per_model(folders, tmp_path):
    written = write_comparison(list(folders), tmp_path / "out")
    assert all(path.exists() for path in written)
    page = (tmp_path / "out" / "comparison.html").read_text()
    assert "<th>model-a</th><th>model-b</th><th>paper</th>" in page
    assert "-0.150 [-0.250, -0.050]" in page
    saved = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert set(saved["model"]) == {"model-a", "model-b"} and saved["estimator"].notna().any()


def test_a_folder_without_induction_scores_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["compare", "--results", str(tmp_path), "--out", str(tmp_path / "out"),
                                      "--no-figures"])
    assert result.exit_code == 2
    assert "no induction_scores under" in result.output and "Traceback" not in result.output
