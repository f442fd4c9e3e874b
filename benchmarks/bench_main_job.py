"""Where the main job's time goes, and what scoring costs over the bare forward passes, in one run.

(1) The main job exactly as a user runs it (``interp induction --model MODEL``, the CPU default of 20
    seeds, figures on), in a fresh process writing into a temporary folder: its wall time measured
    from outside (interpreter start to exit) and the share of each phase the job records in
    ``induction_metadata.json`` under ``timing`` (load, score, write, figures; "other" is imports
    and start-up).  Target: figures at most 20% of the wall time.
(2) For each seed setting (default 20 and 100 Bansal seeds; 100 means sequences up to 893
    tokens): the job's scoring (``score_heads`` on chunks of ``SEEDS_PER_CHUNK`` seeds, the
    attention metrics with the per-token loss on the repeated sequences, copying on the unrepeated
    ones) against bare forward passes (``bridge(tokens)``) over the very same batches.  Bare and
    scored passes alternate chunk by chunk, so a change in the machine's load hits both alike.
    Target: scoring at most 1.15x the bare forwards at 100 seeds.

    python benchmarks/bench_main_job.py [--model smollm2-135m] [--seeds 20,100] [--subset 10] [--skip-job]
                                        [--before PATH]

``--before-scores FILE`` times an older ``scores.py`` on the same chunks as well.
``--before PATH`` also runs the main job from an older checkout at PATH (its own ``interp`` package
first on the path), right before this one's, so the before/after wall times share the machine's load.

``--subset N`` scores only N seeds spread evenly over each setting (a quick run keeping its mix of
lengths); the full 100-seed setting takes about 20 minutes on a 2-core CPU (scoring + bare passes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

FIGURE_SHARE_TARGET = 0.20
SCORING_RATIO_TARGET = 1.15  # at 100 seeds


def main_job(model: str, seeds: int | None, checkout: Path | None = None) -> dict:
    """Run ``interp induction`` in a fresh process (from ``checkout`` if given); its wall time and recorded phases."""
    with tempfile.TemporaryDirectory() as folder:
        options = [] if checkout is not None else ["--quiet"]  # an older CLI may not know --quiet
        command = [sys.executable, "-m", "interp.cli", *options, "induction", "--model", model, "--out", folder]
        if seeds is not None:
            command += ["--seeds", str(seeds)]
        environment = dict(os.environ)
        if checkout is not None:
            environment["PYTHONPATH"] = str(checkout)
        started = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, env=environment,
                                  cwd=checkout if checkout is not None else None)
        wall = time.perf_counter() - started
        if finished.returncode != 0:
            raise SystemExit(f"the main job failed ({finished.returncode}):\n{finished.stdout}\n{finished.stderr}")
        metadata = json.loads((Path(folder) / "induction_metadata.json").read_text())
        figures = sorted(path.name for path in (Path(folder) / "figures").iterdir() if not path.name.startswith("."))
    if "timing" not in metadata and checkout is None:
        raise SystemExit("induction_metadata.json has no 'timing': this checkout's job does not record its phases")
    return {"wall": wall, "timing": metadata.get("timing"), "seeds": len(metadata.get("seeds", [])), "figures": figures}


def report_job(job: dict) -> float:
    wall, phases = job["wall"], job["timing"]["phases"]
    print(f"\n(1) main job: {job['seeds']} seeds, {len(job['figures'])} figure files, "
          f"{wall:.1f} s wall for the whole command (job's own total {job['timing']['total_seconds']:.1f} s)")
    for name, seconds in phases.items():
        print(f"    {name:<8} {seconds:7.1f} s  {seconds / wall:6.1%}")
    other = wall - sum(phases.values())
    print(f"    {'other':<8} {other:7.1f} s  {other / wall:6.1%}   (interpreter start, imports, exit)")
    share = phases.get("figures", 0.0) / wall
    print(f"    figures / wall = {share:.1%}   target <= {FIGURE_SHARE_TARGET:.0%}   "
          f"{'met' if share <= FIGURE_SHARE_TARGET else 'NOT met'}")
    return share


def spread(count: int, subset: int | None) -> list[int]:
    """``subset`` seeds spread evenly over ``0..count-1`` (all of them without a subset)."""
    if subset is None or subset >= count:
        return list(range(count))
    return sorted({round(index * (count - 1) / (subset - 1)) for index in range(subset)}) if subset > 1 else [count - 1]


def timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time hardly moves with other processes' load."""
    started, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - started, time.process_time() - cpu


