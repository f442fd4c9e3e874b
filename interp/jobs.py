"""What every job shares: the model argument, result keys, the check before long work, the figures, the result.

A job (:func:`~interp.induction.job.run_induction`, :func:`~interp.importance.job.run_importance`,
:func:`~interp.pruning.job.run_pruning`, :func:`~interp.pruning.sweeps.run_layer_sweep`,
:func:`~interp.pruning.sweeps.run_laser_sweep`, :func:`~interp.toy.dynamics.run_dynamics`) reads as
plan -> compute -> write -> draw:

- **plan**: check every input (an impossible request fails in one line before any work), key each
  result by everything that makes it (:class:`ModelHandle`, :func:`task_key`, the settings, the
  package version), and find the work not done yet;
- **compute**: load the model only when there is work; save each finished unit at once; after the
  first unit, estimate the rest (:class:`WorkEstimate`) and ask before anything longer than
  :data:`CONFIRM_OVER_SECONDS` (``confirm=True``, ``--yes`` on the command line);
- **write**: tables and metadata, the metadata holding the key and the phases' times;
- **draw**: the catalogue's figures in one batch (:func:`draw_figures`).

Every job takes ``model`` (a spec, or a loaded ``(bridge, record)``), ``out``, a config, and the
keywords ``device``, ``dtype``, ``device_map``, ``progress``, ``echo`` and ``confirm`` (and
``figures`` where it draws), holds ``out`` as its one writer (:func:`interp.store.results_folder`),
and returns a :class:`JobResult`: the tables and figures in memory, and the paths written.

>>> check_shots([0, 1, 5])
[0, 1, 5]
>>> check_shots([])
Traceback (most recent call last):
...
interp.errors.InterpError: shots is empty; give numbers of demonstrations such as 0,1,5
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.errors import InterpError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.loading import ModelRecord
    from interp.tasks.prompts import Task

__all__ = [
    "CONFIRM_OVER_SECONDS",
    "FIGURE_FORMATS",
    "JobResult",
    "ModelHandle",
    "WorkEstimate",
    "check_shots",
    "check_task_labels",
    "draw_figures",
    "method_version",
    "task_key",
]

CONFIRM_OVER_SECONDS = 3600.0  # longer work asks first: a mistyped --seeds or --tasks all costs hours, not minutes
SHOW_ESTIMATE_OVER_SECONDS = 60.0  # shorter work just runs, with its progress bar
FIGURE_FORMATS = ("html", "png")  # what a job draws: interactive HTML and a PNG for documents
_ALL_FORMATS = ("html", "png", "pdf", "svg")  # removed when a job runs without figures


@dataclass
class JobResult:
    """What a job made: its tables and figures, to use without reading files back, and the files written."""

    tables: "dict[str, pd.DataFrame]"
    figures: "dict[str, go.Figure]" = field(default_factory=dict)  # file stem under out/figures -> figure
    paths: list[Path] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def method_version() -> str:
    """The package version, part of every key: results of another version of a method are not reused."""
    from interp import __version__

    return __version__


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def task_key(task: "Task") -> dict[str, str]:
    """A task's name and a digest of its items: a file named like a built-in task is another task."""
    return {"name": task.name, "sha256": _digest([asdict(item) for item in task.items])}


def check_task_labels(tasks: "Sequence[Task]") -> list[str]:
    """The tasks' names, which name their results: two different tasks of one name cannot share a run."""
    labels: dict[str, str] = {}
    for task in tasks:
        if task.name in labels and labels[task.name] != task.source:
            raise InterpError(f"two tasks are named {task.name!r} ({labels[task.name]} and {task.source}); "
                              "rename one file")
        labels[task.name] = task.source
    return [task.name for task in tasks]


def check_shots(shots: Sequence[Any]) -> list[int]:
    """Numbers of demonstrations: integers 0 or more, at least one."""
    shots = list(shots)
    if not shots:
        raise InterpError("shots is empty; give numbers of demonstrations such as 0,1,5")
    for k in shots:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InterpError(f"shots must be integers 0 or more, got {k!r}")
    return list(dict.fromkeys(shots))


