"""``interp prune heads|ffns|combined|layers|laser``: one sub-command per study, each with its own options.

An option left out falls back to the study config's default (``PruningConfig``,
``LayerSweepConfig``, ``LaserSweepConfig``), so the defaults live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from interp.cli.importance import TASKS_HELP
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
from interp.cli.reach import Address, ExecutorKind, MaxMemory, OffloadFolder, RayTasks
from interp.cli.reach import BatchSize as ReachBatchSize

__all__ = ["combined", "ffns", "heads", "laser", "layers", "prune_app"]

prune_app = typer.Typer(help="Prune heads, FFNs, both, whole layers (angular distance) or matrix rank (LASER); resumes "
                             "where it stopped.", no_args_is_help=True)
app.add_typer(prune_app, name="prune")

Tasks = typer.Option("all", help=TASKS_HELP)
Shots = typer.Option("0,1,5", help="numbers of demonstrations, e.g. 0,1,5 or 0-5")
MaxItems = typer.Option(None, help="items per task (default: every non-demo item)")
NChoices = typer.Option(4, help="candidates for items without fixed choices")
BatchSize = typer.Option(8, help="sequences per forward")
Seed = typer.Option(0, help="demo split, demonstrations and distractors")
Tolerance = typer.Option(None, help="accuracy points a pruned model may lose and count as unharmed (default: 1.0)")
Results = typer.Option(None, help="folder with induction_scores for the prefix_matching / copying rankings (default: "
                                  "--out)")
Rankings = typer.Option(None, help="own, aggregate, most_correlated, least_correlated, task:NAME, prefix_matching, "
                                   "copying, "
                                   "random, random:SEED (default: all that apply)")
NRandom = typer.Option(None, help="seeds behind the `random` ranking (default: 3)")
Ablation = typer.Option(None, help="what a removed head/FFN outputs: zero or mean (default: zero)")
MasksPerForward = typer.Option(None, help="masked copies stacked in one forward (default: 10)")


@dataclass(frozen=True)
class _Study:
    """What every study shares: the model, the tasks and where the results go."""

    model: str
    tasks: str
    shots: list[int]
    out: Path
    common: dict[str, Any]  # config fields every study config has

    @classmethod
    def parse(cls, model: str, tasks: str, shots: str, out: Path | None, max_items: int | None, n_choices: int,
              batch_size: int, seed: int) -> _Study:
        common = dict(max_items=max_items, n_choices=n_choices, batch_size=batch_size, seed=seed)
        return cls(model, ",".join(parse_list("--tasks", tasks, str)), list(parse_list("--shots", shots, int)),
                   out or default_out(model), common)


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None): the rest keep the config's defaults."""
    return {name: value for name, value in options.items() if value is not None}


def _parse_lists(lists: dict[str, str | None]) -> dict[str, tuple]:
    """Config field -> its given list option, parsed (``rankings`` are names, the rest percentages)."""
    return {field: parse_list("--" + field.replace("_", "-"), text, str if field == "rankings" else float)
            for field, text in lists.items() if text is not None}


_INPUTS = ("model", "tasks", "shots", "out", "max_items", "n_choices", "batch_size", "seed")
_LOADING = ("device", "dtype", "device_map", "max_memory", "offload_folder", "executor", "address", "ray_tasks")
_SCALARS = ("n_random", "ablation", "tolerance", "masks_per_forward")
_LISTS = ("percents", "head_percents", "ffn_percents", "rankings")


