"""``interp figures``, ``interp report`` and ``interp compare``: drawing from saved tables, no model."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.cli.main import app, run_job
from interp.cli.options import DEFAULT_MODEL, default_out, parse_list

__all__ = ["compare", "figures_command", "report"]


@app.command("figures")
def figures_command(
    results: Path = typer.Option(default_out(DEFAULT_MODEL), help="results folder whose figures are redrawn into "
                                                                  "RESULTS/figures/"),
    formats: str = typer.Option("html,png,pdf", help="comma-separated formats: html, png, pdf, svg"),
) -> None:
    """Regenerate every figure of a results folder (induction, importance, pruning, dynamics where present)."""

    def job() -> None:
        from interp.output.catalogue import regenerate_figures

        written = regenerate_figures(results, parse_list("--formats", formats, str))
        typer.echo(f"wrote {len(written)} files into {results / 'figures'}")

    run_job(job)


@app.command()
def report(
    results: Path = typer.Option(default_out(DEFAULT_MODEL), help="results folder to report on"),
    out: Path | None = typer.Option(None, help="HTML file to write (default: RESULTS/report.html)"),
) -> None:
    """Write one self-contained HTML report (plotly inlined, opens offline) with findings from the numbers."""

    def job() -> None:
        from interp.output.report import write_report

        path = write_report(results, out)
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")

    run_job(job)


@app.command()
def compare(
    results: list[Path] = typer.Option(..., help="results folders, one per model (repeat the option); tables are found "
                                                 "anywhere below each"),
    metric: str = typer.Option("prefix_matching", help="induction metric of the side-by-side heatmaps"),
    out: Path = typer.Option(Path("results") / "comparison", help="folder for the table, page and figure"),
    figures: bool = typer.Option(True, help="also draw the heatmaps (HTML, PNG, PDF)"),
) -> None:
    """Models side by side: top induction heads and their depth, the causal test at 10%, the papers' claims."""

    def job() -> None:
        from interp.output.comparison import write_comparison

        written = write_comparison(results, out)
        if figures:
            from interp.output.catalogue import comparison_figure
            from interp.output.figures import save_figures

            written += save_figures({out / f"compare_{metric}": comparison_figure(results, metric)})
        typer.echo(f"wrote {', '.join(str(path) for path in written)}")

    run_job(job)
