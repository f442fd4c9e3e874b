"""Figures of a whole results folder, the self-contained report (opened in headless Chromium),
one head's attention pattern and head ablation on repeated sequences."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.errors import InterpError
from interp.induction.attention import ablated_repeated_loss, head_attention, save_head_attention
from interp.induction.job import InductionConfig, run_induction
from interp.induction.scores import repeated_sequence_loss
from interp.induction.sequences import SequenceConfig
from interp.output.catalogue import collect_figures, comparison_figure, regenerate_figures
from interp.output.report import findings, paper_claims
from interp.store import write_table

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SMALL = SequenceConfig(protocol="olsson", num_seeds=2)


@pytest.fixture(scope="module")
def tiny_results(tiny_models, tmp_path_factory):
    """A results folder of the tiny GPT-2: induction scores, one attention pattern, a crossref and a pruning sweep."""
    from interp.importance.crossref import CrossrefConfig, run_crossref

    folder = tmp_path_factory.mktemp("results")
    bridge, record = tiny_models["gpt2"]
    run_induction((bridge, record), folder, InductionConfig(num_seeds=2), figures=False, progress=False,
                  echo=lambda _: None)
    save_head_attention(bridge, folder, layer=1, head=0)
    rng = np.random.default_rng(0)
    layers, heads = np.meshgrid(np.arange(2), np.arange(4), indexing="ij")
    rows = []
    for task in ("alpha", "beta"):
        rows.append(pd.DataFrame({"model": record.name, "task": task, "shots": 1, "method": "gradient",
                                  "component": "head",
                                  "layer": layers.ravel(), "head": heads.ravel(), "metric": "gradient",
                                  "value": rng.random(8)}))
        rows.append(pd.DataFrame({"model": record.name, "task": task, "shots": 1, "method": "gradient",
                                  "component": "ffn",
                                  "layer": np.arange(2), "head": -1, "metric": "gradient", "value": rng.random(2)}))
    write_table(pd.concat(rows, ignore_index=True), folder / "importance")
    run_crossref(folder, CrossrefConfig(top_k=3), figures=False)
    fractions = np.linspace(0, 0.9, 10)
    sweep = pd.concat([
        pd.DataFrame({"component": "head", "fraction_pruned": fractions,
                      "accuracy": np.where(fractions < 0.65, 0.8, 0.3)}),
        pd.DataFrame({"component": "ffn", "fraction_pruned": fractions,
                      "accuracy": np.where(fractions < 0.25, 0.8, 0.3)}),
    ], ignore_index=True)
    write_table(sweep, folder / "pruning_sweep")
    thresholds = pd.DataFrame({"ranking": ["own", "own", "random"], "shots": [1, 1, 1],
                               "task": ["average", "alpha", "average"],
                               "baseline_accuracy": 0.8, "prunable_percent": [70, 60, 10],
                               "prunable_ci_low": [50, 40, 0],
                               "prunable_ci_high": [80, 70, 20], "n_items": 40, "tolerance_points": 1.0})
    # the layout of interp.pruning.components's threshold tables
    write_table(thresholds, folder / "pruning_heads_thresholds")
    percents = np.arange(0, 100, 10)
    write_table(pd.DataFrame([{"ranking": ranking, "task": task, "shots": 1, "head_percent": percent, "ffn_percent": 0,
                               "accuracy": 0.8 - percent / 200 * (ranking == "own")
                                           - percent / 150 * (ranking != "own"),
                               "n_items": 40}
                              for ranking in ("own", "random:0") for task in ("alpha", "beta")
                              for percent in percents]),
                folder / "pruning_heads")
    write_table(pd.DataFrame({"task": ["alpha", "beta"], "shots": [1, 1], "layer": [1, 0],
                              "matrix": ["mlp_in", "mlp_out"],
                              "rho": [0.1, 0.5], "report_accuracy_gain": [0.05, -0.01]}), folder / "laser_selected")
    # Training dynamics with a known jump: L1H0 forms between steps 4 and 8, fed by L0H1.
    steps = [0, 1, 2, 4, 8, 16]
    curves = {("prefix_matching", 1, 0): [0.03, 0.03, 0.03, 0.10, 0.70, 0.80], ("prefix_matching", 0, 1): [0.03] * 6,
              ("previous_token", 0, 1): [0.04, 0.04, 0.05, 0.20, 0.75, 0.85], ("previous_token", 1, 0): [0.04] * 6}
    write_table(pd.DataFrame([(step, metric, layer, head, values[index]) for (metric, layer, head),
                              values in curves.items()
                              for index, step in enumerate(steps)],
                             columns=["step", "metric", "layer", "head", "value"]),
                folder / "dynamics" / "head_scores")
    write_table(pd.DataFrame([(step, metric, value) for index, step in enumerate(steps) for metric, value in (
        ("repeated_loss_repeat_1", 7.6), ("repeated_loss_repeat_2", [7.6, 7.6, 7.5, 7.0, 1.5, 0.5][index]),
        ("icl_score", [0.0, 0.0, 0.0, -0.02, -0.1, -0.15][index]))], columns=["step", "metric", "value"]),
        folder / "dynamics" / "summary")
    return folder


def test_figures_command_regenerates_html_png_pdf(tiny_results):
    result = CliRunner().invoke(app, ["figures", "--results", str(tiny_results)])
    assert result.exit_code == 0, result.output
    names = [entry.name for entry in collect_figures(tiny_results)]
    for expected in ("prefix_matching_mean", "copying_var", "prefix_vs_copying", "repeated_loss",
                     "attention_pattern_L1H0",
                     "crossref_correlations", "crossref_layers", "pruning_sweep", "pruning_heads_1shot_tasks",
                     "pruning_heads_1shot_rankings"):
        assert expected in names
    for name in names:
        stem = tiny_results / "figures" / name
        assert b"plotly" in stem.with_suffix(".html").read_bytes()[:200000].lower()
        assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert stem.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert not list((tiny_results / "figures").glob(".*partial*"))


def _induction_folder(source, target):
    for name in ("induction_scores.parquet", "repeated_loss.parquet"):
        shutil.copy(source / name, target / name)
    return target


def test_rendering_failure_raises_naming_the_file(tiny_results, tmp_path, monkeypatch):
    import kaleido

    render = kaleido.Kaleido.calc_fig

    async def fails_on_one(self, figure, opts=None, **kwargs):  # one image fails, one renders nothing
        title = figure.layout.title.text
        if "prefix matching score (variance" in title and opts["format"] == "pdf":
            raise RuntimeError("browser crashed\nmore detail")
        if "copying score (mean" in title and opts["format"] == "png":
            return b""
        return await render(self, figure, opts=opts, **kwargs)

    monkeypatch.setattr(kaleido.Kaleido, "calc_fig", fails_on_one)
    folder = _induction_folder(tiny_results, tmp_path)
    with pytest.raises(InterpError, match=r"could not render prefix_matching_var\.pdf \(browser crashed\); "
                                          r"copying_mean\.png \(kaleido returned no bytes\)"):
        regenerate_figures(folder, ("png", "pdf"))
    figures = folder / "figures"
    assert not (figures / "prefix_matching_var.pdf").exists() and not (figures / "copying_mean.png").exists()
    assert (figures / "prefix_matching_var.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the others are written
    assert (figures / "copying_mean.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [path for path in figures.iterdir() if path.name.startswith(".")]  # no temporary files left

    async def no_browser(self):
        raise RuntimeError("no chromium here")

    monkeypatch.setattr(kaleido.Kaleido, "open", no_browser)
    with pytest.raises(InterpError,
                       match=r"could not render prefix_matching_mean\.png and \d+ more \(no chromium here\)"):
        regenerate_figures(folder, ("png",))
    with pytest.raises(InterpError, match="no result tables"):
        regenerate_figures(folder / "figures", ("png",))


def test_static_images_of_a_command_come_from_one_browser_session(tiny_results, tmp_path, monkeypatch):
    """HTML needs no browser; every PNG and PDF of a command comes from one, at the figure's own size."""
    import kaleido

    opened, start = [], kaleido.Kaleido.open

    async def counted(self):
        opened.append(self)
        return await start(self)

    monkeypatch.setattr(kaleido.Kaleido, "open", counted)
    folder = _induction_folder(tiny_results, tmp_path)
    html = regenerate_figures(folder, ("html",))
    assert opened == [] and len(html) == len(collect_figures(folder)) >= 5
    assert (folder / "figures" / "plotly.min.js").stat().st_size > 1_000_000  # beside the pages: they open offline
    static = regenerate_figures(folder, ("png", "pdf"))
    assert len(opened) == 1 and len(static) == 2 * len(html)
    for entry in collect_figures(folder):
        header = (folder / "figures" / f"{entry.name}.png").read_bytes()[:24]
        width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
        assert (width, height) == (2 * entry.figure.layout.width, 2 * entry.figure.layout.height), entry.name


