"""Benchmark: shared-context scoring (one row per prompt) vs one row per (prompt, choice), in one run.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_shared_context.py
     [--tasks antonyms,country_capital,topic --shots 5 --items 24]

On 4-choice tasks, three workloads each run both ways on the same prompts, in the same process:

- evaluation: ``score_sequences`` (one clean forward per batch);
- pruning: ``masked_scores`` with ``--masks`` random head masks (10-50% of heads), resumed runs;
- exact ablation: ``ablation_importance`` (zero ablation of every head and FFN) in ``--layers``.

Prints, per workload, both wall times and both CPU times (``time.process_time``: on a shared
machine the wall clock also counts other people's jobs), their ratios and the largest
|difference| between the two paths' summed continuation log-probabilities (the test suite holds
them to 1e-5).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from interp.importance.methods import ImportanceConfig, ablation_importance  # noqa: E402
from interp.models.loading import load_model  # noqa: E402
from interp.pruning.components import masked_scores, pruning_mask  # noqa: E402
from interp.tasks.evaluation import encode_prompts, score_sequences  # noqa: E402
from interp.tasks.prompts import PromptConfig, build_prompts, load_task  # noqa: E402


def _timed(run):
    wall, cpu = time.perf_counter(), time.process_time()
    value = run()
    return value, np.array([time.perf_counter() - wall, time.process_time() - cpu])


def _compare(name: str, run_shared, run_separate) -> np.ndarray:
    separate, separate_seconds = _timed(run_separate)
    shared, shared_seconds = _timed(run_shared)
    worst = float((shared - separate).abs().max())
    ratio = separate_seconds / shared_seconds
    print(f"  {name:<15} per-choice {separate_seconds[0]:7.1f} s wall {separate_seconds[1]:7.1f} s cpu   "
          f"shared {shared_seconds[0]:7.1f} s wall {shared_seconds[1]:7.1f} s cpu   "
          f"speed-up {ratio[0]:5.2f}x wall {ratio[1]:5.2f}x cpu   max |difference| {worst:.1e}", flush=True)
    return np.stack([separate_seconds, shared_seconds])


def _compare_workloads(bridge, encoded, size: int, head_masks, ffn_masks, layers: tuple[int, ...]) -> np.ndarray:
    """Seconds of the three workloads on one task's prompts, each per-choice then shared."""
    totals = _compare("evaluation",
                      lambda: score_sequences(bridge, encoded, size, share_context=True).logprob_sum,
                      lambda: score_sequences(bridge, encoded, size, share_context=False).logprob_sum)
    totals += _compare("pruning",
                       lambda: masked_scores(bridge, encoded, head_masks, ffn_masks, batch_size=size,
                                             share_context=True),
                       lambda: masked_scores(bridge, encoded, head_masks, ffn_masks, batch_size=size,
                                             share_context=False))
    config = ImportanceConfig(ablations=("zero",), batch_size=size, layers=layers)

    def exact_ablation(share_context: bool):
        scores = ablation_importance(bridge, encoded, config, share_context=share_context)
        return scores["zero"]["head_logprob"][list(layers)]

    totals += _compare("exact ablation", lambda: exact_ablation(True), lambda: exact_ablation(False))
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", default="antonyms,country_capital,topic")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8, help="rows per forward, both paths")
    parser.add_argument("--masks", type=int, default=6, help="random head masks for the pruning workload")
    parser.add_argument("--layers", default="0", help="layers for the exact-ablation workload, comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    bridge, record = load_model(arguments.model, device="cpu")
    n_layers, n_heads = record.n_layers, record.n_heads
    generator = np.random.default_rng(0)
    head_masks = torch.stack([torch.from_numpy(pruning_mask(generator.random((n_layers, n_heads)), percent))
                              for percent in np.linspace(10, 50, arguments.masks)])
    ffn_masks = torch.zeros(len(head_masks), n_layers, dtype=torch.bool)
    layers = tuple(int(layer) for layer in arguments.layers.split(","))
    totals = np.zeros((2, 2))  # (per-choice, shared) x (wall, cpu)
    for task in arguments.tasks.split(","):
        prompts = build_prompts(load_task(task), arguments.shots, PromptConfig(max_items=arguments.items))
        encoded = encode_prompts(bridge.tokenizer, prompts, bridge.cfg.n_ctx, task)
        mean_context = np.mean(encoded.context_lengths)
        continuation = np.mean([len(tokens) - start for tokens,
                                start in zip(encoded.tokens, encoded.context_lengths, strict=True)])
        print(f"{record.name}: {task} {arguments.shots}-shot, {encoded.n_items} items x "
              f"{encoded.n_sequences / encoded.n_items:.1f} choices, context {mean_context:.0f} tokens, "
              f"continuation {continuation:.2f} tokens, {torch.get_num_threads()} threads", flush=True)
        totals += _compare_workloads(bridge, encoded, arguments.batch_size, head_masks, ffn_masks, layers)
    ratio = totals[0] / totals[1]
    print(f"all workloads: per-choice {totals[0, 0]:.1f} s wall / {totals[0, 1]:.1f} s cpu, shared {totals[1, 0]:.1f} "
          f"s wall / {totals[1, 1]:.1f} s cpu; speed-up {ratio[0]:.2f}x wall, {ratio[1]:.2f}x cpu")


if __name__ == "__main__":
    main()
