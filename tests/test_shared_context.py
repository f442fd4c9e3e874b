"""Shared-context scoring (one row per prompt) equals the per-choice path (one row per (prompt, choice)).

Tolerance: 1e-5 on summed continuation log-probabilities (float32 models; the packed forward only
reorders the same arithmetic, and the observed differences are ~1e-6).
"""

from __future__ import annotations

import pytest
import torch

from interp.importance.methods import ImportanceConfig, ablation_importance, activation_means
from interp.pruning.components import masked_scores, masked_scores_reference
from interp.tasks.evaluation import count_batches, encode_prompts, iterate_batches, score_sequences
from interp.tasks.prompts import Prompt

TOLERANCE = 1e-5

TINY_WORDS = ["w3 w4", "w10", "cat sat on", "w100 w7 dog", "mat", "w21 the"]
TOY_WORDS = ["the Lord", "God", "and the king of Israel", "said unto him", "David", "in the house"]


def _mixed_prompts(words: list[str], context_words: str) -> list[Prompt]:
    """Prompts whose choices mix single- and multi-token continuations of different lengths."""
    prompts = []
    for item in range(5):
        choices = tuple(" " + words[(item + offset) % len(words)] for offset in range(2 + item % 3))
        context = f"{context_words} {words[item % len(words)]} ->"
        prompts.append(Prompt(item_index=item, context=context, continuations=choices,
                              answer_index=item % len(choices)))
    return prompts


def _single_token_prompts(bridge) -> list[Prompt]:
    """Four single-token choices per prompt (picked from the tokenizer's own pieces)."""
    singles = []
    for token_id in range(3, 512):
        piece = bridge.tokenizer.decode([token_id])
        if piece.startswith(" ") and len(bridge.tokenizer(piece, add_special_tokens=False)["input_ids"]) == 1:
            singles.append(piece)
    assert len(singles) >= 5, singles
    return [Prompt(item_index=item, context=f"the cat sat on the mat {item} ->",
                   continuations=tuple(singles[item % 2 : item % 2 + 4]),
                   answer_index=item % 4) for item in range(4)]


@pytest.fixture(scope="module")
def toy_bridge():
    from interp.models.loading import load_model

    return load_model("toy-attn-2l", device="cpu")[0]


def _models(tiny_models, toy_bridge):
    return [(name, bridge) for name, (bridge, _) in tiny_models.items()] + [("toy-attn-2l", toy_bridge)]


def test_shared_context_equals_per_choice_scores(tiny_models, toy_bridge):
    for name, bridge in _models(tiny_models, toy_bridge):
        words, context = (TOY_WORDS, "In the beginning God created") if name == "toy-attn-2l" else (TINY_WORDS,
                                                                                                    "w1 w2 w3")
        encoded = encode_prompts(bridge.tokenizer, _mixed_prompts(words, context))
        batches = list(iterate_batches(encoded, range(encoded.n_sequences), 3, "cpu", 0, share_context=True))
        assert any(batch.attention_mask is not None for batch in batches), name  # the block mask is exercised
        assert len(batches) == 2  # 5 prompts, 3 rows a batch: rows are prompts, not sequences
        shared = score_sequences(bridge, encoded, batch_size=3, share_context=True)
        separate = score_sequences(bridge, encoded, batch_size=4, share_context=False)
        assert torch.equal(shared.n_tokens, separate.n_tokens)
        assert torch.allclose(shared.logprob_sum, separate.logprob_sum, atol=TOLERANCE, rtol=0), name


def test_single_token_choices_read_from_one_context_position(tiny_models):
    bridge, _ = tiny_models["llama"]
    encoded = encode_prompts(bridge.tokenizer, _single_token_prompts(bridge))
    (batch,) = iterate_batches(encoded, range(encoded.n_sequences), 8, "cpu", 0, share_context=True)
    context_width = max(encoded.context_lengths)
    assert batch.tokens.shape == (4, context_width)  # the rows are the contexts, nothing else
    assert batch.attention_mask is None and batch.forward_kwargs() == {}
    assert len(batch.target_rows) == 16 and batch.target_positions.reshape(4, 4).unique(dim=1).shape[1] == 1
    shared = score_sequences(bridge, encoded, batch_size=8, share_context=True)
    separate = score_sequences(bridge, encoded, batch_size=8, share_context=False)
    assert torch.allclose(shared.logprob_sum, separate.logprob_sum, atol=TOLERANCE, rtol=0)


def test_masked_scores_shared_equal_the_per_choice_reference(tiny_models):
    for name, (bridge, _) in tiny_models.items():
        encoded = encode_prompts(bridge.tokenizer, _mixed_prompts(TINY_WORDS, "w1 w2 w3"))
        n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
        head_masks = torch.zeros(3, n_layers, n_heads, dtype=torch.bool)
        head_masks[1, 0, 1] = head_masks[2, 1, :2] = True
        ffn_masks = torch.zeros(3, n_layers, dtype=torch.bool)
        ffn_masks[2, 0] = True
        means = activation_means(bridge, encoded, batch_size=4)
        for fill in (None, means):
            got = masked_scores(bridge, encoded, head_masks, ffn_masks, fill, batch_size=2, masks_per_forward=2)
            for mask in range(3):
                reference = masked_scores_reference(bridge, encoded, head_masks[mask], ffn_masks[mask], fill,
                                                    batch_size=5)
                assert torch.allclose(got[mask], reference, atol=TOLERANCE, rtol=0), (name, mask, fill is None)
            assert float((got[2] - got[0]).abs().max()) > 1e-4  # the masks change something


@pytest.mark.parametrize("kind", ["zero", "mean", "resample"])
def test_exact_ablation_shared_equals_per_choice(tiny_models, kind):
    bridge, _ = tiny_models["gpt2"]  # learned positions: wrong position ids would show at once
    encoded = encode_prompts(bridge.tokenizer, _mixed_prompts(TINY_WORDS, "w1 w2 w3"))
    config = ImportanceConfig(ablations=(kind,), batch_size=2)
    shared = ablation_importance(bridge, encoded, config, share_context=True)[kind]
    separate = ablation_importance(bridge, encoded, config, share_context=False)[kind]
    for key in ("clean_logprob", "head_logprob", "ffn_logprob"):
        assert torch.allclose(shared[key], separate[key], atol=TOLERANCE, rtol=0), key


def test_count_batches_is_what_iterate_batches_yields(tiny_models):
    bridge, _ = tiny_models["gpt2"]
    encoded = encode_prompts(bridge.tokenizer, _mixed_prompts(TINY_WORDS, "w1 w2 w3"))
    for share_context in (True, False):
        for batch_size in (1, 2, 3, 4, 100):
            yielded = list(iterate_batches(encoded, range(encoded.n_sequences), batch_size, "cpu", 0, share_context))
            assert count_batches(encoded, batch_size, share_context) == len(yielded), (share_context, batch_size)
