"""``interp accuracy``: few-shot accuracy over several demonstration seeds, with the spread over seeds."""

from __future__ import annotations

import typer

from interp.cli.main import app, run_job
from interp.cli.options import DEFAULT_MODEL, Device, Model, Out, default_out, parse_list

__all__ = ["accuracy"]


@app.command()
def accuracy(
    model: Model = DEFAULT_MODEL,
    tasks: str = typer.Option("abstract", help="all (the 14 tasks), abstract (the 5 pattern tasks), names, sul:NAME "
                                                "(unrelated labels) or .jsonl paths, comma-separated"),
    shots: str = typer.Option("0,5", help="numbers of demonstrations, e.g. 0,5"),
    demo_seeds: str = typer.Option("0-4", help="demonstration seeds (the split stays; only the shots are redrawn)"),
    labels: str = typer.Option("original", help="original, or unrelated (SUL words for every task's labels)"),
    balanced: str = typer.Option("auto", help="auto (balanced on classification tasks), on or off"),
    max_items: int | None = typer.Option(None, help="items per task (default: every non-demo item)"),
    seed: int = typer.Option(0, help="demo split into demonstration pool and evaluated items"),
    batch_size: int = typer.Option(8, help="prompts per forward"),
    out: Out = None,
    device: Device = "auto",
) -> None:
    """Accuracy (Wilson interval) per task, shots and demonstration seed, and its spread over seeds."""
    out = out or default_out(model)

    def job() -> None:
        from interp.errors import check_choice
        from interp.tasks.demo_seeds import run_accuracy
        from interp.tasks.prompts import PromptConfig

        check_choice("--balanced", balanced, ("auto", "on", "off"))
        config = PromptConfig(seed=seed, max_items=max_items, labels=labels,
                              balanced_demos={"auto": None, "on": True, "off": False}[balanced])
        tables = run_accuracy(model, tasks, list(parse_list("--shots", shots, int)), out, config,
                              parse_list("--demo-seeds", demo_seeds, int), batch_size, device)
        spread = tables["accuracy_spread"]
        for row in spread.itertuples():
            typer.echo(f"{row.task:24s} {row.shots}-shot  accuracy {row.accuracy_mean:.3f} "
                       f"(sd {row.accuracy_sd if row.n_seeds > 1 else 0:.3f} over {row.n_seeds:.0f} seeds)")
        typer.echo(f"wrote accuracy_seeds, accuracy_spread and accuracy.json into {out}")

    run_job(job, out=out)  # no figures to draw or clean up
