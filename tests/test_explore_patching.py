"""Activation patching: against a one-patch-per-forward loop, against TransformerLens's own patching
functions on the bridge, exact invariants, and the toy model's known induction circuit."""

from __future__ import annotations

import pytest
import torch

from interp.errors import InterpError
from interp.explore.patching import (
    PatchingConfig,
    activation_patching,
    answer_metric,
    induction_prompts,
    patching_figure,
)
from interp.hooks import pattern_hook, resid_pre_hook, z_hook

ATOL = 1e-4  # resumed stacked forwards vs whole forwards, float32


@pytest.fixture(scope="module")
def toy(device):
    from interp.models.loading import load_model

    return load_model("toy-attn-2l", device=device)[0]


def _loop_patching(bridge, target, source, metric, activation, position=-1):
    """The definition: one whole forward of ``target`` per patch, the patched slice copied from ``source``."""
    name = {"z": z_hook, "resid_pre": resid_pre_hook, "pattern": pattern_hook}[activation]
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    _, cache = bridge.run_with_cache(source)
    size = target.shape[1] if activation == "resid_pre" else n_heads
    values = torch.zeros(n_layers, size)
    for layer in range(n_layers):
        for index in range(size):
            def patch(value, hook, layer=layer, index=index):
                value = value.clone()
                if activation == "z":
                    value[:, :, index] = cache[name(layer)][:, :, index]
                else:  # resid_pre: position on axis 1; pattern: head on axis 1
                    value[:, index] = cache[name(layer)][:, index]
                return value
            with torch.no_grad():
                logits = bridge.run_with_hooks(target, fwd_hooks=[(name(layer), patch)])
            values[layer, index] = metric(logits[:, position]).mean()
    return values


def _grid(table, direction, activation):
    part = table[(table["direction"] == direction) & (table["activation"] == activation)]
    across = "position" if activation == "resid_pre" else "head"
    return torch.tensor(part.pivot_table(index="layer", columns=across, values="value").to_numpy(), dtype=torch.float32)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_batched_patching_equals_loop_version(tiny_models, architecture):
    bridge, _ = tiny_models[architecture]
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(3, 200, (2, 7), generator=generator)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(200, 300, (2,), generator=generator)
    metric = answer_metric(bridge, [5, 9], wrong=[11, 13], batch=2)
    config = PatchingConfig(directions=("denoising", "noising"), copies_per_forward=3)  # chunks that split a layer
    table = activation_patching(bridge, clean, corrupted, metric, config)
    for direction, (target, source) in {"denoising": (corrupted, clean), "noising": (clean, corrupted)}.items():
        for activation in ("z", "resid_pre", "pattern"):
            device = bridge.cfg.device
            expected = _loop_patching(bridge, target.to(device), source.to(device), metric, activation)
            assert torch.allclose(_grid(table, direction, activation), expected, atol=ATOL), (direction, activation)


def test_equals_transformer_lens_patching_functions_on_the_bridge(toy):
    """TransformerLens's get_act_patch_* run on a TransformerBridge (TL 4.3); they agree with ours."""
    import transformer_lens.patching as tl_patching

    clean, corrupted, answers = induction_prompts(toy, prompts=3, length=6, seed=1)
    metric = answer_metric(toy, answers.tolist(), batch=3)
    table = activation_patching(toy, clean, corrupted, metric)
    _, clean_cache = toy.run_with_cache(clean)
    scalar = lambda logits: metric(logits[:, -1]).mean()  # noqa: E731
    theirs = {
        "z": tl_patching.get_act_patch_attn_head_out_all_pos(toy, corrupted, clean_cache, scalar),
        "resid_pre": tl_patching.get_act_patch_resid_pre(toy, corrupted, clean_cache, scalar),
        "pattern": tl_patching.get_act_patch_attn_head_pattern_all_pos(toy, corrupted, clean_cache, scalar),
    }
    for activation, values in theirs.items():
        assert torch.allclose(_grid(table, "denoising", activation), values.float().cpu(), atol=ATOL), activation


