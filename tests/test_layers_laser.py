"""Layer pruning (Gromov et al.) and LASER (Sharma et al.) against plain-loop references."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from interp.errors import InterpError
from interp.pruning.laser import LowRankFactors, laser_intervention, low_rank, matrix_parameter
from interp.pruning.layers import (
    angular_distances,
    baseline_layers,
    best_block_start,
    distance_table,
    drop_layers,
    pruned_layers,
    skip_layer_hooks,
)

TOLERANCE = 1e-4  # float32 forwards of tiny models agree far tighter; this leaves room for GPUs


def _tokens(bridge, batch=3, positions=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, bridge.cfg.d_vocab, (batch, positions), generator=generator).to(bridge.cfg.device)


def _loop_distances(bridge, token_rows, last_token_only=True):
    """d(l, n) one sample, one pair, one position at a time."""
    n_layers = bridge.cfg.n_layers
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)] + ["ln_final.hook_in"]
    expected = torch.full((n_layers + 1, n_layers + 1), float("nan"), dtype=torch.float64)
    per_sample = []
    for row in token_rows:
        _, cache = bridge.run_with_cache(row.unsqueeze(0))
        stream = [cache[name][0].double().cpu() for name in names]  # each (pos, d_model)
        positions = [row.shape[0] - 1] if last_token_only else range(row.shape[0])
        table = {}
        for layer in range(n_layers + 1):
            for n in range(n_layers + 1 - layer):
                angles = []
                for position in positions:
                    a, b = stream[layer][position], stream[layer + n][position]
                    cosine = float(a @ b / (a.norm() * b.norm()))
                    angles.append(math.acos(max(-1.0, min(1.0, cosine))) / math.pi)
                table[layer, n] = sum(angles) / len(angles)
        per_sample.append(table)
    for (layer, n) in per_sample[0]:
        expected[layer, n] = sum(table[layer, n] for table in per_sample) / len(per_sample)
    return expected


@pytest.mark.parametrize("last_token_only", [True, False])
def test_angular_distances_match_a_loop_over_pairs(tiny_model, last_token_only):
    bridge, record = tiny_model
    tokens = _tokens(bridge)
    distances = angular_distances(bridge, tokens, last_token_only=last_token_only)
    expected = _loop_distances(bridge, list(tokens), last_token_only)
    assert distances.shape == (record.n_layers + 1, record.n_layers + 1)
    assert torch.equal(distances.isnan(), expected.isnan())
    assert torch.allclose(distances.nan_to_num(), expected.nan_to_num(), atol=1e-5)
    assert torch.all(distances[:, 0].abs() < 1e-6)  # arccos near 1 leaves ~1e-8
    defined = distances[~distances.isnan()]
    assert torch.all((defined >= 0) & (defined <= 1))


def test_padded_batches_equal_one_by_one(tiny_models):
    bridge, _ = tiny_models["llama"]
    lengths = [7, 4, 5]
    tokens = _tokens(bridge)
    valid = torch.zeros(tokens.shape)
    for row, length in enumerate(lengths):
        valid[row, :length] = 1
    padded = tokens.masked_fill(valid.to(tokens.device) == 0, 2)
    batch = SimpleNamespace(tokens=padded, valid=valid)
    batched = angular_distances(bridge, [batch])
    one_by_one = _loop_distances(bridge, [tokens[row, :length] for row, length in enumerate(lengths)])
    assert torch.allclose(batched.nan_to_num(), one_by_one.nan_to_num(), atol=1e-5)


def test_best_block_start_picks_the_smallest_defined_distance():
    nan = float("nan")
    distances = torch.tensor([
        [0.0, 0.30, 0.50, 0.70],
        [0.0, 0.10, 0.40, nan],
        [0.0, 0.20, nan, nan],
        [0.0, nan, nan, nan],
    ], dtype=torch.float64)
    assert best_block_start(distances, 1) == 1
    assert best_block_start(distances, 2) == 1
    assert best_block_start(distances, 3) == 0
    assert pruned_layers(distances, 2) == [1, 2]
    assert baseline_layers(3, 1) == [1]
    assert len(distance_table(distances)) == 6
    with pytest.raises(InterpError, match="n=4"):
        best_block_start(distances, 4)


def _plain_model(tiny_model_dirs, architecture):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dirs[architecture], dtype=torch.float32).eval()


@pytest.mark.parametrize("architecture", ["gpt2", "llama", "opt"])
@pytest.mark.parametrize("layer", [0, 1])
def test_drop_layers_equals_skipping_them_with_hooks(tiny_models, tiny_model_dirs, architecture, layer, tmp_path):
    from interp.models.loading import load_model

    bridge, _ = tiny_models[architecture]
    model = _plain_model(tiny_model_dirs, architecture)
    pruned = drop_layers(model, [layer])
    size = lambda module: sum(parameter.numel() for parameter in module.parameters())  # noqa: E731
    assert size(pruned) < size(model)
    assert model.config.num_hidden_layers == 2 and pruned.config.num_hidden_layers == 1
    tokens = _tokens(bridge)
    with torch.no_grad():
        skipped = bridge.run_with_hooks(tokens, fwd_hooks=skip_layer_hooks([layer]), return_type="logits")
        logits = pruned.to(tokens.device)(tokens).logits
    assert torch.allclose(logits, skipped, atol=TOLERANCE)
    pruned.save_pretrained(tmp_path)
    bridge.tokenizer.save_pretrained(tmp_path)
    reloaded, record = load_model(str(tmp_path), device=str(tokens.device))
    assert record.n_layers == 1
    with torch.no_grad():
        assert torch.allclose(reloaded(tokens, return_type="logits"), skipped, atol=TOLERANCE)


def test_drop_layers_rejects_bad_inputs(tiny_models, tiny_model_dirs):
    model = _plain_model(tiny_model_dirs, "llama")
    with pytest.raises(InterpError, match="0..1"):
        drop_layers(model, [2])
    with pytest.raises(InterpError, match="proper subset"):
        drop_layers(model, [0, 1])
    with pytest.raises(InterpError, match="plain Hugging Face"):
        drop_layers(tiny_models["llama"][0].original_model, [0])


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (6, 6)])
@pytest.mark.parametrize("rho", [1.0, 0.5, 0.2, 0.01])
def test_low_rank_equals_a_loop_truncated_svd(shape, rho):
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rank = max(1, math.floor(rho * min(shape)))
    U, S, Vh = torch.linalg.svd(weight, full_matrices=False)
    expected = torch.zeros_like(weight)
    for index in range(rank):
        expected += S[index] * torch.outer(U[:, index], Vh[index])
    approximation = low_rank(weight, rho)
    assert approximation.shape == weight.shape and approximation.dtype == weight.dtype
    assert torch.allclose(approximation, expected, atol=1e-10)
    assert int(torch.linalg.matrix_rank(approximation)) == rank
    assert torch.allclose(LowRankFactors(weight).approximate(rho), approximation, atol=1e-12)


def test_low_rank_rounds_the_rank_down_exactly():
    weight = torch.randn(10, 10, dtype=torch.float64)
    assert int(torch.linalg.matrix_rank(low_rank(weight, 0.7))) == 7  # 0.7 * 10 is 7.000000000000001
    assert int(torch.linalg.matrix_rank(low_rank(weight, 0.29))) == 2


@pytest.mark.parametrize("matrix", ["q", "k", "v", "o", "mlp_in", "mlp_gate", "mlp_out"])
def test_laser_swaps_the_weight_and_restores_it_exactly(tiny_models, matrix):
    bridge, _ = tiny_models["llama"]
    parameter, _ = matrix_parameter(bridge, 1, matrix)
    before = parameter.detach().clone()
    tokens = _tokens(bridge)
    with torch.no_grad():
        baseline = bridge(tokens, return_type="logits")
        with laser_intervention(bridge, 1, matrix, 0.25) as approximation:
            assert torch.equal(parameter.data, approximation)
            assert torch.allclose(approximation, low_rank(before, 0.25), atol=1e-5)
            changed = bridge(tokens, return_type="logits")
        after = bridge(tokens, return_type="logits")
    assert not torch.allclose(changed, baseline, atol=1e-4)
    assert torch.equal(parameter.data, before)
    assert torch.equal(after, baseline)


def test_laser_on_a_fused_gpt2_attention_touches_one_third(tiny_model_dirs):
    model = _plain_model(tiny_model_dirs, "gpt2")
    fused = model.transformer.h[0].attn.c_attn.weight
    before = fused.detach().clone()
    width = before.shape[1] // 3
    factors = LowRankFactors(before[:, width : 2 * width])
    for rho in (0.5, 0.1):  # one SVD reused across the grid
        with laser_intervention(model, 0, "k", rho, factors=factors):
            assert torch.equal(fused.data[:, :width], before[:, :width])
            assert torch.equal(fused.data[:, 2 * width :], before[:, 2 * width :])
            assert int(torch.linalg.matrix_rank(fused.data[:, width : 2 * width])) == max(1, math.floor(rho * 32))
    assert torch.equal(fused.data, before)


def test_laser_restores_the_weight_after_an_exception(tiny_models):
    bridge, _ = tiny_models["gpt2"]
    parameter, _ = matrix_parameter(bridge, 0, "mlp_out")
    before = parameter.detach().clone()
    with pytest.raises(RuntimeError):
        with laser_intervention(bridge, 0, "mlp_out", 0.1):
            raise RuntimeError("interrupted")
    assert torch.equal(parameter.data, before)


@pytest.mark.parametrize("matrix, rho, message", [
    ("mlp_up", 0.5, "unknown matrix 'mlp_up'; choose one of: q, k, v, o, mlp_in, mlp_gate, mlp_out"),
    ("q", 0.0, r"rho=0.0 is outside \(0, 1\]"),
    ("q", 1.5, r"rho=1.5 is outside \(0, 1\]"),
    ("mlp_gate", 0.5, "has no 'mlp_gate' matrix"),
])
def test_laser_rejects_bad_inputs(tiny_models, matrix, rho, message):
    bridge, _ = tiny_models["gpt2"]
    with pytest.raises(InterpError, match=message):
        with laser_intervention(bridge, 0, matrix, rho):
            pass
    with pytest.raises(InterpError, match="layer 5 is outside 0..1"):
        with laser_intervention(bridge, 5, "q", 0.5):
            pass