def _run_components(study: str, options: dict[str, Any]) -> None:
    """Run a heads/ffns/combined study from its command's options (the command's ``locals()``)."""
    inputs = {name: options[name] for name in _INPUTS}
    loading = {name: options[name] for name in _LOADING} | {"confirm": options["yes"]}
    scalars = {name: options[name] for name in _SCALARS}
    lists = {name: options[name] for name in _LISTS if name in options}
    figures, results = options["figures"], options["results"]
    out = inputs["out"] or default_out(inputs["model"])

    def job() -> None:
        from interp.cli.reach import batch_size, resolve_loading
        from interp.pruning.components import PruningConfig
        from interp.pruning.job import run_pruning

        # --batch-size auto: what fits both the rankings' gradient pass and the stacked masks
        copies = scalars.get("masks_per_forward") or PruningConfig.masks_per_forward
        size = batch_size(str(inputs["batch_size"]), inputs["model"], inputs["tasks"],
                          list(parse_list("--shots", inputs["shots"], int)), {"gradient": 1, "ablation": copies},
                          device=loading["device"], dtype=loading["dtype"])
        parsed = _Study.parse(**{**inputs, "batch_size": size})
        config = PruningConfig(**parsed.common, **_parse_lists(lists), **_given(**scalars))
        run_pruning(study, parsed.model, parsed.tasks, parsed.shots, parsed.out, config, results=results,
                    figures=figures, **resolve_loading(loading))

    run_job(job, out=out, figures=figures)


@prune_app.command()
def heads(
    model: Model = DEFAULT_MODEL, tasks: str = Tasks, shots: str = Shots, out: Out = None,
    results: Path | None = Results,
    percents: str | None = typer.Option(None, help="% of heads removed (default: 0,10,...,90)"),
    rankings: str | None = Rankings, n_random: int | None = NRandom, ablation: str | None = Ablation,
    tolerance: float | None = Tolerance, masks_per_forward: int | None = MasksPerForward,
    max_items: int | None = MaxItems, n_choices: int = NChoices, batch_size: ReachBatchSize = "8", seed: int = Seed,
    device: Device = "auto", dtype: Dtype = "float32", device_map: DeviceMap = None, figures: Figures = True,
    yes: Yes = False, max_memory: MaxMemory = None, offload_folder: OffloadFolder = None,
    executor: ExecutorKind = "serial", address: Address = None, ray_tasks: RayTasks = None,
) -> None:
    """Remove the x% least important heads (Bansal et al.), by each ranking."""
    _run_components("heads", locals())


@prune_app.command()
def ffns(
    model: Model = DEFAULT_MODEL, tasks: str = Tasks, shots: str = Shots, out: Out = None,
    results: Path | None = Results,
    percents: str | None = typer.Option(None, help="% of FFNs removed (default: 0,10,...,90)"),
    rankings: str | None = Rankings, n_random: int | None = NRandom, ablation: str | None = Ablation,
    tolerance: float | None = Tolerance, masks_per_forward: int | None = MasksPerForward,
    max_items: int | None = MaxItems, n_choices: int = NChoices, batch_size: ReachBatchSize = "8", seed: int = Seed,
    device: Device = "auto", dtype: Dtype = "float32", device_map: DeviceMap = None, figures: Figures = True,
    yes: Yes = False, max_memory: MaxMemory = None, offload_folder: OffloadFolder = None,
    executor: ExecutorKind = "serial", address: Address = None, ray_tasks: RayTasks = None,
) -> None:
    """Remove the x% least important FFNs (Bansal et al.: oracle ranking), by each ranking."""
    _run_components("ffns", locals())


@prune_app.command()
def combined(
    model: Model = DEFAULT_MODEL, tasks: str = Tasks, shots: str = Shots, out: Out = None,
    results: Path | None = Results,
    head_percents: str | None = typer.Option(None, help="% of heads removed (default: 0,10,...,70)"),
    ffn_percents: str | None = typer.Option(None, help="% of FFNs removed (default: 0,10,...,50)"),
    rankings: str | None = Rankings, n_random: int | None = NRandom, ablation: str | None = Ablation,
    tolerance: float | None = Tolerance, masks_per_forward: int | None = MasksPerForward,
    max_items: int | None = MaxItems, n_choices: int = NChoices, batch_size: ReachBatchSize = "8", seed: int = Seed,
    device: Device = "auto", dtype: Dtype = "float32", device_map: DeviceMap = None, figures: Figures = True,
    yes: Yes = False, max_memory: MaxMemory = None, offload_folder: OffloadFolder = None,
    executor: ExecutorKind = "serial", address: Address = None, ray_tasks: RayTasks = None,
) -> None:
    """Remove heads and FFNs together: accuracy on a grid of % heads x % FFNs."""
    _run_components("combined", locals())


