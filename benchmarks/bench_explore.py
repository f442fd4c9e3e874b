"""Benchmark: activation patching (stacked copies on resumed runs) vs TransformerLens's get_act_patch_* on the bridge.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_explore.py [--model toy-attn-2l --prompts 4 --length 10]
Prints the times of both, their ratio from this one run, and the largest difference between the
two results (they must agree to 1e-4); then the time of the composition table.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformer_lens.patching as tl_patching  # noqa: E402

from interp.explore.composition import composition_table  # noqa: E402
from interp.explore.patching import PatchingConfig, activation_patching, answer_metric, induction_prompts  # noqa: E402
from interp.models.loading import load_model  # noqa: E402

TL_FUNCTIONS = {"z": tl_patching.get_act_patch_attn_head_out_all_pos, "resid_pre": tl_patching.get_act_patch_resid_pre,
                "pattern": tl_patching.get_act_patch_attn_head_pattern_all_pos}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy-attn-2l")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--length", type=int, default=10, help="random tokens per block (prompt: 1 + 1.5 x length)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    bridge, record = load_model(arguments.model, device="cpu")
    clean, corrupted, answers = induction_prompts(bridge, arguments.prompts, arguments.length)
    metric = answer_metric(bridge, answers.tolist(), batch=arguments.prompts)
    print(f"{record.name}: {arguments.prompts} prompts x {clean.shape[1]} tokens, {torch.get_num_threads()} threads",
          flush=True)
    activation_patching(bridge, clean, corrupted, metric, PatchingConfig(activations=("z",)))  # warm-up, untimed
    for activation, function in TL_FUNCTIONS.items():
        config = PatchingConfig(activations=(activation,))
        started = time.perf_counter()
        table = activation_patching(bridge, clean, corrupted, metric, config)
        workbench = time.perf_counter() - started
        _, cache = bridge.run_with_cache(clean)
        started = time.perf_counter()
        theirs = function(bridge, corrupted, cache, lambda logits: metric(logits[:, -1]).mean())
        reference = time.perf_counter() - started
        across = "position" if activation == "resid_pre" else "head"
        ours = torch.tensor(table.pivot_table(index="layer", columns=across, values="value").to_numpy())
        worst = float((ours - theirs.double().cpu()).abs().max())
        print(f"{activation:>9}: workbench {workbench:.2f} s, TransformerLens {reference:.2f} s, "
              f"speed-up {reference / workbench:.2f}x, max |difference| {worst:.1e}", flush=True)
    started = time.perf_counter()
    pairs = composition_table(bridge)
    print(f"composition: {len(pairs)} (kind, writer, reader) scores in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
