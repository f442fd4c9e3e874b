"""Benchmark the induction scores on the embedded model, all measured in one run.

(a) the bare forward passes over the same sequences (the floor),
(b) the workbench's scores (``score_heads``),
(c) straightforward per-position loops written like the paper's reference code.

Prints the ratios the foundation issue targets: prefix matching (b)/(a) <= 1.3 and copying
(c)/(b) >= 20, and checks that (b) and (c) agree.

    python benchmarks/bench_induction.py [--model smollm2-135m] [--seeds 2] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from interp.induction.scores import score_heads
from interp.induction.sequences import SequenceConfig, make_batches
from interp.models.loading import load_model


def timed(function, repeats: int = 1):
    best, result = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best, result


@torch.no_grad()
def bare_forwards(bridge, batches):
    for batch in batches:
        bridge(batch.tokens.to(bridge.cfg.device))


@torch.no_grad()
def loop_prefix_matching(bridge, batches):
    """Reference style: a forward with a cache, then a Python loop over heads and positions."""
    scores = {}
    for batch in batches:
        for row, seed in enumerate(batch.seeds):
            tokens = batch.tokens[row: row + 1, : int(batch.lengths[row])].to(bridge.cfg.device)
            period = int(batch.periods[row])
            _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
            for layer in range(bridge.cfg.n_layers):
                pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0]
                for head in range(bridge.cfg.n_heads):
                    total = 0.0
                    for query in range(period + 1, tokens.shape[1]):
                        for k in range(1, 4):
                            if query - k * period >= 1:
                                total += pattern[head, query, query - k * period + 1].item()
                    scores[(seed, layer, head)] = total / (3 * period)
    return scores


@torch.no_grad()
def loop_copying(bridge, batches):
    """Reference style: every layer fed the embeddings, then at every position the heads' outputs
    are unembedded over the whole vocabulary and softmaxed."""
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    W_O, W_U = bridge.W_O, bridge.W_U
    scores = {}

    def keeper(store, name):
        def hook_fn(activation, hook):
            store[name] = activation
        return hook_fn

    def feeder(store):
        def hook_fn(residual, hook):
            return store["embedding"]
        return hook_fn

    for batch in batches:
        for row, seed in enumerate(batch.seeds):
            tokens = batch.tokens[row: row + 1, : int(batch.lengths[row])].to(bridge.cfg.device)
            store = {}
            feed = feeder(store)
            hooks = [("blocks.0.hook_resid_pre", keeper(store, "embedding"))]
            hooks += [(f"blocks.{layer}.hook_resid_pre", feed) for layer in range(1, n_layers)]
            for layer in range(n_layers):
                hooks += [(f"blocks.{layer}.attn.hook_pattern", keeper(store, f"pattern{layer}")),
                          (f"blocks.{layer}.attn.hook_z", keeper(store, f"z{layer}"))]
            bridge.run_with_hooks(tokens, fwd_hooks=hooks)
            for layer in range(n_layers):
                pattern, z = store[f"pattern{layer}"][0], store[f"z{layer}"][0]
                totals = torch.zeros(n_heads)
                for position in range(tokens.shape[1]):
                    output = torch.einsum("hd,hdm->hm", z[position], W_O[layer])  # (head, d_model)
                    probabilities = torch.softmax(output @ W_U, dim=-1)[:, tokens[0, : position + 1]]
                    above = torch.relu(probabilities - probabilities.mean(dim=-1, keepdim=True))
                    for head in range(n_heads):
                        attended = pattern[head, position, : position + 1].argmax().item()
                        denominator = above[head].sum().item()
                        totals[head] += above[head, attended].item() / denominator if denominator > 0 else 0.0
                for head in range(n_heads):
                    scores[(seed, layer, head)] = totals[head].item() / tokens.shape[1]
    return scores


def agreement(table, loop_scores, metric):
    rows = table[table.metric == metric]
    fast = {(int(r.seed), int(r.layer), int(r.head)): float(r.value) for r in rows.itertuples()}
    return max(abs(fast[key] - value) for key, value in loop_scores.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", type=int, default=4, help="Bansal seeds (L = 25 + 2s)")
    parser.add_argument("--loop-seeds", type=int, default=1, help="seeds for the slow loop versions")
    parser.add_argument("--device", default="auto")
    arguments = parser.parse_args()

    bridge, record = load_model(arguments.model, device=arguments.device)
    config = SequenceConfig(num_seeds=arguments.seeds)
    repeated = make_batches(bridge.tokenizer, config, "repeated")
    unrepeated = make_batches(bridge.tokenizer, config, "unrepeated")
    bare_forwards(bridge, repeated[:1])  # warm-up

    print(f"model {record.name} on {record.device}, {torch.get_num_threads()} threads, {arguments.seeds} seeds")
    bare_repeated, _ = timed(lambda: bare_forwards(bridge, repeated), repeats=2)
    bare_unrepeated, _ = timed(lambda: bare_forwards(bridge, unrepeated), repeats=2)
    prefix_time, _ = timed(lambda: score_heads(bridge, config, ("prefix_matching",)), repeats=2)
    all_attention_time, _ = timed(lambda: score_heads(bridge, config, ("prefix_matching",), loss=True), repeats=2)
    copying_time, _ = timed(lambda: score_heads(bridge, config, ("copying",)), repeats=2)

    loop_config = SequenceConfig(num_seeds=arguments.loop_seeds)
    loop_repeated = make_batches(bridge.tokenizer, loop_config, "repeated")
    loop_unrepeated = make_batches(bridge.tokenizer, loop_config, "unrepeated")
    fast_loop_prefix, fast_table_prefix = timed(lambda: score_heads(bridge, loop_config, ("prefix_matching",)))
    fast_loop_copying, fast_table_copying = timed(lambda: score_heads(bridge, loop_config, ("copying",)))
    slow_prefix, loop_prefix = timed(lambda: loop_prefix_matching(bridge, loop_repeated))
    slow_copying, loop_copy = timed(lambda: loop_copying(bridge, loop_unrepeated))

    print(f"(a) bare forwards, repeated sequences:      {bare_repeated:8.2f} s")
    print(f"(b) prefix matching (+ 3 attention metrics): {prefix_time:8.2f} s   (b)/(a) = "
          f"{prefix_time / bare_repeated:.2f}  target <= 1.3")
    print(f"(b') same, with the per-token loss:          {all_attention_time:8.2f} s   (b')/(a) = "
          f"{all_attention_time / bare_repeated:.2f}")
    print(f"(a) bare forwards, unrepeated sequences:    {bare_unrepeated:8.2f} s")
    print(f"(b) copying, all heads:                      {copying_time:8.2f} s   (b)/(a) = "
          f"{copying_time / bare_unrepeated:.2f}")
    print(f"on {arguments.loop_seeds} seed(s):")
    print(f"(c) loop prefix matching: {slow_prefix:8.2f} s vs (b) {fast_loop_prefix:6.2f} s   (c)/(b) = "
          f"{slow_prefix / fast_loop_prefix:.1f}"
          f"   max |diff| = {agreement(fast_table_prefix, loop_prefix, 'prefix_matching'):.2e}")
    print(f"(c) loop copying:         {slow_copying:8.2f} s vs (b) {fast_loop_copying:6.2f} s   (c)/(b) = "
          f"{slow_copying / fast_loop_copying:.1f}"
          f"  target >= 20   max |diff| = {agreement(fast_table_copying, loop_copy, 'copying'):.2e}")


if __name__ == "__main__":
    main()
