"""Attention knockout of induction edges: loop versions of the edges, the pattern it leaves, the toy model."""

from __future__ import annotations

import pytest
import torch

from interp.errors import InterpError
from interp.hooks import ResumedRun, pattern_hook
from interp.induction.knockout import (
    induction_edges,
    knocked_out_repeated_loss,
    knockout_hooks,
    self_contained_knockout_hooks,
    word_starts,
)


def loop_edges(tokens: list[int], starts: list[bool] | None) -> set[tuple[int, int]]:
    """The definition, position by position: (query, key) with key right after an earlier occurrence of the unit."""
    starts = [True] * len(tokens) if starts is None else starts
    edges = set()
    for query in range(len(tokens)):
        word_start = max(position for position in range(query + 1) if starts[position])
        unit = tokens[word_start : query + 1]
        for end in range(query):  # the earlier occurrence ends at `end`
            begin = end - (query - word_start)
            if begin < 0 or not starts[begin] or any(starts[begin + 1 : end + 1]):
                continue
            if tokens[begin : end + 1] == unit:
                edges.add((query, end + 1))
    return edges


def random_case(seed: int, length: int = 24, vocab: int = 5):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (3, length), generator=generator)
    starts = torch.rand(3, length, generator=generator) < 0.5
    starts[:, 0] = True
    return tokens, starts


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("granularity", ["token", "word"])
def test_edges_equal_the_loop_version(seed, granularity):
    tokens, starts = random_case(seed)
    chosen = starts if granularity == "word" else None
    edges = induction_edges(tokens, chosen)
    for row in range(tokens.shape[0]):
        expected = loop_edges(tokens[row].tolist(), None if chosen is None else chosen[row].tolist())
        assert {tuple(pair) for pair in edges[row].nonzero().tolist()} == expected
    assert not edges[:, :, 0].any(), "key 0 follows nothing, so no query row can be fully masked"


def test_word_edges_match_multi_token_words_whole():
    # words: [7] [3 4] [9] [5 4] [3 4] [8]: "4" ends two different words; only the repeat of "3 4" counts
    tokens = torch.tensor([[7, 3, 4, 9, 5, 4, 3, 4, 8]])
    starts = torch.tensor([[True, True, False, True, True, False, True, False, True]])
    word = {tuple(pair) for pair in induction_edges(tokens, starts)[0].nonzero().tolist()}
    token = {tuple(pair) for pair in induction_edges(tokens)[0].nonzero().tolist()}
    assert word == {(6, 2), (7, 3)}  # "3" -> the "4" after the first "3"; the word "3 4" -> "9" after it
    assert token == {(5, 3), (6, 2), (7, 3), (7, 6)}  # also "4" -> after "5 4"'s 4, and after "3 4"'s 4


class FakeTokenizer:
    all_special_ids = [0]

    def __init__(self, strings):
        self.strings = strings

    def convert_ids_to_tokens(self, ids):
        return [self.strings[index] for index in ids]


def test_word_starts_read_space_markers_punctuation_and_specials():
    tokenizer = FakeTokenizer(["<bos>", "Ġthe", "Ġsof", "a", "▁red", "ness", ",", "ing", "Ċ", "is"])
    tokens = torch.tensor([[0, 2, 3, 1, 4, 5, 6, 7, 8, 9]])
    expected = [True, True, False, True, True, False, True, True, True, True]
    assert word_starts(tokenizer, tokens)[0].tolist() == expected
    assert word_starts(tokenizer, torch.tensor([[3, 5]]))[0].tolist() == [True, False]  # the first token starts one


def capture_pattern(bridge, tokens, layer, hooks=()):
    captured = {}

    def keep(pattern, hook):
        captured["pattern"] = pattern.detach().clone()

    with torch.no_grad():
        logits = bridge.run_with_hooks(tokens, fwd_hooks=list(hooks) + [(pattern_hook(layer), keep)])
    return captured["pattern"], logits