def test_patching_the_only_changed_position_restores_the_clean_run_exactly(toy):
    clean, corrupted, answers = induction_prompts(toy, prompts=4, length=10, seed=2)
    metric = answer_metric(toy, answers.tolist(), batch=4)
    table = activation_patching(toy, clean, corrupted, metric, PatchingConfig(activations=("resid_pre",),
                                                                              directions=("denoising", "noising")))
    changed = int((clean != corrupted).any(dim=0).nonzero()[0])
    at_zero = table[table["layer"] == 0].set_index(["direction", "position"])["normalised"]
    assert at_zero[("denoising", changed)] == pytest.approx(1.0, abs=ATOL)  # the whole difference, restored
    assert at_zero[("noising", changed)] == pytest.approx(0.0, abs=ATOL)
    unchanged = at_zero.drop(index=[("denoising", changed), ("noising", changed)])
    assert unchanged.xs("denoising").abs().max() < ATOL and (unchanged.xs("noising") - 1).abs().max() < ATOL


@pytest.mark.parametrize("seed", [0, 1])
def test_toy_induction_circuit_comes_out_on_top(toy, seed):
    """Repeated random tokens, the earlier occurrence of the current token corrupted: L0H0 and L1H2 matter most."""
    clean, corrupted, answers = induction_prompts(toy, prompts=32, length=25, seed=seed)
    metric = answer_metric(toy, answers.tolist(), batch=32)
    table = activation_patching(toy, clean, corrupted, metric, PatchingConfig(activations=("z",),
                                                                              directions=("denoising", "noising")))
    assert table["clean"].iloc[0] > table["corrupted"].iloc[0] + 5  # the corruption breaks the prediction
    denoising = table[table["direction"] == "denoising"].nlargest(2, "normalised")
    assert [(row.layer, row.head) for row in denoising.itertuples()] == [(0, 0), (1, 2)]
    noising = table[table["direction"] == "noising"].set_index(["layer", "head"])["normalised"]
    assert noising[(0, 0)] < 0.2 and noising.drop(index=(0, 0)).min() > 0.5  # L0H0 alone is necessary


def test_table_is_tidy_and_figure_has_a_panel_per_activation(toy):
    clean, corrupted, answers = induction_prompts(toy, prompts=2, length=6)
    table = activation_patching(toy, clean, corrupted, answer_metric(toy, answers.tolist(), batch=2))
    assert set(table.columns) >= {"direction", "activation", "layer", "head", "position", "token", "value", "change",
                                  "normalised", "clean", "corrupted", "n_prompts"}
    heads = table[table["activation"] == "z"]
    assert len(heads) == 2 * 4 and heads["position"].isna().all() and heads["head"].notna().all()
    resid = table[table["activation"] == "resid_pre"]
    assert len(resid) == 2 * clean.shape[1] and resid["token"].str.contains("/").sum() == 2  # the changed position
    figure = patching_figure(table)
    assert [trace.z.shape for trace in figure.data] == [(2, 4), (2, clean.shape[1]), (2, 4)]


def test_bad_inputs_raise_one_line_errors(toy):
    metric = answer_metric(toy, 5)
    with pytest.raises(InterpError, match="same shape"):
        activation_patching(toy, torch.tensor([[0, 5, 6]]), torch.tensor([[0, 5, 6, 7]]), metric)
    with pytest.raises(InterpError, match="patched activation"):
        PatchingConfig(activations=("mlp",))
    with pytest.raises(InterpError, match="patching direction"):
        PatchingConfig(directions=("sideways",))
    with pytest.raises(InterpError, match="tokens"):
        answer_metric(toy, " Abednego the Jebusite")
    with pytest.raises(InterpError, match="answers for"):
        answer_metric(toy, [5, 6, 7], batch=2)
    with pytest.raises(InterpError, match="outside"):
        activation_patching(toy, torch.tensor([[0, 5]]), torch.tensor([[0, 6]]), metric, PatchingConfig(position=5))
