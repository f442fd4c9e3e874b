"""A model sharded over the CPU and disk (accelerate offload) gives the unsharded model's results.

The shipped toy model (2 layers, L1H2 its induction head) and the tiny random GQA Llama are
loaded twice through ``load_model``: whole on the CPU, and with a device map that keeps some
modules on the CPU and offloads others to disk (their weights read from the offload folder
around each forward).  Induction scores (all metrics, and the loss), exact ablation (zero, mean,
resample), gradient importance and pruning's ``masked_scores`` must agree to float32 round-off
(they are the same arithmetic in the same order, so in practice exactly).
"""

from __future__ import annotations

import pytest
import torch
from conftest import encode_tiny_task

from interp.errors import InterpError
from interp.importance.methods import ImportanceConfig, ablation_importance, gradient_importance
from interp.induction.scores import METRICS, score_heads
from interp.induction.sequences import SequenceConfig
from interp.models.loading import load_model
from interp.pruning.components import masked_scores
from interp.reach.placement import (
    Placement,
    check_realized_map,
    is_offloaded,
    parse_device_map,
    parse_max_memory,
    placement_summary,
    readable_weights,
)

TOLERANCE = 1e-6  # float32 round-off; the sharded forward does the same arithmetic in the same order

TOY_MAP = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
           "model.norm": "cpu", "lm_head": "cpu"}  # tied embeddings: embed_tokens and lm_head together
LLAMA_MAP = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "disk", "model.layers.1": "cpu",
             "model.norm": "disk", "lm_head": "cpu"}  # the first layer and the final norm on disk


@pytest.fixture(scope="module")
def toy_pair(tmp_path_factory):
    whole = load_model("toy-attn-2l", device="cpu")
    sharded = load_model("toy-attn-2l", device_map=TOY_MAP, offload_folder=str(tmp_path_factory.mktemp("offload")))
    return whole, sharded


@pytest.fixture(scope="module")
def llama_pair(tiny_model_dirs, tmp_path_factory):
    path = str(tiny_model_dirs["llama"])
    whole = load_model(path, device="cpu")
    sharded = load_model(path, device_map=LLAMA_MAP, offload_folder=str(tmp_path_factory.mktemp("offload")))
    return whole, sharded


def _toy_encoded(bridge):
    from interp.tasks.evaluation import encode_prompts
    from interp.tasks.prompts import PromptConfig, build_prompts, load_task

    return encode_prompts(bridge.tokenizer, build_prompts(load_task("number_successor"), 2, PromptConfig(max_items=6)))


def test_sharded_model_really_sits_on_cpu_and_disk(toy_pair):
    (_, _), (bridge, record) = toy_pair
    assert is_offloaded(bridge)
    layer_one = bridge.original_model.model.layers[1]
    assert {parameter.device.type for parameter in layer_one.parameters()} == {"meta"}  # no weights in memory
    assert record.device == "cpu+disk"
    assert placement_summary(bridge)["devices"] == {"cpu": 5, "disk": 1}
    with readable_weights(bridge):
        assert {parameter.device.type for parameter in layer_one.parameters()} == {"cpu"}
    assert {parameter.device.type for parameter in layer_one.parameters()} == {"meta"}  # back on disk after the read


def test_induction_scores_equal_unsharded(toy_pair):
    (whole, _), (sharded, _) = toy_pair
    config = SequenceConfig(num_seeds=4)
    expected, expected_loss = score_heads(whole, config, METRICS, loss=True)
    got, got_loss = score_heads(sharded, config, METRICS, loss=True)
    assert set(got["metric"]) == set(METRICS)  # copying and ov_copying read the offloaded weights
    assert torch.allclose(torch.tensor(got["value"].to_numpy()), torch.tensor(expected["value"].to_numpy()),
                          atol=TOLERANCE, rtol=0)
    assert torch.allclose(torch.tensor(got_loss["loss"].to_numpy()), torch.tensor(expected_loss["loss"].to_numpy()),
                          atol=TOLERANCE, rtol=0)
    # the known answer survives sharding: L1H2 is the toy model's strongest prefix-matching head
    prefix = got[got["metric"] == "prefix_matching"].groupby(["layer", "head"])["value"].mean()
    assert prefix.idxmax() == (1, 2)


