"""Q/K/V composition scores: against dense d_model x d_model matrices, and on the toy model's known circuit."""

from __future__ import annotations

import pytest
import torch

from interp.errors import InterpError
from interp.explore.composition import composition_baseline, composition_scores, composition_table

TOLERANCE = dict(rel=1e-4, abs=1e-6)  # float64 inside; the table stores float32


def _dense_score(writer_ov: torch.Tensor, reader: torch.Tensor) -> float:
    """The definition, with the full matrices: ||W_OV R||_F / (||W_OV||_F ||R||_F)."""
    product = torch.linalg.matrix_norm(writer_ov @ reader)
    return float(product / (torch.linalg.matrix_norm(writer_ov) * torch.linalg.matrix_norm(reader)))


def test_scores_equal_dense_matrices_on_random_factors():
    generator = torch.Generator().manual_seed(3)
    shapes = ((5, 12, 3), (5, 3, 12), (4, 12, 3), (4, 12, 3))
    value, output, reading, other = (torch.randn(*shape, generator=generator, dtype=torch.float64) for shape in shapes)
    scores = composition_scores(value, output, reading, other)
    for writer in range(5):
        for reader in range(4):
            expected = _dense_score(value[writer] @ output[writer], reading[reader] @ other[reader].T)
            assert scores[writer, reader].item() == pytest.approx(expected, rel=1e-10)


@pytest.fixture(scope="module")
def toy(device):
    from interp.models.loading import load_model

    return load_model("toy-attn-2l", device=device)[0]


def _loop_table(bridge) -> dict[tuple, float]:
    """Every score from per-head dense matrices: GQA expanded and ln1 gains folded by hand."""
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    gains = [block.ln1.original_component.weight.detach().double() for block in bridge.blocks]
    raw = {name: getattr(bridge, name).detach().double() for name in ("W_Q", "W_K", "W_V", "W_O")}

    def weight(name: str, layer: int, head: int) -> torch.Tensor:
        matrix = raw[name][layer]
        group = n_heads // matrix.shape[0]  # query heads per KV head (1 without GQA)
        matrix = matrix[head // group]
        return torch.diag(gains[layer]) @ matrix if name != "W_O" else matrix

    scores = {}
    for writer_layer in range(n_layers):
        for writer_head in range(n_heads):
            ov = weight("W_V", writer_layer, writer_head) @ weight("W_O", writer_layer, writer_head)
            for reader_layer in range(writer_layer + 1, n_layers):
                for reader_head in range(n_heads):
                    q, k = weight("W_Q", reader_layer, reader_head), weight("W_K", reader_layer, reader_head)
                    v, o = weight("W_V", reader_layer, reader_head), weight("W_O", reader_layer, reader_head)
                    key = (writer_layer, writer_head, reader_layer, reader_head)
                    scores[("q", *key)] = _dense_score(ov, q @ k.T)
                    scores[("k", *key)] = _dense_score(ov, (q @ k.T).T)
                    scores[("v", *key)] = _dense_score(ov, v @ o)
    return scores


@pytest.mark.parametrize("architecture", ["llama", "gpt2", "toy"])
def test_table_equals_loop_version(tiny_models, toy, architecture):
    # llama: 4 query heads on 2 KV heads; toy: trained RMSNorm gains (the tiny models' are all 1)
    bridge = toy if architecture == "toy" else tiny_models[architecture][0]
    table = composition_table(bridge)
    expected = _loop_table(bridge)
    assert len(table) == len(expected)
    for row in table.itertuples():
        key = (row.kind, row.writer_layer, row.writer_head, row.reader_layer, row.reader_head)
        assert row.score == pytest.approx(expected[key], **TOLERANCE)
    assert (table["reader_layer"] > table["writer_layer"]).all()


def test_folding_the_norm_gain_changes_the_scores(toy):
    folded, unfolded = composition_table(toy), composition_table(toy, fold_norms=False)
    difference = abs(folded["score"] - unfolded["score"])
    assert difference.max() > 1e-3 and difference.max() < 0.05  # the trained gains matter, a little


def test_baseline_is_reproducible_and_shrinks_with_width():
    assert composition_baseline(64, 16, seed=1) == composition_baseline(64, 16, seed=1)
    narrow, _ = composition_baseline(32, 8)
    wide, _ = composition_baseline(512, 8)
    assert wide < narrow


def test_toy_previous_token_head_k_composes_with_the_induction_head(toy):
    table = composition_table(toy)
    k_scores = table[table["kind"] == "k"]
    best = k_scores.nlargest(1, "score").iloc[0]
    assert (best["writer_layer"], best["writer_head"], best["reader_layer"], best["reader_head"]) == (0, 0, 1, 2)
    from_l0h0 = (table["writer_layer"] == 0) & (table["writer_head"] == 0)
    pair = table[from_l0h0 & (table["reader_head"] == 2)].set_index("kind")
    baseline, spread = float(pair["baseline"].iloc[0]), float(pair["baseline_std"].iloc[0])
    assert pair.loc["k", "score"] > baseline + 20 * spread  # measured 0.365 vs 0.125 +- 0.007
    assert pair.loc["k", "score"] > 2 * max(pair.loc["q", "score"], pair.loc["v", "score"])
    others = k_scores[(k_scores["reader_head"] == 2) & (k_scores["writer_head"] != 0)]
    assert (others["score"] < 0.6 * pair.loc["k", "score"]).all()  # measured at most 0.21


def test_bad_inputs_name_the_value(toy):
    with pytest.raises(InterpError, match="composition kind"):
        composition_table(toy, kinds=("x",))
    with pytest.raises(InterpError, match="samples"):
        composition_baseline(8, 2, samples=1)


def test_one_layer_model_has_nothing_to_compose(device):
    from interp.models.loading import load_model

    bridge, _ = load_model("toy-attn-1l", device=device)
    with pytest.raises(InterpError, match="two layers"):
        composition_table(bridge)
