"""Each score against a plain loop version of its definition, written like the paper's code."""

from __future__ import annotations

import pytest
import torch

from interp.induction.scores import (
    ATTENTION_METRICS,
    attention_scores,
    copying_scores,
    ov_copying_scores,
    prefix_matching_scores,
    repeated_sequence_loss,
    score_heads,
)
from interp.induction.sequences import SequenceConfig, make_batches

TOLERANCE = dict(rtol=1e-4, atol=1e-5)


# ---- loop references ------------------------------------------------------------------------


def loop_prefix_matching(pattern, length, period):
    """Bansal et al.: queries in repeats 2..4, attention to j - kL + 1 for every earlier repeat k."""
    n_heads = pattern.shape[0]
    scores = torch.zeros(n_heads, dtype=torch.float64)
    for head in range(n_heads):
        total, count = 0.0, 0
        for query in range(period + 1, length):
            for k in range(1, 4):
                if query - k * period >= 1:
                    total += float(pattern[head, query, query - k * period + 1])
            count += 1
        scores[head] = total / count
    return scores


def loop_other_attention(pattern, tokens, length):
    """previous token, duplicate token, induction stripe, straight from their definitions."""
    n_heads = pattern.shape[0]
    result = torch.zeros(3, n_heads, dtype=torch.float64)
    for head in range(n_heads):
        previous = sum(float(pattern[head, query, query - 1]) for query in range(1, length)) / (length - 1)
        duplicate_total = stripe_total = 0.0
        count = 0
        for query in range(length):
            earlier = [key for key in range(query) if tokens[key] == tokens[query]]
            if not earlier:
                continue
            count += 1
            duplicate_total += sum(float(pattern[head, query, key]) for key in earlier)
            stripe_total += float(pattern[head, query, earlier[-1] + 1])
        result[:, head] = torch.tensor([previous, duplicate_total / count, stripe_total / count])
    return result


def loop_copying(pattern, vectors, output_weight, unembed, tokens, length, output_bias=None, unembed_bias=None):
    """The reference loop: full-vocabulary softmax at every position, one head at a time."""
    n_heads = pattern.shape[0]
    scores = torch.zeros(n_heads, dtype=torch.float64)
    for head in range(n_heads):
        total = 0.0
        for position in range(length):
            output = vectors[position, head].double() @ output_weight[head].double()
            if output_bias is not None:
                output = output + output_bias.double()
            logits = output @ unembed.double()
            if unembed_bias is not None:
                logits = logits + unembed_bias.double()
            probabilities = torch.softmax(logits, dim=-1)[tokens[: position + 1]]
            above = torch.relu(probabilities - probabilities.mean())
            attended = int(torch.argmax(pattern[head, position, : position + 1]))
            total += float((above[attended] / above.sum()).detach()) if above.sum() > 0 else 0.0
        scores[head] = total / length
    return scores


def loop_next_token_loss(logits, tokens, length):
    """Cross-entropy of each next token, one position at a time, in float64."""
    return torch.tensor([float(-torch.log_softmax(logits[position].double(), dim=-1)[tokens[position + 1]])
                         for position in range(length - 1)], dtype=torch.float64)


# ---- helpers --------------------------------------------------------------------------------


def _cache_for(bridge, tokens, hooks=()):
    store = {}

    def saver(name):  # keyed by the name asked for: hook.name may be the canonical, un-aliased one
        def save(activation, hook):
            store[name] = activation.detach().clone()
        return save

    names = [f"blocks.{layer}.attn.{name}" for layer in range(bridge.cfg.n_layers)
             for name in ("hook_pattern", "hook_z", "hook_v")]
    with torch.no_grad():
        bridge.run_with_hooks(tokens, fwd_hooks=list(hooks) + [(name, saver(name)) for name in names])
    return store


def _repeated_batch(bridge, seeds=(0, 1, 2)):
    (batch,) = make_batches(bridge.tokenizer, SequenceConfig(num_seeds=len(seeds)), "repeated", 10**6, list(seeds))
    return batch


# ---- tests ----------------------------------------------------------------------------------


