"""The context guard: no model is ever fed more tokens than it reads, on every path that feeds one.

Paths: the model's context itself (config field, else the tokenizer's limit), the induction
protocols (capped, dropped, or a one-line error), task prompts, the dynamics windows and the
layer-dropping text windows.  ``toy-attn-2l`` reads 128 tokens; its L1H2 is the induction head.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from interp.errors import InterpError
from interp.induction.sequences import SequenceConfig, make_batches
from interp.models.context import ContextLimit, context_limit, model_context


@pytest.fixture(scope="module")
def toy():
    from interp.models.loading import load_model

    return load_model("toy-attn-2l", device="cpu")


@pytest.fixture(scope="module")
def bloom_dir(tmp_path_factory):
    """A tiny BLOOM (ALiBi: its config states no context) whose tokenizer says 64 tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BloomConfig, BloomForCausalLM, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("bloom")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    words = " ".join(f"w{index}" for index in range(200))
    tokenizer.train_from_iterator(
        [words] * 5,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<bos>", "<eos>", "<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", model_max_length=64
    )
    fast.save_pretrained(directory)
    config = BloomConfig(
        vocab_size=len(fast), hidden_size=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=1, pad_token_id=2
    )
    model = BloomForCausalLM(config)
    model.config.architectures = ["BloomForCausalLM"]
    model.save_pretrained(directory)
    return directory


# --------------------------------------------------------------------------- the model's context


def test_context_comes_from_the_config_before_the_tokenizer():
    both = context_limit(
        SimpleNamespace(n_positions=1024, max_position_embeddings=2048), SimpleNamespace(model_max_length=512)
    )
    assert both == ContextLimit(1024, "config.n_positions")


def test_a_tokenizer_without_a_limit_is_not_a_limit():
    assert context_limit(SimpleNamespace(), SimpleNamespace(model_max_length=int(1e30))) == ContextLimit(
        None, "none stated"
    )
    assert context_limit(SimpleNamespace(max_position_embeddings=True), None).tokens is None  # a flag is not a length


def test_a_model_that_states_no_context_gets_its_tokenizers_limit(bloom_dir):
    from interp.models.loading import load_model

    bridge, _ = load_model(str(bloom_dir), device="cpu")
    assert model_context(bridge) == ContextLimit(64, "tokenizer.model_max_length")
    assert bridge.cfg.n_ctx == 64  # TransformerLens's own fallback would have said 2048
    from interp.induction.scores import score_heads

    with pytest.raises(
        InterpError, match=r"needs 101 tokens but the model reads at most 64 \(tokenizer.model_max_length\)"
    ):
        score_heads(bridge, SequenceConfig(protocol="olsson", num_seeds=1), metrics=("prefix_matching",))


def test_the_toy_models_context_is_its_position_table(toy):
    bridge, _ = toy
    assert model_context(bridge) == ContextLimit(128, "config.max_position_embeddings")


# --------------------------------------------------------------------------- induction protocols


def test_capped_seeds_keep_the_seed_count_and_fit():
    config = SequenceConfig(protocol="bansal", num_seeds=20, max_length=128)
    assert config.seeds() == list(range(20))
    assert max(config.sequence_length(config.period(seed)) for seed in config.seeds()) == 125
    report = config.fit_report()
    assert report["capped_seeds"] == list(range(4, 20)) and report["longest_sequence"] == 125
    assert "capped at L = 31" in config.fit_note()


def test_dropped_seeds_keep_each_seeds_length():
    config = SequenceConfig(protocol="bansal", num_seeds=20, max_length=128, fit="drop")
    assert config.seeds() == [0, 1, 2, 3] and [config.period(seed) for seed in config.seeds()] == [25, 27, 29, 31]
    assert config.fit_report()["dropped_seeds"] == list(range(4, 20))


def test_a_protocol_that_cannot_fit_stops_with_one_line():
    with pytest.raises(InterpError) as error:
        SequenceConfig(protocol="olsson", num_seeds=3, max_length=64)
    assert "101 tokens" in str(error.value) and "\n" not in str(error.value)


def test_a_model_wide_enough_changes_nothing():
    config = SequenceConfig(protocol="bansal", num_seeds=5, max_length=8192)
    assert config.fit_note() is None and [config.period(seed) for seed in config.seeds()] == [25, 27, 29, 31, 33]


