"""Benchmark: the full default head-pruning sweep of one task (workbench) vs one full forward per mask.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_pruning.py [--task antonyms --shots 1 --items 20]

The sweep is Bansal's: x = 0, 10, ..., 90% of heads removed by each default ranking (own
gradient importance, prefix matching and copying when ``--induction`` names an induction_scores
table, and 3 random seeds). The workbench tokenises once, evaluates each distinct mask once,
stacks up to 10 masks per forward and resumes them from the first masked layer; the naive loop
runs one ordinary ``run_with_hooks`` forward per (ranking, x) with the heads zeroed one by one.
Prints both times, their ratio and the largest difference between the two results (must be < 1e-4).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from interp.importance.methods import gradient_importance  # noqa: E402
from interp.models.loading import load_model  # noqa: E402
from interp.pruning.components import DEFAULT_PERCENTS, masked_scores, masked_scores_reference, pruning_mask  # noqa: E402
from interp.tasks.evaluation import encode_prompts  # noqa: E402
from interp.tasks.prompts import PromptConfig, build_prompts, load_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="antonyms")
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--induction", default="results/smollm2-135m/induction_scores.parquet",
                        help="induction_scores table for the prefix-matching and copying rankings (skipped if absent)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    bridge, record = load_model(arguments.model, device="cpu")
    n_layers, n_heads = record.n_layers, record.n_heads
    prompts = build_prompts(load_task(arguments.task), arguments.shots, PromptConfig(max_items=arguments.items))
    encoded = encode_prompts(bridge.tokenizer, prompts, bridge.cfg.n_ctx)
    rankings = {"own": gradient_importance(bridge, encoded, arguments.batch_size)["head_gradient"].numpy()}
    if Path(arguments.induction).exists():
        import pandas as pd

        table = pd.read_parquet(arguments.induction)
        for metric in ("prefix_matching", "copying"):
            rankings[metric] = table[table["metric"] == metric].pivot_table(index="layer", columns="head",
                                                                            values="mean").to_numpy()
    for seed in range(3):
        rankings[f"random:{seed}"] = np.random.default_rng([seed, 4]).random((n_layers, n_heads))
    masks = torch.stack([torch.from_numpy(pruning_mask(scores, percent)) for scores in rankings.values()
                         for percent in DEFAULT_PERCENTS["heads"]])
    ffn_masks = torch.zeros(len(masks), n_layers, dtype=torch.bool)
    print(f"{record.name}: {arguments.task} {arguments.shots}-shot, {encoded.n_items} items, {encoded.n_sequences} "
          f"sequences, {len(rankings)} rankings x {len(DEFAULT_PERCENTS['heads'])} percentages = {len(masks)} masks "
          f"({len(torch.unique(masks.flatten(1), dim=0))} distinct), {torch.get_num_threads()} threads", flush=True)

    started = time.perf_counter()
    workbench = masked_scores(bridge, encoded, masks, ffn_masks, batch_size=arguments.batch_size)
    workbench_seconds = time.perf_counter() - started
    print(f"workbench sweep: {workbench_seconds:.1f} s", flush=True)

    started = time.perf_counter()
    worst = 0.0
    for index in range(len(masks)):
        reference = masked_scores_reference(bridge, encoded, masks[index], ffn_masks[index],
                                            batch_size=arguments.batch_size)
        worst = max(worst, float((reference - workbench[index]).abs().max()))
    loop_seconds = time.perf_counter() - started
    print(f"naive loop (one full forward per mask): {loop_seconds:.1f} s; speed-up "
          f"{loop_seconds / workbench_seconds:.2f}x; max |difference| {worst:.2e}")


if __name__ == "__main__":
    main()