def test_prefix_matching_matches_the_loop_on_every_architecture(tiny_model):
    bridge, _ = tiny_model
    batch = _repeated_batch(bridge)
    cache = _cache_for(bridge, batch.tokens)
    for layer in range(bridge.cfg.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        fast = prefix_matching_scores(pattern, batch.tokens, batch.lengths)
        for row in range(len(batch.seeds)):
            expected = loop_prefix_matching(pattern[row], int(batch.lengths[row]), int(batch.periods[row]))
            torch.testing.assert_close(fast[row].double(), expected, **TOLERANCE)


def test_other_attention_metrics_match_the_loop(tiny_model):
    bridge, _ = tiny_model
    batch = _repeated_batch(bridge, seeds=(0, 3))
    pattern = _cache_for(bridge, batch.tokens)["blocks.1.attn.hook_pattern"]
    fast = attention_scores(pattern, batch.tokens, batch.lengths)
    order = [ATTENTION_METRICS.index(name) for name in ("previous_token", "duplicate_token", "induction_stripe")]
    for row in range(2):
        expected = loop_other_attention(pattern[row], batch.tokens[row].tolist(), int(batch.lengths[row]))
        torch.testing.assert_close(fast[order, row].double(), expected, **TOLERANCE)


def test_ideal_induction_pattern_scores_one_and_uniform_scores_low():
    period, repeats = 6, 4
    tokens = torch.cat([torch.tensor([0]), torch.arange(10, 10 + period).repeat(repeats)])[None]
    length = tokens.shape[1]
    ideal = torch.zeros(1, 1, length, length)
    ideal[0, 0, 0, 0] = 1.0
    for query in range(1, length):
        ideal[0, 0, query, query - period + 1 if query > period else 0] = 1.0
    uniform = torch.tril(torch.ones(length, length))
    uniform = (uniform / uniform.sum(-1, keepdim=True))[None, None]
    lengths = torch.tensor([length])
    assert prefix_matching_scores(ideal, tokens, lengths).item() == pytest.approx(1.0)
    assert prefix_matching_scores(uniform, tokens, lengths).item() < 0.2


@pytest.mark.parametrize("variant", ["olsson", "reference"])
def test_copying_matches_the_full_vocabulary_loop(tiny_model, variant):
    """Also checks grouped-query attention: the loop picks KV head h // group by hand."""
    bridge, record = tiny_model
    (batch,) = make_batches(bridge.tokenizer, SequenceConfig(protocol="olsson", num_seeds=2), "unrepeated", 10**6)
    cache = _cache_for(bridge, batch.tokens)
    group = record.n_heads // record.n_kv_heads
    for layer in range(record.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        if variant == "olsson":
            vectors = cache[f"blocks.{layer}.attn.hook_z"]
        else:
            kv_value = cache[f"blocks.{layer}.attn.hook_v"]
            vectors = torch.stack([kv_value[:, :, head // group] for head in range(record.n_heads)], dim=2)
        bias = None
        if variant == "reference":
            try:
                bias = bridge.b_O[layer]
            except AttributeError:
                bias = None
        fast = copying_scores(pattern, vectors, bridge.W_O[layer], bridge.W_U, batch.tokens, batch.lengths,
                              output_bias=bias)
        for row in range(2):
            expected = loop_copying(pattern[row], vectors[row], bridge.W_O[layer], bridge.W_U,
                                    batch.tokens[row], int(batch.lengths[row]), output_bias=bias)
            torch.testing.assert_close(fast[row].double(), expected, **TOLERANCE)


def test_copying_of_a_pure_copying_head_is_one():
    """A head whose output unembeds to the attended token's own logit direction copies perfectly."""
    vocab, d_model = 20, 20
    tokens = torch.tensor([[0, 3, 7, 11, 15]])
    length = tokens.shape[1]
    pattern = torch.zeros(1, 1, length, length)
    attended = torch.tensor([0, 0, 1, 2, 1])
    pattern[0, 0, torch.arange(length), attended] = 1.0
    embed = torch.eye(vocab) * 10
    vectors = embed[tokens[0, attended]][None, :, None, :]  # z = the attended token's embedding
    score = copying_scores(pattern, vectors, torch.eye(d_model)[None], torch.eye(d_model), tokens,
                           torch.tensor([length]))
    # position 0 has a single attendable token (score 0 by definition); the other 4 copy exactly
    assert score.item() == pytest.approx(4 / 5)


def test_ov_copying_matches_the_vocabulary_sized_eigendecomposition(tiny_model):
    bridge, record = tiny_model
    group = record.n_heads // record.n_kv_heads
    value_weight = bridge.W_V.repeat_interleave(group, dim=1)
    fast = ov_copying_scores(bridge.W_E, value_weight, bridge.W_O, bridge.W_U)
    for layer in range(record.n_layers):
        for head in range(record.n_heads):
            circuit = (bridge.W_E.double() @ bridge.W_V[layer, head // group].double()
                       @ bridge.W_O[layer, head].double() @ bridge.W_U.double())
            eigenvalues = torch.linalg.eigvals(circuit)
            expected = eigenvalues.sum().real / eigenvalues.abs().sum()
            assert fast[layer, head].item() == pytest.approx(expected.item(), abs=1e-4)


def test_ov_copying_is_one_for_an_identity_circuit_and_minus_one_for_its_negation():
    embed = torch.randn(30, 8, dtype=torch.float64)
    value = torch.eye(8, dtype=torch.float64)[None, None, :, :4]
    output = torch.eye(8, dtype=torch.float64)[None, None, :4, :]
    unembed = torch.linalg.pinv(embed)  # W_U W_E = identity on the model space
    assert ov_copying_scores(embed, value, output, unembed).item() == pytest.approx(1.0)
    assert ov_copying_scores(embed, value, -output, unembed).item() == pytest.approx(-1.0)


def test_batched_equals_one_sequence_at_a_time(tiny_model):
    bridge, _ = tiny_model
    config = SequenceConfig(num_seeds=4)
    together = score_heads(bridge, config, max_batch_tokens=10**6)
    alone = score_heads(bridge, config, max_batch_tokens=1)
    keys = ["seed", "layer", "head", "metric"]
    together, alone = together.sort_values(keys).reset_index(drop=True), alone.sort_values(keys).reset_index(drop=True)
    assert (together[keys] == alone[keys]).all().all()
    torch.testing.assert_close(torch.tensor(together["value"].to_numpy()), torch.tensor(alone["value"].to_numpy()),
                               rtol=1e-5, atol=1e-5)


def test_embedding_source_feeds_every_layer_the_embeddings(tiny_model):
    """Layer 0 sees the embeddings either way; later layers differ between the two sources."""
    bridge, _ = tiny_model
    config = SequenceConfig(protocol="olsson", num_seeds=2)
    embeddings = score_heads(bridge, config, ("copying",),
                             copying_source="embeddings").set_index(["seed", "layer", "head"])
    residual = score_heads(bridge, config, ("copying",), copying_source="residual").set_index(["seed", "layer", "head"])
    assert embeddings.loc[(slice(None), 0), "value"].equals(residual.loc[(slice(None), 0), "value"])
    assert not embeddings.loc[(slice(None), 1), "value"].equals(residual.loc[(slice(None), 1), "value"])


def test_scores_are_finite_bounded_and_deterministic(tiny_model):
    bridge, record = tiny_model
    config = SequenceConfig(num_seeds=2)
    first, second = score_heads(bridge, config), score_heads(bridge, config)
    assert first["value"].notna().all()
    assert (first["value"] == second["value"]).all()
    attention_like = first[first["metric"] != "ov_copying"]
    assert attention_like["value"].between(0.0, 1.0 + 1e-6).all()
    assert len(first.query("metric == 'prefix_matching'")) == 2 * record.n_layers * record.n_heads


@pytest.mark.slow
def test_embedded_model_has_mid_layer_induction_heads(smollm2):
    bridge, record = smollm2
    table, loss = score_heads(bridge, SequenceConfig(protocol="olsson", num_seeds=2),
                              ("prefix_matching", "copying"), loss=True)
    prefix = table[table.metric == "prefix_matching"].groupby(["layer", "head"])["value"].mean()
    best_layer, _ = prefix.idxmax()
    assert prefix.max() > 0.6, "SmolLM2 has strong induction heads (about 0.9 at L18H6)"
    assert 10 <= best_layer <= 25, f"induction heads sit in the middle layers, found layer {best_layer}"
    assert prefix.loc[0:2].max() < 0.3, "the first layers have no prefix-matching heads"
    by_repeat = loss.groupby("repeat")["loss"].mean()
    assert by_repeat[2:].mean() < by_repeat[1] - 5, "in-context copying must cut the loss on repeats"
    copying = table[table.metric == "copying"]["value"]
    assert copying.between(0, 1).all()


@pytest.mark.parametrize("variant", ["olsson", "reference"])
def test_score_heads_copying_end_to_end_matches_the_loop(tiny_model, variant):
    """The hooked pipeline (residual source) equals the loop on a plain cached forward pass."""
    bridge, record = tiny_model
    config = SequenceConfig(protocol="olsson", num_seeds=1)
    (batch,) = make_batches(bridge.tokenizer, config, "unrepeated", 10**6)
    cache = _cache_for(bridge, batch.tokens)
    table = score_heads(bridge, config, ("copying",), copying_variant=variant, copying_source="residual")
    group = record.n_heads // record.n_kv_heads
    for layer in range(record.n_layers):
        vectors = cache[f"blocks.{layer}.attn.hook_z"]
        bias = None
        if variant == "reference":
            kv_value = cache[f"blocks.{layer}.attn.hook_v"]
            vectors = torch.stack([kv_value[:, :, head // group] for head in range(record.n_heads)], dim=2)
            try:
                bias = bridge.b_O[layer]
            except AttributeError:
                bias = None
        expected = loop_copying(cache[f"blocks.{layer}.attn.hook_pattern"][0], vectors[0].detach(),
                                bridge.W_O[layer].detach(),
                                bridge.W_U.detach(), batch.tokens[0], int(batch.lengths[0]), output_bias=bias)
        got = torch.tensor(table[table.layer == layer].sort_values("head")["value"].to_numpy(), dtype=torch.float64)
        torch.testing.assert_close(got, expected, **TOLERANCE)


def test_mlp_skipping_leaves_embedding_fed_copying_unchanged(tiny_model, monkeypatch):
    """The copying pass skips MLPs whose output is discarded; scores must not move."""
    import interp.induction.scores as scores

    bridge, _ = tiny_model
    config = SequenceConfig(protocol="olsson", num_seeds=2)
    fast = score_heads(bridge, config, ("copying",))
    monkeypatch.setattr(scores, "_skip_mlp_hooks", lambda n_layers: [])
    full = score_heads(bridge, config, ("copying",))
    torch.testing.assert_close(torch.tensor(fast["value"].to_numpy()), torch.tensor(full["value"].to_numpy()),
                               rtol=1e-5, atol=1e-6)


def test_embedding_fed_layer_one_equals_a_model_whose_layer_zero_writes_nothing(tiny_model):
    """Independent check of the embeddings source: zero layer 0's outputs instead of replacing."""
    bridge, _ = tiny_model
    config = SequenceConfig(protocol="olsson", num_seeds=1)
    (batch,) = make_batches(bridge.tokenizer, config, "unrepeated", 10**6)
    silence = [("blocks.0.hook_attn_out", lambda x, hook: torch.zeros_like(x)),
               ("blocks.0.hook_mlp_out", lambda x, hook: torch.zeros_like(x))]
    cache = _cache_for(bridge, batch.tokens, hooks=silence)
    table = score_heads(bridge, config, ("copying",))
    expected = loop_copying(cache["blocks.1.attn.hook_pattern"][0], cache["blocks.1.attn.hook_z"][0].detach(),
                            bridge.W_O[1].detach(), bridge.W_U.detach(), batch.tokens[0], int(batch.lengths[0]))
    got = torch.tensor(table[table.layer == 1].sort_values("head")["value"].to_numpy(), dtype=torch.float64)
    torch.testing.assert_close(got, expected, **TOLERANCE)


def test_repeated_loss_is_the_next_token_cross_entropy_of_each_position(tiny_model):
    bridge, _ = tiny_model
    batch = _repeated_batch(bridge, seeds=(0, 4))  # two lengths in one batch: the shorter row is padded
    loss = repeated_sequence_loss(bridge, SequenceConfig(num_seeds=5), seeds=list(batch.seeds), max_batch_tokens=10**6)
    with torch.no_grad():
        logits = bridge(batch.tokens)
    for row, seed in enumerate(batch.seeds):
        length = int(batch.lengths[row])
        rows = loss[loss.seed == seed].sort_values("position")
        assert rows["position"].tolist() == list(range(1, length))
        expected = loop_next_token_loss(logits[row], batch.tokens[row].tolist(), length)
        torch.testing.assert_close(torch.tensor(rows["loss"].to_numpy(), dtype=torch.float64), expected, **TOLERANCE)


def test_scoring_records_no_autograd_graph(tiny_model):
    """Scores only read activations: a forward that records a graph keeps every layer's activations alive
    (22 GB on SmolLM2 at 100 seeds before this was caught), so every pass of score_heads runs without one."""
    from interp.induction.scores import score_heads

    bridge, _ = tiny_model
    seen = []

    def note_grad_mode(activation, hook):
        seen.append(torch.is_grad_enabled() or activation.requires_grad)

    table, loss = score_heads(bridge, SequenceConfig(num_seeds=2), loss=True,
                              extra_hooks=[("blocks.0.hook_resid_pre", note_grad_mode)])
    assert seen and not any(seen)
    assert torch.is_grad_enabled()  # and the caller's mode is left as it was
    assert not table.empty and not loss.empty
