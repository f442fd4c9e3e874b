"""The ``interp`` command line.

Heavy imports (torch, transformers, TransformerLens) happen inside each command so that
``interp --help`` answers at once.  Every command runs through :func:`_run`, which turns an
:class:`~interp.errors.InterpError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import typer

from interp.errors import InterpError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    help="A mechanistic-interpretability workbench for induction heads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

MODEL_HELP = "model spec: a known name (see `interp models`), a TransformerLens/Hugging Face id, a local HF directory or a .gguf file"
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"


def _run(job: Callable[[], None]) -> None:
    try:
        job()
    except InterpError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished results are saved; run the same command again to resume", err=True)
        raise typer.Exit(code=130)


@app.command()
def models() -> None:
    """List the known model specs, whether each is installed, and how to install the rest."""

    def job() -> None:
        from interp.models import list_models

        for row in list_models():
            status = "installed" if row["installed"] else f"not installed: {row['install']}"
            typer.echo(f"{row['name']:<14} {status}\n{'':<14} {row['description']}")

    _run(job)


@app.command()
def induction(
    model: str = typer.Option("smollm2-135m", help=MODEL_HELP),
    seeds: int = typer.Option(None, help="number of seeds (sequences); default 100 on GPU (the paper), 20 on CPU"),
    out: Path = typer.Option(Path("results/smollm2-135m"), help="results folder"),
    protocol: str = typer.Option("bansal", help="bansal (L = 25 + 2s, the paper) or olsson (L = 25)"),
    copying: str = typer.Option("olsson", help="copying variant: olsson (attention-weighted output) or reference (Bansal code)"),
    source: str = typer.Option("embeddings", help="copying input: embeddings (the paper's code) or residual"),
    exclude_ratio: float = typer.Option(0.04, help="share of most and least frequent tokens left out of the random tokens"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16"),
    device_map: str = typer.Option(None, help="passed to transformers, e.g. auto, to shard a model over GPUs"),
    figures: bool = typer.Option(True, help="write HTML and PNG figures"),
) -> None:
    """Score every head for prefix matching, copying and related induction metrics."""

    def job() -> None:
        from interp.induction import InductionConfig, run_induction

        config = InductionConfig(
            num_seeds=seeds, protocol=protocol, copying_variant=copying, copying_source=source,
            exclude_ratio=exclude_ratio,
        )
        run_induction(model, out, config, device=device, dtype=dtype, device_map=device_map, figures=figures)

    _run(job)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
