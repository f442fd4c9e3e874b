"""Where a sweep's work runs: in this process, or as Ray tasks on a cluster (``--executor ray``).

A sweeping job (importance, pruning) plans its work as *units* (one result file each: a (task,
shots) importance result, a pruning cell) and finds those not on disk yet; its compute function
then evaluates a list of units on a loaded model and writes each unit atomically as it finishes.
:class:`Executor` runs that function either here (``serial``) or on Ray (``ray``):

- the units are gathered into *groups* that must be evaluated together (a pruning group's masks
  share forwards), and the groups into at most ``tasks`` Ray tasks, so that each Ray task loads
  the model once for many units;
- each Ray task asks for one GPU when the model runs on CUDA (``device`` cuda/auto on a cluster
  with GPUs), none otherwise (``gpus_per_task`` overrides, e.g. 4 for a model sharded over 4);
- every unit is written by the same atomic per-unit files as the serial path, into the same
  results folder (on a cluster: a shared filesystem), so a sweep whose worker or driver dies
  resumes on the next run, and the merged tables equal the serial run's;
- ``first_alone`` runs the first Ray task before the others, for jobs whose first unit computes
  something every unit then reads from disk (pruning's importance rankings).

A failed Ray task (its worker killed, its node lost) is retried ``retries`` times by Ray; what
still fails is reported in one line after the rest finished, and a rerun of the same command
computes only the units missing.

>>> Executor("ray", tasks=4).distributed
True
>>> split_groups([["a"], ["b", "c"], ["d"], ["e"]], 2)
[[['a'], ['b', 'c']], [['d'], ['e']]]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp.errors import InterpError, check_choice

if TYPE_CHECKING:
    from interp.jobs import ModelHandle

__all__ = ["EXECUTORS", "Executor", "group_units", "split_groups", "worker_echo"]

EXECUTORS = ("serial", "ray")
INSTALL_HINT = "pip install 'interp[ray]'"

Compute = Callable[..., None]  # compute(bridge=..., record=..., todo=[unit, ...]) writes each unit's file


@dataclass(frozen=True)
class Executor:
    """How a sweep's units are run.

    >>> Executor("threads")
    Traceback (most recent call last):
    ...
    interp.errors.InterpError: unknown executor 'threads'; choose one of: serial, ray
    """

    kind: str = "serial"  # serial: this process, one model load; ray: Ray tasks, one model load each
    address: str | None = None  # an existing Ray cluster ("auto", "ray://head:10001"); None: a local one
    tasks: int | None = None  # Ray tasks to split the work into; None: one per worker slot of the cluster
    gpus_per_task: float | None = None  # None: 1 when the model runs on CUDA, else 0
    num_cpus: int | None = None  # CPUs of a local cluster started here; None: Ray's choice (all)
    retries: int = 1  # Ray's retries of a task whose worker died (0: fail at once, a rerun finishes)

    def __post_init__(self) -> None:
        check_choice("executor", self.kind, EXECUTORS)
        if self.tasks is not None and self.tasks < 1:
            raise InterpError(f"tasks must be positive or None, got {self.tasks}")
        if self.gpus_per_task is not None and self.gpus_per_task < 0:
            raise InterpError(f"gpus_per_task must be 0 or more, got {self.gpus_per_task}")
        if self.retries < 0:
            raise InterpError(f"retries must be 0 or more, got {self.retries}")
        if self.address is not None and self.kind != "ray":
            raise InterpError("--address names a Ray cluster; it needs --executor ray")

    @property
    def distributed(self) -> bool:
        return self.kind == "ray"

    def run(self, handle: "ModelHandle", todo: Sequence[Any], compute: Compute, *,
            group_of: Callable[[Any], Hashable] | None = None, first_alone: bool = False,
            echo: Callable[[str], None] = print) -> None:
        """Evaluate ``todo`` with ``compute``: here with ``handle``'s model, or in Ray tasks that load it themselves."""
        if not todo:
            return
        if not self.distributed:
            bridge, record = handle.load()
            compute(bridge=bridge, record=record, todo=list(todo))
            return
        _run_on_ray(self, handle, group_units(todo, group_of), compute, first_alone, echo)


def worker_echo(message: str) -> None:
    """A job's ``echo`` inside a Ray task: a line in the worker's log (the driver's own ``echo`` stays there)."""
    print(message, flush=True)


def group_units(todo: Sequence[Any], group_of: Callable[[Any], Hashable] | None) -> list[list[Any]]:
    """Units that must be evaluated together, in first-seen order (each unit alone without ``group_of``).

    >>> group_units([("a", 1), ("b", 1), ("a", 2)], lambda unit: unit[0])
    [[('a', 1), ('a', 2)], [('b', 1)]]
    """
    groups: dict[Hashable, list[Any]] = {}
    for index, unit in enumerate(todo):
        groups.setdefault(index if group_of is None else group_of(unit), []).append(unit)
    return list(groups.values())


