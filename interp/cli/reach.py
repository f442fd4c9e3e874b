"""Options for running at scale, shared by the commands, and ``interp memory`` (what a batch costs).

- ``--max-memory`` / ``--offload-folder`` join ``--device-map`` (:func:`placement`): a cap per
  device for accelerate's plan, and where disk-offloaded weights go;
- ``--executor ray`` / ``--address`` / ``--ray-tasks`` run a sweep's units as Ray tasks
  (:func:`executor`);
- ``--batch-size auto`` picks the largest batch that fits the device (:func:`batch_size`).

>>> placement(None, None, None) is None
True
>>> placement("auto", "0=20GiB", None).max_memory
{0: '20GiB'}
>>> executor("serial", None, None) is None
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from interp.cli.main import app, run_job
from interp.cli.options import DEFAULT_MODEL, Device, DeviceMap, Dtype, Model, parse_list

if TYPE_CHECKING:
    from interp.reach.executors import Executor
    from interp.reach.placement import Placement

__all__ = ["Address", "BatchSize", "ExecutorKind", "MaxMemory", "OffloadFolder", "RayTasks", "batch_size", "executor",
           "memory", "placement", "resolve_loading"]

MaxMemory = Annotated[str | None, typer.Option(help="memory cap per device for --device-map's plan, e.g. "
                                                    "0=70GiB,1=70GiB,cpu=200GiB (alone: implies --device-map auto)")]
OffloadFolder = Annotated[str | None, typer.Option(help="where modules mapped to disk keep their weights (default: a "
                                                        "folder under $INTERP_CACHE)")]
ExecutorKind = Annotated[str, typer.Option("--executor", help="serial (this process) or ray (one Ray task per group "
                                                              "of results, each loading the model once; pip install "
                                                              "'interp[ray]')")]
Address = Annotated[str | None, typer.Option(help="with --executor ray: an existing Ray cluster (auto, or "
                                                  "ray://HEAD:10001); default: start one on this machine")]
RayTasks = Annotated[int | None, typer.Option(help="with --executor ray: Ray tasks to split the work into (default: "
                                                   "one per GPU, or per CPU without GPUs)")]
BatchSize = Annotated[str, typer.Option(help="sequences per forward, or auto: the largest batch that fits the device's "
                                             "free memory (estimate in docs/methods.md, `interp memory`)")]


def placement(device_map: str | None, max_memory: str | None, offload_folder: str | None) -> "Placement | str | None":
    """What ``device_map=`` gets in the jobs: None (one device), or the parsed and checked placement."""
    if device_map is None and max_memory is None and offload_folder is None:
        return None
    from interp.reach.placement import Placement

    return Placement.from_options(device_map, max_memory, offload_folder)


def executor(kind: str, address: str | None, tasks: int | None) -> "Executor | None":
    """What ``executor=`` gets in the jobs: None for the serial path."""
    from interp.reach.executors import Executor

    chosen = Executor(kind, address=address, tasks=tasks)
    return chosen if chosen.distributed else None


def resolve_loading(loading: dict[str, Any]) -> dict[str, Any]:
    """A command's loading keywords with the reach options folded in: ``device_map`` a placement, ``executor``
    an :class:`~interp.reach.executors.Executor` (None when serial); called inside the job, so bad values exit 2."""
    loading = dict(loading)
    names = ("max_memory", "offload_folder", "executor", "address", "ray_tasks")
    reach = {name: loading.pop(name, None) for name in names}
    loading["device_map"] = placement(loading.get("device_map"), reach["max_memory"], reach["offload_folder"])
    loading["executor"] = executor(reach["executor"] or "serial", reach["address"], reach["ray_tasks"])
    return loading


def batch_size(text: str, model: str, tasks: str, shots: list[int], commands: dict[str, int], *, device: str,
               dtype: str, prompt_config: Any = None) -> int:
    """``--batch-size``: the number given, or for ``auto`` the smallest of the automatic sizes of ``commands``
    (kind of forward -> batched copies) on the longest prompt of the tasks and shots."""
    from interp.reach.memory import memory_plan, model_shape, parse_batch_size

    given = parse_batch_size(text)
    if given is not None:
        return given
    shape = model_shape(model, dtype)
    length = _longest_prompt(model, tasks, shots, prompt_config)
    resolved = _resolved_device(device)
    plans = [memory_plan(shape, command, length, resolved, copies=copies) for command, copies in commands.items()]
    chosen = min(plans, key=lambda plan: plan.batch_size)
    typer.echo(chosen.describe(), err=True)
    return chosen.batch_size


def _resolved_device(device: str) -> str:
    from interp.models.loading import resolve_device

    return resolve_device(device)


def _longest_prompt(model: str, tasks: str, shots: list[int], prompt_config: Any) -> int:
    """Tokens of the longest (prompt, choice) sequence: the padded width of the widest batch."""
    from transformers import AutoTokenizer

    from interp.models.loading import resolve_source
    from interp.tasks.prompts import PromptConfig, build_prompts, load_task, resolve_task_names

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(model)[0])
    config = prompt_config or PromptConfig()
    longest = 1
    for name in resolve_task_names(tasks):
        task = load_task(name)
        for k in shots:
            for prompt in build_prompts(task, k, config):
                context = len(tokenizer(prompt.context)["input_ids"])
                choice = max(len(tokenizer(text, add_special_tokens=False)["input_ids"])
                             for text in prompt.continuations)
                longest = max(longest, context + choice)
    return longest


@app.command()
def memory(
    model: Model = DEFAULT_MODEL,
    length: int = typer.Option(256, help="tokens per sequence (the padded width of a batch)"),
    copies: str = typer.Option("1,10", help="batched ablation copies to show, e.g. a layer's heads + FFN, or "
                                            "masks_per_forward"),
    device: Device = "auto",
    dtype: Dtype = "float32",
    device_map: DeviceMap = None,
) -> None:
    """What a batch costs each kind of forward (weights, activations per sequence); what --batch-size auto picks."""

    def job() -> None:
        from interp.reach.memory import COMMANDS, memory_plan, model_shape

        shape = model_shape(model, dtype)
        resolved = _resolved_device(device)
        typer.echo(f"{model} ({dtype}) on {resolved}: weights {shape.parameter_bytes() / 2**30:.2f} GiB"
                   + (" (sharded by --device-map: per-device shares are smaller)" if device_map else ""))
        for command in COMMANDS:
            for count in (parse_list("--copies", copies, int) if command == "ablation" else (1,)):
                plan = memory_plan(shape, command, length, resolved, copies=count)
                label = f"{command} x{count} copies" if command == "ablation" else command
                typer.echo(f"  {label:<22} {plan.per_sequence_bytes / 2**20:10.1f} MiB per sequence -> batch "
                           f"{plan.batch_size}")

    run_job(job)
