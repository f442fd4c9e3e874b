"""``interp pattern`` (table + figure), ``interp patch`` and ``interp composition`` on the toy model."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from interp.cli import app


def test_pattern_writes_the_table_and_a_self_contained_figure(tmp_path):
    result = CliRunner().invoke(app, ["pattern", "--model", "toy-attn-2l", "--results", str(tmp_path), "--layer", "1",
                                      "--head", "2", "--text", "and God said, and God said", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "attention_pattern_L1H2.parquet")
    assert {"query", "key", "weight", "token"} <= set(table.columns)
    html = (tmp_path / "figures" / "head_L1H2.html").read_text()
    assert len(html) > 1_000_000 and "<script src=" not in html and "your text" in html
    assert (tmp_path / "figures" / "head_L1H2.png").stat().st_size > 10_000


def test_patch_and_composition_write_tables(tmp_path):
    patch = CliRunner().invoke(app, ["patch", "--model", "toy-attn-2l", "--out", str(tmp_path), "--device", "cpu",
                                     "--clean", "And Moses said unto Aaron, and Moses",
                                     "--corrupted", "And David said unto Aaron, and Moses",
                                     "--answer", " said", "--activations", "z", "--no-figures"])
    assert patch.exit_code == 0, patch.output
    table = pd.read_parquet(tmp_path / "patching.parquet")
    assert set(table["direction"]) == {"denoising", "noising"} and set(table["activation"]) == {"z"}
    composition = CliRunner().invoke(app, ["composition", "--model", "toy-attn-2l", "--out", str(tmp_path),
                                           "--device", "cpu", "--no-figures"])
    assert composition.exit_code == 0, composition.output
    assert "K L0H0 -> L1H2" in composition.output  # the strongest pair of all, above the baseline
    assert len(pd.read_parquet(tmp_path / "composition.parquet")) == 3 * 4 * 4


def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    result = CliRunner().invoke(app, ["patch", "--model", "toy-attn-2l", "--out", str(tmp_path), "--device", "cpu",
                                      "--clean", "And Moses said", "--corrupted", "And Moses said unto Aaron",
                                      "--answer", " said"])
    assert result.exit_code == 2 and "same shape" in result.output
    result = CliRunner().invoke(app, ["pattern", "--model", "toy-attn-2l", "--results", str(tmp_path), "--layer", "1"])
    assert result.exit_code == 2 and "both --layer and --head" in result.output