@torch.no_grad()
def scoring_versus_forwards(bridge, count: int, subset: int | None, before=None) -> list[dict]:
    """Per chunk of seeds: seconds of bare forwards and of the job's scoring (and ``before``'s), per kind of
    sequence."""
    from interp.induction.job import SEEDS_PER_CHUNK, InductionConfig
    from interp.induction.scores import score_heads
    from interp.induction.sequences import make_batches

    job = InductionConfig(num_seeds=count)
    sequences = job.sequences("cpu")
    attention = [metric for metric in job.metrics if metric not in ("copying", "ov_copying")]
    seeds = spread(count, subset)
    chunks = []

    def scoring(module, kind, chunk):
        if kind == "repeated":
            return lambda: module.score_heads(bridge, sequences, attention, seeds=chunk, loss=True,
                                              max_batch_tokens=job.max_batch_tokens)
        return lambda: module.score_heads(bridge, sequences, ("copying",), seeds=chunk,
                                          max_batch_tokens=job.max_batch_tokens,
                                          copying_variant=job.copying_variant, copying_source=job.copying_source)

    def bare_forwards(kind_batches):
        return lambda: [bridge(batch.tokens) for batch in kind_batches]

    for index, start in enumerate(range(0, len(seeds), SEEDS_PER_CHUNK)):
        chunk = seeds[start:start + SEEDS_PER_CHUNK]
        batches = {kind: make_batches(bridge.tokenizer, sequences, kind, job.max_batch_tokens, chunk)
                   for kind in ("repeated", "unrepeated")}
        steps = {f"bare_{kind}": bare_forwards(batches[kind]) for kind in ("repeated", "unrepeated")}
        steps |= {f"score_{kind}": scoring(sys.modules[score_heads.__module__], kind, chunk)
                  for kind in ("repeated", "unrepeated")}
        if before is not None:
            steps |= {f"before_{kind}": scoring(before, kind, chunk) for kind in ("repeated", "unrepeated")}
        order = list(steps) if index % 2 == 0 else list(reversed(steps))  # alternate, so load drift hits all alike
        record = {"seeds": chunk,
                  "longest": max(int(batch.tokens.shape[1]) for kind in batches for batch in batches[kind])}
        for name in order:
            record[name], record[f"cpu_{name}"] = timed(steps[name])
        chunks.append(record)
        so_far = summed(chunks)
        print(f"    {count} seeds: chunk {index + 1} (seeds {chunk[0]}..{chunk[-1]}, up to {record['longest']} "
              "tokens): "
              + ", ".join(f"{name} {record[name]:.1f} s" for name in steps)
              + f"; scoring / bare so far {so_far['score'] / so_far['bare']:.3f} wall, "
              f"{so_far['cpu_score'] / so_far['cpu_bare']:.3f} CPU", flush=True)
    return chunks


def summed(chunks: list[dict]) -> dict:
    totals = {name: sum(chunk[name] for chunk in chunks) for name in chunks[0] if name not in ("seeds", "longest")}
    totals["longest"] = max(chunk["longest"] for chunk in chunks)
    totals["seeds"] = sum(len(chunk["seeds"]) for chunk in chunks)
    for prefix in ("bare", "score", "before", "cpu_bare", "cpu_score", "cpu_before"):
        if f"{prefix}_repeated" in totals:
            totals[prefix] = totals[f"{prefix}_repeated"] + totals[f"{prefix}_unrepeated"]
    return totals


