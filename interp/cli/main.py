"""The ``interp`` app and the one path every command runs through.

Commands live in topic modules of this package (``interp/cli/induction.py``, ``prune.py`` ...),
each registering on :data:`app` (``from interp.cli.main import app, run_job``); a new topic is
one import line in ``interp/cli/__init__.py``.  Heavy imports (torch, transformers,
TransformerLens, pandas) happen inside the commands, so ``interp --help`` answers at once.

:func:`run_job` turns an :class:`~interp.errors.InterpError` into one line on stderr and exit
code 2, honours ``--quiet``, removes the figures an older run left beside tables this command
rewrote when figures are off, and prints the wall time of the whole command.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from interp import __version__
from interp.errors import InterpError
from interp.timing import PhaseTimer

__all__ = ["FIGURE_SUFFIXES", "Settings", "app", "main", "remove_stale_figures", "run_job", "settings"]

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizers' fork warning, on every job

FIGURE_SUFFIXES = (".html", ".png", ".pdf", ".svg")  # every format interp.output.figures writes

_IMPORTED = time.perf_counter()  # where the process start cannot be read: this module's import, soon after

app = typer.Typer(
    help="A mechanistic-interpretability workbench for induction heads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass
class Settings:
    """Options given before the command (``interp --quiet induction ...``), read by :func:`run_job`."""

    quiet: bool = False  # off: progress bars and summaries are how a user sees a long job move
    timer: PhaseTimer | None = None  # started when the command line is parsed
    started: float | None = None  # set by main(): the console script's start, so imports count too


settings = Settings()


def _show_version(value: bool | None) -> None:
    if value:
        typer.echo(f"interp {__version__}")
        raise typer.Exit()


def _silence_libraries() -> None:
    """Progress bars and chatter of the loaders off, for this process and any it starts."""
    os.environ["TQDM_DISABLE"] = "1"  # read by tqdm when first imported (every bar: ours, transformers', hub's)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
    if "transformers" in sys.modules:  # already imported (a notebook, a test): tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


@app.callback()
def _options(
    version: bool | None = typer.Option(None, "--version", callback=_show_version, is_eager=True, help="print the "
                                                                                                       "version and "
                                                                                                       "exit"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars, summaries or library warnings; errors "
                                                            "still print"),
) -> None:
    """A mechanistic-interpretability workbench for induction heads."""
    settings.timer, settings.started = PhaseTimer(settings.started), None  # in-process calls: from here
    settings.quiet = quiet
    if quiet:
        _silence_libraries()


def remove_stale_figures(out: Path, since: float) -> list[Path]:
    """Delete figures in ``out`` that tables rewritten since ``since`` (a ``time.time()``) would redraw.

    A figure counts as this job's when :func:`interp.output.catalogue.collect_figures` draws it
    from the tables the job just wrote; such a figure older than the job shows an older run.
    Figures of other jobs in the same folder are left alone.
    """
    from interp.output.catalogue import collect_figures

    out = Path(out)
    tables = (*out.glob("*.parquet"), *out.glob("dynamics/*.parquet"))
    fresh = [table for table in tables if table.stat().st_mtime >= since]
    if not fresh:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        for table in fresh:  # only the new tables, so only the figures they feed are named
            link = Path(scratch) / table.relative_to(out)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(table.resolve())
        names = {entry.name for entry in collect_figures(Path(scratch))}
    stale = [path for name in sorted(names) for folder in (out / "figures", out, out / "dynamics")
             for path in (folder / f"{name}{suffix}" for suffix in FIGURE_SUFFIXES)
             if path.is_file() and path.stat().st_mtime < since]
    for path in stale:
        path.unlink()
    return stale


def run_job(job: Callable[[], None], *, out: Path | None = None, figures: bool = True) -> None:
    """Run one command's ``job``: errors as one line (exit 2), quiet output, stale figures, wall time.

    ``out`` and ``figures``: the command's results folder and its ``--figures`` flag; with
    figures off, figures of an older run that the new tables would redraw are removed.
    """
    started = time.time()
    timer = settings.timer or PhaseTimer()
    try:
        with contextlib.ExitStack() as stack:
            if settings.quiet:  # python-level writes only: errors are reported below, after the redirect
                devnull = stack.enter_context(open(os.devnull, "w"))
                stack.enter_context(contextlib.redirect_stdout(devnull))
                stack.enter_context(contextlib.redirect_stderr(devnull))
            job()
            if out is not None and not figures:
                removed = remove_stale_figures(out, started)
                if removed:
                    typer.echo(f"removed {len(removed)} figure files of an older run (figures are off): "
                               + ", ".join(path.name for path in removed[:4]) + (" ..." if len(removed) > 4 else ""))
    except InterpError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished results are saved; run the same command again to resume", err=True)
        raise typer.Exit(code=130) from None
    if not settings.quiet:
        typer.echo(f"wall time {timer.total():.1f} s (the whole command)")


def _process_start() -> float:
    """This process's start on the ``time.perf_counter()`` clock (Linux: from /proc), else this module's import."""
    try:
        since_boot = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED
    return min(_IMPORTED, time.perf_counter() - (uptime - since_boot))


def main() -> None:
    """The ``interp`` console script: the app, with the wall time counted from the interpreter's start."""
    settings.started = _process_start()
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