def split_groups(groups: list[list[Any]], n_tasks: int) -> list[list[list[Any]]]:
    """Consecutive groups into at most ``n_tasks`` Ray tasks of near-equal unit counts (a group never split)."""
    total, tasks, current, filled = sum(map(len, groups)), [], [], 0
    for group in groups:
        current.append(group)
        filled += len(group)
        if filled >= total * (len(tasks) + 1) / n_tasks and len(tasks) < n_tasks - 1:
            tasks.append(current)
            current = []
    return tasks + ([current] if current else [])


# ------------------------------------------------------------------------------------------- Ray


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InterpError(f"--executor ray needs the optional package ray: {INSTALL_HINT}") from None
    return ray


def _evaluate_groups(handle: "ModelHandle", groups: list[list[Any]], compute: Compute) -> int:
    """One Ray task: load the model once, evaluate its groups (each unit written by ``compute``)."""
    bridge, record = handle.load()
    units = [unit for group in groups for unit in group]
    compute(bridge=bridge, record=record, todo=units)
    return len(units)


def _gpus_per_task(executor: Executor, handle: "ModelHandle", ray: Any) -> float:
    if executor.gpus_per_task is not None:
        return executor.gpus_per_task
    device = str(handle.device)
    if device.startswith("cpu") or device == "mps":
        return 0.0
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    if device.startswith("cuda") and not cluster_gpus:
        raise InterpError(f"device {device!r} asked for, but the Ray cluster has no GPU; use --device cpu or auto")
    return 1.0 if cluster_gpus else 0.0


def _connect(executor: Executor, ray: Any) -> bool:
    """Join ``executor.address`` or start a local cluster; True when this call started it (and so ends it)."""
    if ray.is_initialized():
        return False
    # The workers import interp from where the driver does; a cluster whose nodes lack it says so in the task error.
    options: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": True}
    if executor.address is not None:
        ray.init(address=executor.address, **options)
    else:
        ray.init(num_cpus=executor.num_cpus, **options)
    return True


def _slots(ray: Any, gpus: float) -> int:
    resources = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) // gpus))
    return max(1, int(resources.get("CPU", 1)))


def _run_on_ray(executor: Executor, handle: "ModelHandle", groups: list[list[Any]], compute: Compute,
                first_alone: bool, echo: Callable[[str], None]) -> None:
    ray = _require_ray()
    if handle.loaded is not None:  # a model loaded here stays here: each Ray task loads it again by its spec
        handle = type(handle)(handle.spec, handle.device, handle.dtype, handle.device_map)
    started = _connect(executor, ray)
    try:
        gpus = _gpus_per_task(executor, handle, ray)
        n_tasks = min(len(groups), executor.tasks or _slots(ray, gpus))
        if first_alone and len(groups) > 1:  # the first group alone, then the rest side by side
            waves = [[[groups[0]]], split_groups(groups[1:], min(n_tasks, len(groups) - 1))]
        else:
            waves = [split_groups(groups, n_tasks)]
        n_batches = sum(map(len, waves))
        remote = ray.remote(_evaluate_groups).options(num_gpus=gpus, num_cpus=1, max_retries=executor.retries)
        echo(f"ray: {sum(map(len, groups))} units in {n_batches} tasks ({gpus:g} GPU each) on "
             f"{int(ray.cluster_resources().get('CPU', 0))} CPUs, {int(ray.cluster_resources().get('GPU', 0))} GPUs")
        failures: list[str] = []
        for wave in waves:
            references = [remote.remote(handle, batch, compute) for batch in wave]
            failures += _collect(ray, references)
            if failures and wave is waves[0] and len(waves) > 1:
                break  # the shared first part failed: the rest would only fail the same way
    finally:
        if started:
            ray.shutdown()
    if failures:
        raise InterpError(f"{len(failures)} of {n_batches} Ray tasks failed ({failures[0]}); the finished units are "
                          "saved: run the same command again to compute the rest")


def _collect(ray: Any, references: list) -> list[str]:
    """Wait for every task; one line per failed one (an InterpError raised inside a task is re-raised as it is)."""
    failures = []
    for reference in references:
        try:
            ray.get(reference)
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, InterpError):
                raise cause from None
            failures.append(_first_line(cause or error))
        except ray.exceptions.RayError as error:  # the worker or its node died
            failures.append(_first_line(error))
    return failures


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
