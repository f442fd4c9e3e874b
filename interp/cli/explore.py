"""``interp pattern`` (a head on repeated tokens and text, with a figure), ``interp patch``, ``interp composition``."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.cli.main import app, run_job
from interp.cli.options import DEFAULT_MODEL, Device, DeviceMap, Dtype, Figures, Model, Out, default_out
from interp.errors import InterpError

__all__ = ["composition", "patch", "pattern"]


def _write_figure(figure, stem: Path) -> list[Path]:
    """Self-contained HTML (plotly.js inlined, opens offline) and a PNG beside it."""
    from interp.explore.viewer import save_html
    from interp.output.figures import save_figures

    return [save_html(figure, stem.with_suffix(".html"))] + save_figures({stem: figure}, ("png",))


@app.command()
def pattern(
    model: Model = DEFAULT_MODEL,
    results: Path | None = typer.Option(None, help="results folder: the table goes here, and the default head and the "
                                                      "scores come from its induction scores (default: results/MODEL)"),
    layer: int | None = typer.Option(None, help="layer of the head; default: the top prefix-matching head of RESULTS"),
    head: int | None = typer.Option(None, help="head index within the layer (with --layer)"),
    text: str | None = typer.Option(None, help="also show the head on this text (BOS prepended)"),
    seed: int = typer.Option(0, help="seed of the repeated random sequence (Olsson protocol, L = 25)"),
    device: Device = "auto",
    dtype: Dtype = "float32",
    device_map: DeviceMap = None,
    figures: Figures = True,
) -> None:
    """One head's attention on a repeated random sequence (table, drawn by `interp figures`) and a figure.

    The figure (RESULTS/figures/head_L{layer}H{head}.html, self-contained, and .png) shows the
    pattern on the repeated sequence and on --text, tokens on both axes, with the head's scores
    and intervals from RESULTS (computed on 5 seeds when RESULTS has none).
    """
    results = results or default_out(model)

    def job() -> None:
        from interp.explore.viewer import head_overview
        from interp.induction.attention import save_head_attention, top_heads
        from interp.models.loading import load_model

        if (layer is None) != (head is None):
            raise InterpError("give both --layer and --head, or neither (the top prefix-matching head)")
        chosen = (layer, head) if layer is not None else top_heads(results, "prefix_matching", 1)[0]
        bridge, _ = load_model(model, device=device, dtype=dtype, device_map=device_map)
        stem = save_head_attention(bridge, results, chosen[0], chosen[1], seed)
        typer.echo(f"wrote {stem}.parquet (+ .csv)")
        if figures:
            scores = results if (results / "induction_scores.parquet").exists() else None
            figure = head_overview(bridge, chosen[0], chosen[1], text=text, scores=scores, seed=seed)
            written = _write_figure(figure, results / "figures" / f"head_L{chosen[0]}H{chosen[1]}")
            typer.echo(f"wrote {', '.join(str(path) for path in written)}")

    run_job(job)


@app.command()
def patch(
    clean: str = typer.Option(..., help="the clean prompt (BOS prepended)"),
    corrupted: str = typer.Option(..., help="the corrupted prompt: the same number of tokens as --clean"),
    answer: str = typer.Option(..., help="the one-token answer the clean prompt predicts (mind its leading space)"),
    wrong: str | None = typer.Option(None, help="a one-token wrong answer: the metric is the logit difference; "
                                                   "default the answer's log-probability"),
    model: Model = DEFAULT_MODEL,
    out: Out = None,
    activations: str = typer.Option("z,resid_pre,pattern", help="what to patch: z (head outputs), resid_pre, pattern"),
    directions: str = typer.Option("denoising,noising", help="denoising (clean into corrupted), noising (the reverse)"),
    device: Device = "auto",
    dtype: Dtype = "float32",
    figures: Figures = True,
) -> None:
    """Activation patching between a clean and a corrupted prompt: table OUT/patching.* and a heatmap per direction."""
    from interp.cli.options import parse_list

    out = out or default_out(model)

    def job() -> None:
        from interp.explore.api import patch as run_patch
        from interp.explore.patching import patching_figure
        from interp.models.loading import load_model
        from interp.store import run_metadata, write_json, write_table

        bridge, record = load_model(model, device=device, dtype=dtype)
        chosen = parse_list("--directions", directions, str)
        patched = parse_list("--activations", activations, str)
        table = run_patch(bridge, clean, corrupted, answer, wrong, activations=patched, directions=chosen)
        write_table(table, out / "patching")
        write_json(run_metadata(record, clean=clean, corrupted=corrupted, answer=answer, wrong=wrong,
                                metric="logit difference" if wrong else "answer log-probability"),
                   out / "patching_metadata.json")
        typer.echo(f"wrote {out / 'patching'}.parquet (+ .csv): clean {table['clean'].iloc[0]:.3f}, "
                   f"corrupted {table['corrupted'].iloc[0]:.3f}")
        if figures:
            for direction in chosen:
                written = _write_figure(patching_figure(table, direction), out / "figures" / f"patching_{direction}")
                typer.echo(f"wrote {', '.join(str(path) for path in written)}")

    run_job(job, out=out, figures=figures)


@app.command()
def composition(
    model: Model = DEFAULT_MODEL,
    out: Out = None,
    fold_norms: bool = typer.Option(True, help="fold each layer's pre-attention norm gain into its reading weights"),
    top: int | None = typer.Option(None, help="figure: only the heads of the TOP pairs furthest above the baseline"),
    device: Device = "auto",
    figures: Figures = True,
) -> None:
    """Q, K and V composition scores of every pair of heads in different layers, with the random baseline."""
    out = out or default_out(model)

    def job() -> None:
        from interp.explore.composition import composition_figure, composition_table
        from interp.models.loading import load_model
        from interp.store import run_metadata, write_json, write_table

        bridge, record = load_model(model, device=device)
        table = composition_table(bridge, fold_norms=fold_norms)
        write_table(table, out / "composition")
        write_json(run_metadata(record, fold_norms=fold_norms, baseline="random Gaussian heads of the same shapes"),
                   out / "composition_metadata.json")
        best = table.nlargest(1, "ratio").iloc[0]
        typer.echo(f"wrote {out / 'composition'}.parquet (+ .csv); strongest: {best['kind'].upper()} "
                   f"L{best['writer_layer']}H{best['writer_head']} -> L{best['reader_layer']}H{best['reader_head']} "
                   f"{best['score']:.3f} (baseline {best['baseline']:.3f})")
        if figures:
            written = _write_figure(composition_figure(table, f"{record.name}: composition", top=top),
                                    out / "figures" / "composition")
            typer.echo(f"wrote {', '.join(str(path) for path in written)}")

    run_job(job, out=out, figures=figures)
