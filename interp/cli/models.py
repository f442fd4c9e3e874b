"""``interp models``: the known model specs and whether each is installed."""

from __future__ import annotations

import typer

from interp.cli.main import app, run_job

__all__ = ["models"]


@app.command()
def models() -> None:
    """List the known model specs, whether each is installed, and how to install the rest."""

    def job() -> None:
        from interp.models.loading import list_models

        for row in list_models():
            status = "installed" if row["installed"] else f"not installed: {row['install']}"
            typer.echo(f"{row['name']:<14} {status}\n{'':<14} {row['description']}")

    run_job(job)