def test_findings_and_claims_come_from_the_numbers(tiny_results):
    scores = pd.read_parquet(tiny_results / "induction_scores.parquet")
    best = scores[scores["metric"] == "prefix_matching"].nlargest(1, "mean").iloc[0]
    sentences = findings(tiny_results)
    assert f"L{best['layer']}H{best['head']} ({best['mean']:.3f}" in sentences["induction"][0]
    assert any("Spearman rho" in sentence for sentence in sentences["importance"])
    claims = paper_claims(tiny_results).set_index("paper")["this model"]
    assert claims.iloc[0].startswith("70% (95% CI 50-80%) 1-shot")  # heads: the threshold table wins over the sweep
    assert claims.iloc[1].startswith("20%")  # FFNs: accuracy holds up to 0.2 pruned in the synthetic sweep
    assert claims.iloc[2] == "not measured"  # no layer dropping
    assert claims.iloc[3].startswith("mlp_in of layer 1 at rho = 0.1 on alpha (1-shot): held-out accuracy +0.050")
    assert any(sentence.startswith("Best LASER intervention: mlp_in of layer 1") for sentence in sentences["pruning"])
    assert "hypergeometric p" in claims.iloc[4] and "q = " in claims.iloc[4]  # exact overlap p, BH q beside it
    dynamics = sentences["dynamics"]
    assert dynamics[0].startswith("The final best prefix-matching head, L1H0 (0.800 at step 16)")
    assert "between checkpoints 4 and 8: 0.100 -> 0.700" in dynamics[0]
    assert "repeats 2+ went 7.00 -> 1.50 nats" in dynamics[1]
    assert any("-0.02 -> -0.10 across the jump" in sentence for sentence in dynamics)
    assert dynamics[-1].startswith("The best layer-0 previous-token score went 0.200 -> 0.750")


