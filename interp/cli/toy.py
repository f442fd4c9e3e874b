"""``interp train`` (an attention-only toy model) and ``interp dynamics`` (scores over its checkpoints)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from interp.cli.main import app, run_job
from interp.cli.options import Device, DeviceMap, Dtype, Figures, Yes, default_out, parse_list
from interp.toy.training import ToyConfig

__all__ = ["dynamics", "train"]

_TOY = ToyConfig()  # `interp train` defaults are the training config's defaults (the shipped recipe)


@app.command()
def train(
    run: Path = typer.Option(..., help="run folder: checkpoints/step_NNNNNN/, train_loss table, train.json; an "
                                       "existing run resumes"),
    layers: int = typer.Option(_TOY.n_layers, help="attention-only layers: 1, 2 or 3"),
    d_model: int = typer.Option(_TOY.d_model, help="residual stream width"),
    heads: int = typer.Option(_TOY.n_heads, help="attention heads per layer"),
    context: int = typer.Option(_TOY.n_ctx, help="context length in tokens (>= 101 for the prefix-matching score)"),
    steps: int = typer.Option(_TOY.steps, help="optimizer steps"),
    batch_size: int = typer.Option(_TOY.batch_size, help="rows of `context` tokens per step"),
    lr: float = typer.Option(_TOY.learning_rate, help="peak AdamW learning rate (warm-up then cosine decay)"),
    vocab_size: int = typer.Option(_TOY.vocab_size, help="BPE vocabulary size, trained on the corpus"),
    positions: str = typer.Option(_TOY.positions, help="rotary (Llama class), or GPT-2 learned positions: sinusoidal "
                                                       "(init) or learned"),
    repeat_fraction: float = typer.Option(_TOY.repeat_fraction, help="share of rows of repeated random tokens (the "
                                                                     "rest is text)"),
    repeat_layout: str = typer.Option(_TOY.repeat_layout, help="periodic (a chunk repeated to the row's end, random "
                                                               "period and "
                                                                "phase) or scattered (copies pasted into text)"),
    repeat_min: int = typer.Option(_TOY.repeat_length[0], help="shortest repeated chunk"),
    repeat_max: int = typer.Option(_TOY.repeat_length[1], help="longest repeated chunk"),
    repeat_copies: int = typer.Option(_TOY.repeat_copies, help="scattered layout: copies of the chunk, at random "
                                                                 "places"),
    repeat_tokens: str = typer.Option(_TOY.repeat_tokens, help="chunk tokens: middle (the scorer's pool) or all "
                                                               "(non-special)"),
    text_loss_fraction: float = typer.Option(_TOY.text_loss_fraction, help="share of positions outside later copies "
                                                                           "whose loss counts"),
    weight_decay: float = typer.Option(_TOY.weight_decay, help="AdamW weight decay"),
    warmup_steps: int = typer.Option(_TOY.warmup_steps, help="linear warm-up steps"),
    checkpoints_per_octave: int = typer.Option(_TOY.checkpoints_per_octave, help="log-spaced checkpoints per doubling "
                                                                                 "of the step"),
    corpus: Path | None = typer.Option(None, help="a .txt or .txt.gz file, one document a line; default the shipped "
                                                  "King James Bible"),
    seed: int = typer.Option(_TOY.seed, help="seeds weights, batches and repeats"),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: torch's choice)"),
    export: Path | None = typer.Option(None, help="also copy the final model here as a HF directory with TRAINING.md"),
) -> None:
    """Train an attention-only toy transformer on CPU, with log-spaced checkpoints."""

    def job() -> None:
        from interp.toy.training import export_model
        from interp.toy.training import train as train_toy

        config = ToyConfig(
            n_layers=layers, d_model=d_model, n_heads=heads, n_ctx=context, steps=steps, batch_size=batch_size,
            learning_rate=lr, vocab_size=vocab_size, repeat_fraction=repeat_fraction, seed=seed,
            repeat_length=(repeat_min, repeat_max), repeat_copies=repeat_copies, repeat_tokens=repeat_tokens,
            text_loss_fraction=text_loss_fraction, weight_decay=weight_decay, warmup_steps=warmup_steps,
            positions=positions, repeat_layout=repeat_layout, checkpoints_per_octave=checkpoints_per_octave,
            corpus=str(corpus) if corpus else None,
        )
        final = train_toy(config, run, threads=threads)
        typer.echo(f"final checkpoint: {final}")
        if export is not None:
            command = "interp " + " ".join(sys.argv[1:])
            typer.echo(f"exported: {export_model(run, export, command)}")

    run_job(job)


@app.command()
def dynamics(
    run: Path | None = typer.Option(None, help="an `interp train` run folder: every checkpoints/step_NNNNNN/ is "
                                               "measured"),
    model: str | None = typer.Option(None, help="instead of --run: a hub model with training revisions, e.g. "
                                                   "EleutherAI/pythia-70m (needs the hub or its cache)"),
    revisions: str | None = typer.Option(None, help="with --model: comma-separated revisions ending in stepN, e.g. "
                                                    "step1000,step8000"),
    out: Path | None = typer.Option(None, help="results folder (default: RUN/dynamics, or results/MODEL/dynamics with "
                                               "--model)"),
    protocol: str = typer.Option("olsson", help="olsson (L = 25, fits small contexts) or bansal (L = 25 + 2s)"),
    seeds: int = typer.Option(10, help="random sequences per checkpoint (Olsson et al.: 10)"),
    icl_examples: int | None = typer.Option(None, help="held-out text windows for the in-context-learning score "
                                                       "(default DynamicsConfig's: 256)"),
    icl_length: int | None = typer.Option(None, help="text window length; default min(512, context): token 500 vs 50 "
                                                     "at 512, scaled"),
    device: Device = "auto",
    dtype: Dtype = "float32",
    device_map: DeviceMap = None,
    figures: Figures = True,
    yes: Yes = False,
) -> None:
    """Head scores, repeated-sequence loss and in-context-learning score at every checkpoint."""
    if out is None and run is not None:
        out = run / "dynamics"
    elif out is None and model is not None:
        out = default_out(model) / "dynamics"

    def job() -> None:
        from interp.toy.dynamics import DynamicsConfig, run_dynamics

        given = {} if icl_examples is None else {"icl_examples": icl_examples}  # else the config's default
        config = DynamicsConfig(protocol=protocol, num_seeds=seeds, icl_length=icl_length, **given)
        names = list(parse_list("--revisions", revisions, str)) if revisions is not None else []
        run_dynamics(out, config, run=run, model=model, revisions=names, device=device, dtype=dtype,
                     device_map=device_map, figures=figures, confirm=yes)

    run_job(job, out=out, figures=figures)