@prune_app.command()
def layers(
    model: Model = DEFAULT_MODEL, tasks: str = Tasks, shots: str = Shots, out: Out = None,
    block_sizes: str | None = typer.Option(None, help="numbers of layers dropped, e.g. 1-4 (default: 1..n_layers-1)"),
    distance_source: str | None = typer.Option(None, help="angular distances on the task prompts (tasks) or a text "
                                                          "sample "
                                                             "(text) (default: tasks)"),
    save_pruned: bool = typer.Option(True, help="save one pruned model in HF format, reload it and compare"),
    text_windows: int | None = typer.Option(None, help="windows of held-out text for the text loss (default: 16)"),
    text_length: int | None = typer.Option(None, help="tokens per text window (default: 128)"),
    tolerance: float | None = Tolerance,
    max_items: int | None = MaxItems, n_choices: int = NChoices, batch_size: int = BatchSize, seed: int = Seed,
    device: Device = "auto", dtype: Dtype = "float32", device_map: DeviceMap = None, figures: Figures = True,
    yes: Yes = False,
) -> None:
    """Drop blocks of layers where the angular distance is smallest (Gromov et al.) vs the deepest layers."""
    out = out or default_out(model)

    def job() -> None:
        from interp.pruning.sweeps import LayerSweepConfig, run_layer_sweep

        study = _Study.parse(model, tasks, shots, out, max_items, n_choices, batch_size, seed)
        config = LayerSweepConfig(**study.common, save_pruned=save_pruned, **_given(
            block_sizes=parse_list("--block-sizes", block_sizes, int) if block_sizes is not None else None,
            distance_source=distance_source, text_windows=text_windows, text_length=text_length, tolerance=tolerance))
        run_layer_sweep(study.model, study.tasks, study.shots, study.out, config, device=device, dtype=dtype,
                        device_map=device_map, figures=figures, confirm=yes)

    run_job(job, out=out, figures=figures)


@prune_app.command()
def laser(
    model: Model = DEFAULT_MODEL, tasks: str = Tasks, shots: str = Shots, out: Out = None,
    layers: str | None = typer.Option(None, help="layers to reduce, e.g. 0-1 or 10,12 (default: the later half)"),
    matrices: str | None = typer.Option(None, help="q, k, v, o, mlp_in, mlp_gate, mlp_out (default: mlp_in,mlp_out)"),
    rhos: str | None = typer.Option(None, help="shares of the rank kept (default: 0.9,0.8,0.6,0.4,0.2,0.1,0.05,0.01)"),
    max_items: int | None = MaxItems, n_choices: int = NChoices, batch_size: int = BatchSize, seed: int = Seed,
    device: Device = "auto", dtype: Dtype = "float32", device_map: DeviceMap = None, figures: Figures = True,
    yes: Yes = False,
) -> None:
    """Replace one matrix of one layer by a low-rank approximation (LASER, Sharma et al.), per rho."""
    out = out or default_out(model)

    def job() -> None:
        from interp.pruning.sweeps import LaserSweepConfig, run_laser_sweep

        study = _Study.parse(model, tasks, shots, out, max_items, n_choices, batch_size, seed)
        config = LaserSweepConfig(**study.common, **_given(
            layers=parse_list("--layers", layers, int) if layers is not None else None,
            matrices=parse_list("--matrices", matrices, str) if matrices is not None else None,
            rhos=parse_list("--rhos", rhos, float) if rhos is not None else None))
        run_laser_sweep(study.model, study.tasks, study.shots, study.out, config, device=device, dtype=dtype,
                        device_map=device_map, figures=figures, confirm=yes)

    run_job(job, out=out, figures=figures)