def test_make_batches_refuses_a_sequence_longer_than_the_context(toy):
    bridge, _ = toy
    config = SequenceConfig(protocol="bansal", num_seeds=6)
    with pytest.raises(InterpError, match="seed 4 .* needs 133 tokens but the model reads at most 128"):
        make_batches(bridge.tokenizer, config, "repeated", context=model_context(bridge))
    fitted = SequenceConfig(protocol="bansal", num_seeds=6, max_length=128)
    batches = make_batches(bridge.tokenizer, fitted, "repeated", context=model_context(bridge))
    assert max(int(batch.lengths.max()) for batch in batches) <= 128


def test_induction_job_on_the_toy_model_reports_its_induction_head(toy, tmp_path):
    """The issue's measurement: the default (bansal) protocol on a 128-token model scored L1H2 at 0.34."""
    from interp.induction.job import InductionConfig, run_induction

    lines: list[str] = []
    result = run_induction(
        toy,
        tmp_path,
        InductionConfig(num_seeds=8, metrics=("prefix_matching",)),
        figures=False,
        progress=False,
        echo=lines.append,
    )
    scores = result.scores.dropna(subset=["layer"]).set_index(["layer", "head"])
    assert scores.loc[(1, 2), "mean"] >= 0.7
    assert scores["mean"].idxmax() in {(1, 0), (1, 1), (1, 2), (1, 3)}
    context = result.metadata["context"]
    assert context["tokens"] == 128 and context["capped_seeds"] == [4, 5, 6, 7] and context["longest_sequence"] <= 128
    assert any("capped at L = 31" in line for line in lines)


# --------------------------------------------------------------------------- task prompts, dynamics, text windows


def _prompt(words: int, demonstrations: tuple[int, ...]):
    from interp.tasks.prompts import Prompt

    return Prompt(
        item_index=7,
        context=" ".join(["the"] * words) + " ->",
        continuations=(" a", " b"),
        answer_index=0,
        demo_indices=demonstrations,
    )


def test_a_long_few_shot_prompt_advises_fewer_shots(toy):
    from interp.tasks.evaluation import evaluate_prompts

    bridge, _ = toy
    with pytest.raises(InterpError, match=r"item 7 does not fit .* limit 128; use fewer shots \(this prompt has 2 "):
        evaluate_prompts(bridge, [_prompt(300, (1, 2))], task_name="long")


def test_a_long_zero_shot_item_does_not_advise_fewer_shots(toy):
    from interp.tasks.evaluation import encode_prompts

    bridge, _ = toy
    with pytest.raises(InterpError) as error:
        encode_prompts(bridge.tokenizer, [_prompt(300, ())], model_context(bridge).tokens, "long")
    assert "shots" not in str(error.value) and "the item alone is longer than the context" in str(error.value)


def test_dynamics_stops_on_sequences_or_windows_longer_than_the_context(toy):
    from interp.toy.dynamics import DynamicsConfig, score_checkpoint

    bridge, _ = toy
    with pytest.raises(InterpError, match="10 seeds of the bansal protocol needs 173 tokens .* at most 128"):
        score_checkpoint(bridge, DynamicsConfig(protocol="bansal", num_seeds=10), ["some text"] * 10)
    with pytest.raises(InterpError, match="--icl-length 200 needs 200 tokens"):
        score_checkpoint(bridge, DynamicsConfig(num_seeds=1, metrics=("prefix_matching",), icl_length=200), ["text"])


def test_layer_dropping_text_windows_fit_the_context(toy, task_file, tmp_path):
    from interp.pruning.sweeps import LayerSweepConfig, run_layer_sweep

    lines: list[str] = []
    config = LayerSweepConfig(block_sizes=(1,), text_windows=2, text_length=4096, save_pruned=False, max_items=2)
    result = run_layer_sweep(
        toy, [str(task_file)], [0], tmp_path, config, figures=False, progress=False, echo=lines.append
    )
    assert result.metadata["text_length_used"] == 128 and result.metadata["context"]["tokens"] == 128
    assert any("text windows of 128 tokens, not 4096" in line for line in lines)


def test_the_viewer_and_the_causal_test_refuse_repeated_sequences_past_the_context(toy):
    import torch

    from interp.explore.viewer import repeated_tokens
    from interp.importance.causal import repeated_loss_by_head_set

    bridge, _ = toy
    with pytest.raises(InterpError, match="128"):
        repeated_tokens(bridge, length=40)  # BOS + 4 x 40 = 161 tokens
    tokens, period = repeated_tokens(bridge, length=31)  # 125 tokens fit
    assert tokens.shape == (1, 125) and period == 31
    masks = torch.zeros(1, bridge.cfg.n_layers, bridge.cfg.n_heads, dtype=torch.bool)
    with pytest.raises(InterpError, match="128"):
        repeated_loss_by_head_set(bridge, masks, SequenceConfig(protocol="olsson", num_seeds=2, base_length=40))