class ModelHandle:
    """A job's ``model`` argument: a spec loaded when first needed, or an already loaded ``(bridge, record)``.

    :attr:`key` says what the weights are without loading them where the files can tell.
    """

    def __init__(self, model: "str | tuple[TransformerBridge, ModelRecord]", device: str = "auto",
                 dtype: str = "float32", device_map: Any = None) -> None:
        self.loaded = model if isinstance(model, tuple) else None
        self.spec = model[1].name if isinstance(model, tuple) else str(model)
        self.device, self.dtype, self.device_map = device, dtype, device_map

    def load(self) -> "tuple[TransformerBridge, ModelRecord]":
        if self.loaded is None:
            from interp.models.loading import load_model

            self.loaded = load_model(self.spec, device=self.device, dtype=self.dtype, device_map=self.device_map)
        return self.loaded

    @property
    def key(self) -> dict[str, str]:
        """``{name, identity, dtype, device}``: the weights, their number format and the kind of device."""
        if self.loaded is not None:
            record = self.loaded[1]
            identity = record.identity or self._identity()
            return {"name": record.name, "identity": identity or f"unknown:{record.name}", "dtype": record.dtype,
                    "device": record.device.split(":")[0]}
        identity = self._identity()
        if identity is None:  # only loading (downloading) the model can tell what it is
            return ModelHandle(self.load()).key
        from interp.models.loading import resolve_device, resolve_dtype

        device = "mixed" if self.device_map is not None else resolve_device(self.device).split(":")[0]
        return {"name": self.spec, "identity": identity, "dtype": str(resolve_dtype(self.dtype)).removeprefix("torch."),
                "device": device}

    def _identity(self) -> str | None:
        from interp.models.loading import model_identity

        return model_identity(self.spec)


class WorkEstimate:
    """After the first unit of work, say how long the rest will take; ask before very long work.

    ``total`` is the work in any unit proportional to time (tokens, batches); call :meth:`done`
    after each saved unit with its amount.  Over ``limit`` seconds without ``confirm`` it stops
    with one line (the finished units stay saved, so the rerun with ``--yes`` continues).
    """

    def __init__(self, what: str, total: float | int, confirm: bool, echo: Callable[[str], None],
                 limit: float | int | None = None) -> None:
        self.what, self.total, self.confirm, self.echo = what, float(total), confirm, echo
        self.limit = CONFIRM_OVER_SECONDS if limit is None else limit  # read now: a test or notebook may lower it
        self.started, self.measured, self.finished = time.perf_counter(), False, 0.0

    def done(self, amount: float | int) -> None:
        self.finished += amount
        if self.measured or self.finished <= 0 or self.finished >= self.total:
            return
        self.measured = True
        remaining = (time.perf_counter() - self.started) / self.finished * (self.total - self.finished)
        if remaining > self.limit and not self.confirm:
            raise InterpError(f"{self.what}: about {_duration(remaining)} more (measured on the first part), over "
                              f"the {_duration(self.limit)} that runs unasked; rerun with --yes (confirm=True) to go "
                              "on, or ask for less; the finished part is saved")
        if remaining > SHOW_ESTIMATE_OVER_SECONDS:
            self.echo(f"{self.what}: about {_duration(remaining)} more (measured on the first part)")


def _duration(seconds: float | int) -> str:
    """Seconds in the unit a person reads best.

    >>> _duration(90), _duration(7200 * 3)
    ('1.5 min', '6.0 h')
    """
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def draw_figures(figures: "dict[str, go.Figure]", folder: Path, enabled: bool,
                 formats: Sequence[str] = FIGURE_FORMATS) -> list[Path]:
    """Write ``figures`` (file stem -> figure) into ``folder`` in one batch; or, when not ``enabled``, remove
    the files an earlier run drew under those stems, so that no old figure sits beside new tables."""
    folder = Path(folder)
    if not enabled:
        for stem in figures:
            for fmt in _ALL_FORMATS:
                (folder / f"{stem}.{fmt}").unlink(missing_ok=True)
        return []
    if not figures:
        return []
    from interp.output.figures import save_figures

    return save_figures({folder / stem: figure for stem, figure in figures.items()}, tuple(formats))
