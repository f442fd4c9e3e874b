"""``interp importance`` (how much each task needs each head and FFN) and ``interp crossref``."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.cli.main import app, run_job
from interp.cli.options import (
    DEFAULT_MODEL,
    Device,
    DeviceMap,
    Dtype,
    Figures,
    Model,
    Out,
    Yes,
    default_out,
    parse_list,
)
from interp.cli.reach import Address, BatchSize, ExecutorKind, MaxMemory, OffloadFolder, RayTasks

__all__ = ["crossref", "importance"]

TASKS_HELP = "all, comma-separated task names, paper:NAME, or paths to .jsonl files"


@app.command()
def importance(
    model: Model = DEFAULT_MODEL,
    tasks: str = typer.Option("all", help=TASKS_HELP),
    shots: str = typer.Option("0,1,5", help="numbers of demonstrations, e.g. 0,1,5 or 0-5"),
    method: str = typer.Option("gradient", help="gradient, ablation or attribution"),
    out: Out = None,
    max_items: int | None = typer.Option(None, help="items per task (default: every non-demo item)"),
    ablations: str = typer.Option("zero,mean,resample", help="ablation kinds for --method ablation"),
    batch_size: BatchSize = "8",
    seed: int = typer.Option(0, help="demo split, demonstrations, distractors, resampling donors"),
    layers: str | None = typer.Option(None, help="--method ablation only: layers to ablate, e.g. 0-3,10 (default all; "
                                                 "the rest stay NaN)"),
    gradient_positions: str = typer.Option("all", help="--method gradient: sum |z . dL/dz| over all tokens (Bansal et "
                                                       "al.) "
                                                       "or only the answer positions"),
    prepend_bos: bool = typer.Option(True, "--prepend-bos/--no-prepend-bos",
                                     help="start every prompt with the tokenizer's BOS token (see docs/methods.md)"),
    device: Device = "auto",
    dtype: Dtype = "float32",
    device_map: DeviceMap = None,
    yes: Yes = False,
    max_memory: MaxMemory = None,
    offload_folder: OffloadFolder = None,
    executor: ExecutorKind = "serial",
    address: Address = None,
    ray_tasks: RayTasks = None,
    merge: list[Path] | None = typer.Option(None, help="instead of running: pool the tables of two or more finished "
                                                        "runs of one model (split by task, shots or method) into "
                                                        "--out; repeat the option once per run folder"),
) -> None:
    """Task importance of every head and FFN per (task, shots); resumes where it stopped."""
    out = out or default_out(model)

    def job() -> None:
        if merge:
            from interp.importance.job import merge_importance

            merge_importance(merge, out, echo=typer.echo)
            return
        from interp.cli.reach import batch_size as chosen_batch_size
        from interp.cli.reach import resolve_loading
        from interp.importance.job import run_importance
        from interp.importance.methods import ImportanceConfig

        task_names = ",".join(parse_list("--tasks", tasks, str))
        shot_list = list(parse_list("--shots", shots, int))
        kind = {"ablation": "ablation"}.get(method, "gradient")  # --batch-size auto: what a batch of this method holds
        auto_ablation = kind == "ablation" and batch_size.strip() == "auto"
        copies = 1 + _n_heads(model) if auto_ablation else 1  # a layer's heads and its FFN share a forward
        size = chosen_batch_size(batch_size, model, task_names, shot_list, {kind: copies}, device=device, dtype=dtype)
        config = ImportanceConfig(ablations=parse_list("--ablations", ablations, str), batch_size=size,
                                  max_items=max_items, seed=seed, gradient_positions=gradient_positions,
                                  prepend_bos=prepend_bos,
                                  layers=parse_list("--layers", layers, int) if layers is not None else None)
        loading = resolve_loading(dict(device=device, dtype=dtype, device_map=device_map, max_memory=max_memory,
                                       offload_folder=offload_folder, executor=executor, address=address,
                                       ray_tasks=ray_tasks))
        run_importance(model, task_names, shot_list, method, out, config, confirm=yes, **loading)

    run_job(job)


def _n_heads(model: str) -> int:
    from interp.reach.memory import model_shape

    return model_shape(model).n_heads


@app.command()
def crossref(
    results: Path = typer.Option(default_out(DEFAULT_MODEL), help="results folder with importance and "
                                                                   "induction_scores"),
    metric: str = typer.Option("gradient", help="importance metric that ranks heads (e.g. gradient, zero_loss_delta)"),
    top_k: int = typer.Option(10, help="heads counted as important / as induction heads"),
    figures: Figures = True,
) -> None:
    """Cross-reference head importance with prefix-matching and copying scores."""

    def job() -> None:
        from interp.importance.crossref import CrossrefConfig, run_crossref

        tables = run_crossref(results, CrossrefConfig(importance_metric=metric, top_k=top_k), figures=figures)
        typer.echo(f"wrote {', '.join(tables)} into {results}")

    run_job(job, out=results, figures=figures)