def report_scoring(count: int, totals: dict) -> float:
    print(f"\n(2) {count} seeds ({totals['seeds']} scored, sequences up to {totals['longest']} tokens):")
    names = {"repeated": "attention metrics + loss", "unrepeated": "copying"}
    for kind, what in names.items():
        bare, score = totals[f"bare_{kind}"], totals[f"score_{kind}"]
        line = f"    {kind + ' sequences:':<22} bare {bare:7.1f} s, {what} {score:7.1f} s  ratio {score / bare:.3f}"
        if f"before_{kind}" in totals:
            line += f"  (before: {totals[f'before_{kind}']:.1f} s, ratio {totals[f'before_{kind}'] / bare:.3f})"
        print(line)
    ratio = totals["score"] / totals["bare"]
    target = (f"   target <= {SCORING_RATIO_TARGET}  {'met' if ratio <= SCORING_RATIO_TARGET else 'NOT met'}"
              if count >= 100 else "")
    print(f"    scoring / bare forwards = {totals['score']:.1f} s / {totals['bare']:.1f} s = {ratio:.3f}{target}")
    print(f"    in CPU seconds of this process: {totals['cpu_score']:.1f} / {totals['cpu_bare']:.1f} = "
          f"{totals['cpu_score'] / totals['cpu_bare']:.3f} (repeated "
          f"{totals['cpu_score_repeated'] / totals['cpu_bare_repeated']:.3f}, "
          f"unrepeated {totals['cpu_score_unrepeated'] / totals['cpu_bare_unrepeated']:.3f})")
    if "before" in totals:
        print(f"    before this change: scoring {totals['before']:.1f} s, / bare forwards = "
              f"{totals['before'] / totals['bare']:.3f}; "
              f"after / before = {totals['score'] / totals['before']:.3f}; in CPU seconds "
              f"{totals['cpu_before'] / totals['cpu_bare']:.3f} before, after / before "
              f"{totals['cpu_score'] / totals['cpu_before']:.3f}")
    return ratio


def load_module(path: Path):
    """A module from a file (an older ``scores.py``), for the before/after of scoring in the same run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("scores_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", default="20,100", help="comma-separated seed settings for the scoring ratio; "
                                                          "none: the main job only")
    parser.add_argument("--subset", type=int, default=None,
                        help="score only this many seeds per setting, spread evenly")
    parser.add_argument("--job-seeds", type=int, default=None,
                        help="seeds of the main job (default: the job's CPU default)")
    parser.add_argument("--skip-job", action="store_true", help="leave out (1), the main job")
    parser.add_argument("--before", type=Path, default=None,
                        help="an older checkout whose main job runs first, for before/after")
    parser.add_argument("--before-scores", type=Path, default=None,
                        help="an older interp/induction/scores.py, timed on the same chunks for before/after of "
                             "scoring")
    arguments = parser.parse_args()
    settings = [int(value) for value in arguments.seeds.split(",") if value.strip() and value.strip() != "none"]

    load = os.getloadavg()
    print(f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} "
          f"/ {load[2]:.1f} at start", flush=True)
    before = job = None
    if not arguments.skip_job:
        if arguments.before is not None:
            before = main_job(arguments.model, arguments.job_seeds, arguments.before.resolve())
        job = main_job(arguments.model, arguments.job_seeds)
        report_jobs(job, before, arguments.before)
    chunks = scoring(arguments, settings) if settings else {}

    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (started at {load[0]:.1f})")
    if job is not None:
        report_jobs(job, before, arguments.before)
    for count in sorted(settings):
        report_scoring(count, summed(chunks[count]))


def report_jobs(job: dict, before: dict | None, checkout: Path | None) -> None:
    report_job(job)
    if before is not None:
        print(f"    before ({checkout}): {before['wall']:.1f} s wall, {before['seeds']} seeds, "
              f"{len(before['figures'])} figure files; after / before = {job['wall'] / before['wall']:.2f}", flush=True)


def scoring(arguments, settings: list[int]) -> dict[int, list[dict]]:
    """(2) for every seed setting, after a warm-up; the per-chunk timings of each."""
    from interp.induction.scores import score_heads
    from interp.induction.sequences import SequenceConfig
    from interp.models.loading import load_model

    bridge, record = load_model(arguments.model, device="cpu")
    print(f"\n(2) model {record.name} on {record.device}", flush=True)
    with torch.no_grad():  # warm-up: first calls allocate and pick kernels
        score_heads(bridge, SequenceConfig(num_seeds=1), loss=True)
    before_scores = load_module(arguments.before_scores) if arguments.before_scores else None
    # Seeds 0..n-1 of a smaller setting are the first chunks of a larger one (same chunks, same batches),
    # so without a subset only the largest setting runs and the smaller ones are its prefixes.
    largest = max(settings)
    chunks = {largest: scoring_versus_forwards(bridge, largest, arguments.subset, before_scores)}
    for count in settings:
        if count in chunks:
            continue
        prefix = [chunk for chunk in chunks[largest] if max(chunk["seeds"]) < count]
        aligned = arguments.subset is None and sum(len(chunk["seeds"]) for chunk in prefix) == count
        chunks[count] = prefix if aligned else scoring_versus_forwards(bridge, count, arguments.subset, before_scores)
    return chunks


if __name__ == "__main__":
    main()