def repeated_tokens(bridge, rows=2, period=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    block = torch.randint(10, min(200, bridge.cfg.d_vocab), (rows, period), generator=generator)
    bos = torch.full((rows, 1), int(bridge.tokenizer.bos_token_id or 0))
    return torch.cat([bos, block, block, block], dim=1).to(bridge.cfg.device)


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_pattern_after_knockout_is_zero_on_exactly_the_edges(tiny_models, architecture):
    bridge, _ = tiny_models[architecture]
    tokens = repeated_tokens(bridge)
    clean, _ = capture_pattern(bridge, tokens, layer=1)
    knocked, logits = capture_pattern(bridge, tokens, 1, self_contained_knockout_hooks(bridge, [(1, 2)], "token"))
    edges = induction_edges(tokens)[:, None]  # (batch, 1, query, key)
    head = knocked[:, 2:3]
    assert edges.any() and torch.all(head[edges.expand_as(head)] == 0)
    causal_rest = ~edges & torch.ones_like(edges).tril()
    assert torch.all(head[causal_rest.expand_as(head)] > 0), "every other causal edge keeps some weight"
    assert torch.allclose(head.sum(-1), torch.ones_like(head.sum(-1)), atol=1e-5), "rows renormalise"
    others = [0, 1, 3]
    assert torch.allclose(knocked[:, others], clean[:, others], atol=1e-6), "other heads of the layer are untouched"
    _, clean_logits = capture_pattern(bridge, tokens, 1)
    assert not torch.allclose(logits, clean_logits, atol=1e-4), "the knockout reaches the output"


def test_a_bridge_that_discards_score_edits_is_refused(tiny_models):
    # TransformerLens 4.3 hands OPT attention to the HF module and fires hook_attn_scores after the fact.
    bridge, _ = tiny_models["opt"]
    with pytest.raises(InterpError, match="attention knockout needs editable attention scores"):
        self_contained_knockout_hooks(bridge, [(1, 0)])


def test_stacked_copies_equal_one_head_set_at_a_time(tiny_models):
    bridge, _ = tiny_models["llama"]
    tokens = repeated_tokens(bridge, rows=2)
    head_sets = [[(1, 0)], [(1, 2), (0, 1)], []]
    masks = torch.zeros(len(head_sets), 2, 4, dtype=torch.bool)
    for copy, heads in enumerate(head_sets):
        for layer, head in heads:
            masks[copy, layer, head] = True
    edges = induction_edges(tokens, word_starts(bridge.tokenizer, tokens))
    with torch.no_grad():
        stacked = bridge.run_with_hooks(tokens.repeat(len(head_sets), 1), fwd_hooks=knockout_hooks(edges, masks))
        for copy, heads in enumerate(head_sets):
            alone = bridge.run_with_hooks(tokens, fwd_hooks=self_contained_knockout_hooks(bridge, heads, "word"))
            assert torch.allclose(stacked[copy * 2 : copy * 2 + 2], alone, atol=1e-5)
        # The layer-resumed forward of exact ablation takes the same hooks.
        run = ResumedRun(bridge, tokens, lambda final: bridge.unembed(bridge.ln_final(final)))
        resumed = run.resume(0, len(head_sets), knockout_hooks(edges, masks))
    assert torch.allclose(resumed.flatten(0, 1), stacked, atol=1e-4)


def test_bad_heads_and_granularity_are_named(tiny_models):
    bridge, _ = tiny_models["gpt2"]
    with pytest.raises(InterpError, match="head L5H0 does not exist"):
        self_contained_knockout_hooks(bridge, [(5, 0)])
    with pytest.raises(InterpError, match="granularity"):
        self_contained_knockout_hooks(bridge, [(0, 0)], granularity="sentence")


@pytest.fixture(scope="module")
def toy():
    from interp.models.loading import load_model

    return load_model("toy-attn-2l")[0]


def test_toy_knockout_of_the_induction_head_raises_the_loss_on_repeats_like_ablation(toy):
    from interp.induction.attention import ablated_repeated_loss

    clean = ablated_repeated_loss(toy, [])
    ablated = ablated_repeated_loss(toy, [(1, 2)])
    knocked = knocked_out_repeated_loss(toy, [(1, 2)], granularity="token")
    later = lambda table: table[table["repeat"] >= 2]["loss"].mean()  # noqa: E731
    first = lambda table: table[table["repeat"] == 1]["loss"].to_numpy()  # noqa: E731
    # Repeat 1 of a random sequence has no earlier occurrences, so no edges: the loss is unchanged.
    assert first(knocked) == pytest.approx(first(clean), abs=1e-5)
    rise_ablated, rise_knocked = later(ablated) - later(clean), later(knocked) - later(clean)
    assert rise_ablated > 0.3
    # Measured: knockout +1.05, zero ablation +0.46 (the head's attention moves to wrong tokens and copies them).
    assert 0.8 * rise_ablated < rise_knocked < 3.0 * rise_ablated


def test_toy_knockout_of_the_previous_token_head_changes_almost_nothing(toy):
    from interp.induction.attention import ablated_repeated_loss

    clean = ablated_repeated_loss(toy, [])["loss"].mean()
    # L0H0 is the previous-token head: ablating it wrecks induction, but it has almost no induction edges.
    assert ablated_repeated_loss(toy, [(0, 0)])["loss"].mean() - clean > 1.0
    assert abs(knocked_out_repeated_loss(toy, [(0, 0)], granularity="token")["loss"].mean() - clean) < 0.02


def test_packed_rows_get_the_edges_of_their_unpacked_sequences(tiny_models, tmp_path):
    import json

    from interp.induction.knockout import previous_positions
    from interp.tasks.evaluation import encode_prompts, iterate_batches, logits_to_target_logprobs, sum_by_row
    from interp.tasks.prompts import PromptConfig, build_prompts, read_task_file

    bridge, _ = tiny_models["llama"]
    choices = ["zqx w1 zqx", "w2 w3 w2 w3", "w1 zqxv w1"]  # multi-token continuations, some words split in pieces
    path = tmp_path / "multi.jsonl"
    path.write_text("".join(json.dumps({"input": f"w{i} zqx w{i + 1}", "choices": choices, "answer": choices[i % 3]})
                            + "\n" for i in range(30)))
    encoded = encode_prompts(bridge.tokenizer, build_prompts(read_task_file(path), 2, PromptConfig(max_items=5)))
    masks = torch.zeros(3, 2, 4, dtype=torch.bool)
    masks[0, 1, 2] = masks[1, 0, 1] = masks[1, 1, 0] = True  # copy 2 removes nothing

    def scores(share_context: bool) -> tuple[torch.Tensor, bool]:
        out, packed = torch.zeros(3, encoded.n_sequences, dtype=torch.float64), False
        for batch in iterate_batches(encoded, list(range(encoded.n_sequences)), 4, "cpu", 2, share_context):
            visible = None if batch.attention_mask is None else batch.attention_mask[:, 0] == 0
            packed |= visible is not None
            previous = None if visible is None else previous_positions(visible)
            edges = induction_edges(batch.tokens, word_starts(bridge.tokenizer, batch.tokens, previous), visible)
            kwargs = {name: value.repeat(3, *([1] * (value.dim() - 1)))
                      for name, value in batch.forward_kwargs().items()}
            with torch.no_grad():
                logits = bridge.run_with_hooks(batch.tokens.repeat(3, 1), fwd_hooks=knockout_hooks(edges, masks),
                                               **kwargs)
            stacked = logits.reshape(3, -1, *logits.shape[1:])[:, batch.target_rows, batch.target_positions]
            out[:, batch.sequence_ids] = sum_by_row(logits_to_target_logprobs(stacked, batch), batch).double()
        return out, packed

    unpacked, _ = scores(False)
    shared, packed = scores(True)
    assert packed, "some rows hold several multi-token continuations"
    assert torch.allclose(shared, unpacked, atol=1e-4)
    assert not torch.allclose(unpacked[0], unpacked[2], atol=1e-3), "the knockout changes the scores"


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_causal_knockout_kind_equals_one_sequence_at_a_time(tiny_models, task_file, architecture):
    """`interp ablate --ablations knockout`: stacked, resumed, shared-context sets vs one plain forward per sequence."""
    from conftest import encode_tiny_task

    from interp.importance.causal import head_set_scores

    bridge, _ = tiny_models[architecture]
    encoded = encode_tiny_task(bridge, task_file, shots=3, items=4, choices=3)
    sets = torch.zeros(3, 2, 4, dtype=torch.bool)
    sets[1, 1, 2] = True
    sets[2, 0, 1] = sets[2, 1, :] = True
    got = head_set_scores(bridge, encoded, sets, "knockout", batch_size=3, sets_per_forward=2)
    for index, mask in enumerate(sets):
        hooks = self_contained_knockout_hooks(bridge, [tuple(pair) for pair in torch.nonzero(mask).tolist()], "word")
        for sequence, tokens in enumerate(encoded.tokens):
            with torch.no_grad():
                logits = bridge.run_with_hooks(torch.tensor([tokens]), fwd_hooks=hooks)[0]
            log_probs = torch.log_softmax(logits.double(), dim=-1)
            start = encoded.context_lengths[sequence]
            reference = sum(float(log_probs[position - 1, tokens[position]]) for position in range(start, len(tokens)))
            assert got[index, sequence].item() == pytest.approx(reference, abs=1e-4)
    assert float((got[2] - got[0]).abs().max()) > 1e-3, "knocking out a layer's edges changes the scores"


def test_causal_repeated_loss_with_knockout_matches_the_toy_table(toy):
    from interp.importance.causal import repeated_loss_by_head_set
    from interp.induction.sequences import SequenceConfig

    config = SequenceConfig(protocol="olsson", num_seeds=3)
    sets = torch.zeros(2, 2, 4, dtype=torch.bool)
    sets[1, 1, 2] = True
    losses, seeds = repeated_loss_by_head_set(toy, sets, config, "knockout")
    table = knocked_out_repeated_loss(toy, [(1, 2)], config, granularity="word")
    later = table[table["repeat"] >= 2].groupby("seed")["loss"].mean().reindex(seeds).to_numpy()
    assert torch.allclose(losses[1, :, 1], torch.tensor(later, dtype=torch.float64), atol=1e-4)
    assert bool((losses[1, :, 1] > losses[0, :, 1] + 0.3).all()), "knockout of L1H2 raises the loss on repeats"