def test_report_opens_offline_in_chromium_with_every_plot_drawn(tiny_results, tmp_path):
    if not shutil.which(CHROMIUM):
        pytest.skip("no chromium on this machine")
    result = CliRunner().invoke(app, ["report", "--results", str(tiny_results), "--out", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    report = tmp_path / "report.html"
    page = report.read_text()
    assert not re.search(r"<script[^>]+src=", page), "the report must not load scripts from anywhere"
    expected = len(collect_figures(tiny_results))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: every lookup fails
             "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", "--window-size=1200,2400"]
    dom = subprocess.run(flags + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-js-errors="0"' in body
    assert f'data-plots="{expected}"' in body and f'data-expected-plots="{expected}"' in body
    assert len(re.findall(r'class="plotly-graph-div', dom.stdout)) == expected
    assert dom.stdout.count('class="main-svg"') >= expected
    assert "CONSOLE" not in dom.stderr, [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    screenshot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={screenshot}", report.as_uri()], capture_output=True, timeout=120)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20000


def test_report_needs_induction_scores(tmp_path):
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "no induction_scores" in result.output


def test_comparison_puts_models_side_by_side(tiny_results):
    figure = comparison_figure([tiny_results, tiny_results], "prefix_matching")
    assert len(figure.data) == 2 and figure.data[0].z.shape == (2, 4)
    with pytest.raises(InterpError, match="no induction_scores"):
        comparison_figure([tiny_results / "figures"])


def test_head_attention_is_a_causal_distribution(tiny_models):
    bridge, _ = tiny_models["llama"]
    pattern = head_attention(bridge, layer=1, head=3)
    length = 1 + 4 * 25  # BOS + four repeats of L = 25 (Olsson protocol)
    assert len(pattern) == length * (length + 1) // 2 and (pattern["key"] <= pattern["query"]).all()
    np.testing.assert_allclose(pattern.groupby("query")["weight"].sum(), 1.0, atol=1e-5)
    with pytest.raises(InterpError, match="L5H0 does not exist"):
        head_attention(bridge, layer=5, head=0)


def test_ablated_loss_without_heads_is_the_clean_loss(tiny_models):
    bridge, _ = tiny_models["opt"]
    clean = repeated_sequence_loss(bridge, SMALL).sort_values(["seed", "position"]).reset_index(drop=True)
    none = ablated_repeated_loss(bridge, [], SMALL).sort_values(["seed", "position"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(clean[["seed", "position", "repeat"]], none[["seed", "position", "repeat"]],
                                  check_dtype=False)
    np.testing.assert_allclose(none["loss"], clean["loss"], rtol=1e-4, atol=1e-4)
    ablated = ablated_repeated_loss(bridge, [(0, 0), (1, 2)], SMALL)
    assert not np.allclose(ablated["loss"], none["loss"])


def test_reconciliation_reads_overlap_pruning_and_the_causal_test_from_their_tables(tmp_path):
    import pandas as pd

    from interp.output.report import _reconciliation_findings
    from interp.store import write_table

    rows = []
    for percent, own, prefix, random in ((0, 0.9, 0.9, 0.9), (10, 0.88, 0.70, 0.6), (50, 0.66, 0.64, 0.30)):
        for ranking, value in (("own", own), ("prefix_matching", prefix), ("random:0", random)):
            rows.append({"ranking": ranking, "head_percent": percent, "accuracy": value, "task": "antonyms"})
    write_table(pd.DataFrame(rows), tmp_path / "pruning_heads")
    write_table(pd.DataFrame([{"task": "aggregate", "shots": -1, "induction_metric": "prefix_matching", "top_k": 10,
                               "overlap": 0, "expected": 0.4, "p_value": 1.0, "q_value": 1.0, "estimator": "all",
                               "prepend_bos": True}]), tmp_path / "crossref_overlap")
    write_table(pd.DataFrame([{"task": "all", "shots": 5, "ablation": "zero", "percent": 10.0,
                               "ranking": "prefix_matching", "k": 27, "metric": "accuracy", "difference": -0.12,
                               "difference_ci_low": -0.2, "difference_ci_high": -0.04}]), tmp_path / "causal_vs_random")
    said = _reconciliation_findings(tmp_path)
    assert "0 of the top 10 prefix matching heads (chance 0.4, q = 1)" in said[0]
    assert "at 1 of 2 pruned fractions" in said[1] and "50%: 0.640 vs 0.660 (random 0.300)" in said[1]
    assert said[2].startswith("Causal test (5-shot, zero): for accuracy, removing the top 10% by prefix matching "
                              "costs more than random heads (difference -0.120, 95% CI -0.200 to -0.040)")


def _pattern_rows(task: str, change: float, difference: tuple[float, float, float]) -> dict:
    return {"task": task, "shots": 5, "ablation": "knockout", "percent": 3.0, "ranking": "prefix_matching", "k": 8,
            "metric": "accuracy", "change": change, "change_ci_low": change - 0.1, "change_ci_high": change + 0.1,
            "random_mean": 0.02, "random_sd": 0.01, "random_min": 0.0, "random_max": 0.05, "n_draws": 5,
            "difference": difference[0], "difference_ci_low": difference[1], "difference_ci_high": difference[2],
            "difference_p_value": 0.01, "difference_method": "bootstrap", "n": 60}


def test_abstract_section_reads_pattern_tasks_of_a_subfolder_task_by_task(tmp_path):
    """A causal test run into crosbie/ gives one sentence per pattern task, with the clean accuracy and the
    relative fall; 14-task rows of the same table are not pattern tasks and stay out."""
    from interp.output.report import _abstract_findings

    assert "not measured" in _abstract_findings(tmp_path)[0]
    write_table(pd.DataFrame([_pattern_rows("word_categories_4way", -0.2, (-0.22, -0.35, -0.10)),
                              _pattern_rows("topic_sul", -0.02, (-0.04, -0.12, 0.05)),
                              _pattern_rows("antonyms", -0.5, (-0.5, -0.6, -0.4))]),
                tmp_path / "crosbie" / "causal_vs_random")
    write_table(pd.DataFrame([{"task": task, "shots": 5, "ablation": "knockout", "ranking": "prefix_matching",
                               "percent": 3.0, "k": 8, "draw": 0, "metric": "accuracy", "clean": clean}
                              for task, clean in (("word_categories_4way", 0.5), ("topic_sul", 0.4))]),
                tmp_path / "crosbie" / "causal_effects")
    said = _abstract_findings(tmp_path)
    assert len(said) == 3 and "antonyms" not in " ".join(said)
    assert said[0].startswith("topic_sul (5-shot, 60 items)") and said[0].endswith("not distinguishable from "
                                                                                    "random heads at 95%.")
    assert "accuracy 0.500 -> 0.300, change -0.200 (95% CI -0.300 to -0.100, -40% relative)" in said[1]
    assert "induction edges knocked out" in said[1] and said[1].endswith("hurts more than random heads.")
    assert "31.6%" in said[2]
    assert [entry.name for entry in collect_figures(tmp_path)] == ["crosbie_pattern_tasks_accuracy"]


def test_reconciliation_says_how_far_cheap_estimators_agree_with_exact_ablation(tmp_path):
    from interp.output.report import _method_reading

    assert _method_reading(tmp_path) == []
    rows = [{"task": task, "shots": 1, "measure_a": "attribution patching, mean ablation, loss",
             "measure_b": "exact zero ablation, loss", "n_heads": 270, "spearman": rho, "top_k": 10,
             "top_k_overlap": overlap, "expected_overlap": 100 / 270}
            for task, rho, overlap in (("antonyms", 0.5, 4), ("present_past", 0.6, 6))]
    rows.append({**rows[0], "measure_a": "gradient, all tokens", "measure_b": "gradient, answer positions"})
    write_table(pd.DataFrame(rows), tmp_path / "exact" / "crossref_methods")
    said = _method_reading(tmp_path)
    assert said == ["Against exact zero ablation, loss (antonyms 1-shot, present_past 1-shot): attribution patching, "
                    "mean ablation, loss has Spearman +0.55 (range +0.50 to +0.60) and top-10 overlap 5.0 heads "
                    "(chance 0.37), mean over 2 (task, shots)."]


def test_reconciliation_counts_many_cells_and_reads_exact_ablation_against_induction(tmp_path):
    from interp.output.report import _cells_text, _exact_induction_reading

    grid = pd.DataFrame([{"task": task, "shots": shots} for task in "abcde" for shots in (1, 5)])
    assert _cells_text(grid) == "5 tasks at 1 and 5 shots"
    assert _cells_text(grid.iloc[:3]) == "a 1-shot, a 5-shot, b 1-shot"
    assert _cells_text(grid.iloc[:7]) == "7 (task, shots) over 4 tasks at 1 and 5 shots"
    assert _exact_induction_reading(tmp_path) == []
    rows = [{"task": task, "shots": 1, "induction_metric": "prefix_matching", "spearman": rho, "p_value": q / 2,
             "q_value": q} for task, rho, q in (("a", 0.2, 0.01), ("b", -0.3, 0.02), ("c", 0.1, 0.5))]
    rows.append({"task": "aggregate", "shots": -1, "induction_metric": "prefix_matching", "spearman": 0.15,
                 "p_value": 0.01, "q_value": 0.03})
    write_table(pd.DataFrame(rows), tmp_path / "exact" / "zero_loss" / "crossref_correlations")
    overlap = [{"task": task, "shots": shots, "induction_metric": "prefix_matching", "top_k": 10, "overlap": count,
                "expected": 0.37, "p_value": 1.0, "test": "hypergeometric (exact)", "q_value": 1.0}
               for task, shots, count in (("a", 1, 1), ("b", 1, 0), ("c", 1, 2), ("aggregate", -1, 0))]
    write_table(pd.DataFrame(overlap), tmp_path / "exact" / "zero_loss" / "crossref_overlap")
    said = _exact_induction_reading(tmp_path)
    assert said == ["Exact zero ablation against the induction scores (a 1-shot, b 1-shot, c 1-shot): the loss change "
                    "when a head is removed, averaged over the cells, has Spearman prefix matching +0.150 (BH q = "
                    "0.03); per cell, 1 of 3 correlations are positive and 1 negative with q < 0.05; top-10 overlap "
                    "per cell 1.00 heads on average (chance 0.37), aggregate 0 of the top 10 prefix matching heads "
                    "(chance 0.4, q = 1)."]