def test_exact_ablation_and_gradients_equal_unsharded(toy_pair):
    (whole, _), (sharded, _) = toy_pair
    encoded = _toy_encoded(whole)
    config = ImportanceConfig(batch_size=4)
    expected, got = ablation_importance(whole, encoded, config), ablation_importance(sharded, encoded, config)
    changed = 0.0
    for kind in config.ablations:
        for key, value in expected[kind].items():
            assert torch.allclose(got[kind][key], value, atol=1e-5, rtol=0), (kind, key)
        changed = max(changed, float((expected[kind]["head_logprob"] - expected[kind]["clean_logprob"]).abs().max()))
    assert changed > 1e-3  # the ablations change something, so equality is not vacuous
    expected_gradient, got_gradient = gradient_importance(whole, encoded, 4), gradient_importance(sharded, encoded, 4)
    for key, value in expected_gradient.items():
        assert torch.allclose(got_gradient[key], value, atol=1e-6, rtol=1e-6), key


@pytest.mark.parametrize("pair", ["toy_pair", "llama_pair"])
def test_pruning_masked_scores_equal_unsharded(pair, request, task_file):
    (whole, _), (sharded, _) = request.getfixturevalue(pair)
    encoded = _toy_encoded(whole) if pair == "toy_pair" else encode_tiny_task(whole, task_file, items=4)
    n_layers, n_heads = int(whole.cfg.n_layers), int(whole.cfg.n_heads)
    generator = torch.Generator().manual_seed(0)
    head_masks = torch.rand(5, n_layers, n_heads, generator=generator) < 0.4
    ffn_masks = torch.rand(5, n_layers, generator=generator) < 0.5
    head_masks[0], ffn_masks[0] = False, False  # the clean model among them
    expected = masked_scores(whole, encoded, head_masks, ffn_masks, batch_size=3, masks_per_forward=2)
    got = masked_scores(sharded, encoded, head_masks, ffn_masks, batch_size=3, masks_per_forward=2)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert (expected[1:] - expected[0]).abs().max() > 1e-3


def test_llama_with_its_first_layer_on_disk_scores_equal(llama_pair):
    (whole, _), (sharded, _) = llama_pair
    assert is_offloaded(sharded)
    config = SequenceConfig(num_seeds=3)
    expected, got = score_heads(whole, config, METRICS), score_heads(sharded, config, METRICS)
    assert torch.allclose(torch.tensor(got["value"].to_numpy()), torch.tensor(expected["value"].to_numpy()),
                          atol=TOLERANCE, rtol=0)


def test_auto_map_with_a_cpu_cap_spills_to_disk_and_agrees(toy_pair, tmp_path):
    (whole, _), _ = toy_pair
    bridge, record = load_model("toy-attn-2l", device_map="auto", max_memory="cpu=400KB", offload_folder=str(tmp_path))
    assert "disk" in record.device and is_offloaded(bridge)
    tokens = torch.randint(3, 2000, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(bridge(tokens), whole(tokens), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("text, message", [
    ("everywhere", "use auto, balanced"),
    ('{"model.layers.0": "meta"}', "'meta' holds no weights"),
    ('{"model.layers.0": "gpu"}', "must be cpu, disk, mps, cuda:N or a GPU index"),
    ("{not json", "is not valid JSON"),
    ("missing.json", "does not exist"),
])
def test_bad_device_maps_are_named(text, message):
    with pytest.raises(InterpError, match=message):
        parse_device_map(text)


@pytest.mark.parametrize("text, message", [
    ("0:20GiB", "write DEVICE=SIZE"),
    ("0=lots", "must look like 20GiB"),
    ("disk=1TB", "disk has no cap"),
])
def test_bad_memory_caps_are_named(text, message):
    with pytest.raises(InterpError, match=message):
        parse_max_memory(text)


def test_placement_forms():
    assert parse_device_map("balanced") == "balanced"
    parsed = parse_device_map('{"lm_head": "1", "model.layers.0": "cuda:0"}')
    assert parsed == {"lm_head": 1, "model.layers.0": "cuda:0"}
    assert parse_max_memory('{"0": "10GiB", "cpu": "1GB"}') == {0: "10GiB", "cpu": "1GB"}
    placement = Placement.from_options(None, "cpu=1GiB")  # a cap alone asks accelerate to plan the map
    assert placement.device_map == "auto" and placement.load_kwargs("x")["max_memory"] == {"cpu": "1GiB"}
    assert Placement.from_options(None).load_kwargs("x") == {}
    with pytest.raises(InterpError, match="no effect"):
        Placement.from_options('{"lm_head": "cpu"}', "cpu=1GiB")


def test_gpu_mixed_with_offload_is_refused_in_one_line():
    check_realized_map({"model.layers.0": 0, "model.layers.1": 1})  # all-GPU: fine
    check_realized_map({"model.layers.0": "cpu", "model.layers.1": "disk"})  # all offload: fine
    with pytest.raises(InterpError, match="GPU\\(s\\) 0 and on cpu"):
        check_realized_map({"model.layers.0": 0, "model.layers.1": "cpu"})
