"""``interp induction``: every head's induction scores (``interp pattern`` lives in ``interp/cli/explore.py``)."""

from __future__ import annotations

import typer

from interp.cli.main import app, run_job
from interp.cli.options import DEFAULT_MODEL, Device, DeviceMap, Dtype, Figures, Model, Out, Yes, default_out
from interp.cli.reach import MaxMemory, OffloadFolder

__all__ = ["induction"]


@app.command()
def induction(
    model: Model = DEFAULT_MODEL,
    seeds: int | None = typer.Option(None, help="number of seeds (sequences); default 100 on GPU (the "
                                                  "paper), 20 on CPU"),
    out: Out = None,
    protocol: str = typer.Option("bansal", help="bansal (L = 25 + 2s, the paper) or olsson (L = 25)"),
    copying: str = typer.Option("olsson", help="copying variant: olsson (attention-weighted output) or reference "
                                               "(Bansal code)"),
    source: str = typer.Option("embeddings", help="copying input: embeddings (the paper's code) or residual"),
    exclude_ratio: float = typer.Option(0.04, help="share of most and least frequent tokens left out of the random "
                                                   "tokens"),
    context_fit: str = typer.Option("cap", help="seeds longer than the model's context: cap (shorten their L to fit) "
                                                "or drop (leave them out)"),
    device: Device = "auto",
    dtype: Dtype = "float32",
    device_map: DeviceMap = None,
    figures: Figures = True,
    yes: Yes = False,
    max_memory: MaxMemory = None,
    offload_folder: OffloadFolder = None,
) -> None:
    """Score every head for prefix matching, copying and related induction metrics."""
    out = out or default_out(model)

    def job() -> None:
        from interp.induction.job import InductionConfig, run_induction

        config = InductionConfig(num_seeds=seeds, protocol=protocol, copying_variant=copying, copying_source=source,
                                 exclude_ratio=exclude_ratio, context_fit=context_fit)
        from interp.cli.reach import placement

        run_induction(model, out, config, device=device, dtype=dtype, figures=figures, confirm=yes,
                      device_map=placement(device_map, max_memory, offload_folder))

    run_job(job, out=out, figures=figures)
