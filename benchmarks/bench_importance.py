"""Benchmark: exact head ablation (workbench) vs one full forward per head; gradient cost vs a clean forward.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_importance.py [--task country_capital --shots 1 --items 4]
Prints the measured times and ratios from this one run, and the largest difference between the
two ablation results (they must agree to 1e-5).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from interp.importance.methods import ImportanceConfig, ablation_importance, gradient_importance, single_ablation_scores  # noqa: E402
from interp.models.loading import load_model  # noqa: E402
from interp.tasks.evaluation import encode_prompts, score_sequences  # noqa: E402
from interp.tasks.prompts import PromptConfig, build_prompts, load_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="country_capital")
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--choices", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    bridge, record = load_model(arguments.model, device="cpu")
    prompts = build_prompts(load_task(arguments.task), arguments.shots,
                            PromptConfig(max_items=arguments.items, n_choices=arguments.choices))
    encoded = encode_prompts(bridge.tokenizer, prompts, bridge.cfg.n_ctx)
    n_tokens = sum(len(tokens) for tokens in encoded.tokens)
    print(f"{record.name}: {arguments.task} {arguments.shots}-shot, {encoded.n_items} items, "
          f"{encoded.n_sequences} sequences, {n_tokens} tokens, {torch.get_num_threads()} threads", flush=True)

    started = time.perf_counter()
    results = ablation_importance(bridge, encoded,
                                  ImportanceConfig(ablations=("zero",), batch_size=arguments.batch_size))
    workbench = time.perf_counter() - started
    print(f"workbench exact ablation: {workbench:.1f} s", flush=True)

    started = time.perf_counter()
    worst = 0.0
    for layer in range(bridge.cfg.n_layers):
        for head in range(bridge.cfg.n_heads):
            reference = single_ablation_scores(bridge, encoded, layer, head, "zero", batch_size=arguments.batch_size)
            worst = max(worst, float((reference - results["zero"]["head_logprob"][layer, head]).abs().max()))
    loop = time.perf_counter() - started
    print(f"exact head ablation (zero, {bridge.cfg.n_layers * bridge.cfg.n_heads} heads; workbench also does the "
          f"FFNs): workbench {workbench:.1f} s, one forward per head {loop:.1f} s, speed-up {loop / workbench:.2f}x, "
          f"max |difference| {worst:.2e}")

    gold = encoded.gold_sequence.tolist()
    started = time.perf_counter()
    score_sequences(bridge, encoded, arguments.batch_size, sequence_ids=gold)
    forward = time.perf_counter() - started
    started = time.perf_counter()
    gradient_importance(bridge, encoded, arguments.batch_size)
    gradient = time.perf_counter() - started
    print(f"gradient importance {gradient:.2f} s vs clean forward over the same prompts {forward:.2f} s: "
          f"ratio {gradient / forward:.2f}x (target <= 4x)")


if __name__ == "__main__":
    main()
