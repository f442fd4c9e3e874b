"""The ``interp`` command line.

Heavy imports (torch, transformers, TransformerLens) happen inside each command so that
``interp --help`` answers at once.  Every command runs through :func:`run_job`, which turns an
:class:`~interp.errors.InterpError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from interp.errors import InterpError
from interp.toy.training import ToyConfig

_TOY = ToyConfig()  # `interp train` defaults are the training config's defaults (the shipped recipe)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    help="A mechanistic-interpretability workbench for induction heads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

MODEL_HELP = "model spec: a known name (see `interp models`), a TransformerLens/Hugging Face id, a local HF directory or a .gguf file"
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"


def run_job(job: Callable[[], None]) -> None:
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
        from interp.models.loading import list_models

        for row in list_models():
            status = "installed" if row["installed"] else f"not installed: {row['install']}"
            typer.echo(f"{row['name']:<14} {status}\n{'':<14} {row['description']}")

    run_job(job)


@app.command()
def induction(
    model: str = typer.Option("smollm2-135m", help=MODEL_HELP),
    seeds: Optional[int] = typer.Option(None, help="number of seeds (sequences); default 100 on GPU (the paper), 20 on CPU"),
    out: Path = typer.Option(Path("results/smollm2-135m"), help="results folder"),
    protocol: str = typer.Option("bansal", help="bansal (L = 25 + 2s, the paper) or olsson (L = 25)"),
    copying: str = typer.Option("olsson", help="copying variant: olsson (attention-weighted output) or reference (Bansal code)"),
    source: str = typer.Option("embeddings", help="copying input: embeddings (the paper's code) or residual"),
    exclude_ratio: float = typer.Option(0.04, help="share of most and least frequent tokens left out of the random tokens"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16"),
    device_map: Optional[str] = typer.Option(None, help="passed to transformers, e.g. auto, to shard a model over GPUs"),
    figures: bool = typer.Option(True, help="write HTML and PNG figures"),
) -> None:
    """Score every head for prefix matching, copying and related induction metrics."""

    def job() -> None:
        from interp.induction.job import InductionConfig, run_induction

        config = InductionConfig(
            num_seeds=seeds, protocol=protocol, copying_variant=copying, copying_source=source,
            exclude_ratio=exclude_ratio,
        )
        run_induction(model, out, config, device=device, dtype=dtype, device_map=device_map, figures=figures)

    run_job(job)


@app.command()
def train(
    run: Path = typer.Option(..., help="run folder: checkpoints/step_NNNNNN/, train_loss table, train.json; an existing run resumes"),
    layers: int = typer.Option(_TOY.n_layers, help="attention-only layers: 1, 2 or 3"),
    d_model: int = typer.Option(_TOY.d_model, help="residual stream width"),
    heads: int = typer.Option(_TOY.n_heads, help="attention heads per layer"),
    context: int = typer.Option(_TOY.n_ctx, help="context length in tokens (>= 101 for the prefix-matching score)"),
    steps: int = typer.Option(_TOY.steps, help="optimizer steps"),
    batch_size: int = typer.Option(_TOY.batch_size, help="rows of `context` tokens per step"),
    lr: float = typer.Option(_TOY.learning_rate, help="peak AdamW learning rate (warm-up then cosine decay)"),
    vocab_size: int = typer.Option(_TOY.vocab_size, help="BPE vocabulary size, trained on the corpus"),
    positions: str = typer.Option(_TOY.positions, help="rotary (Llama class), or GPT-2 learned positions: sinusoidal (init) or learned"),
    repeat_fraction: float = typer.Option(_TOY.repeat_fraction, help="share of rows of repeated random tokens (the rest is text)"),
    repeat_layout: str = typer.Option(_TOY.repeat_layout, help="periodic (a chunk repeated to the row's end, random period and phase) or scattered (copies pasted into text)"),
    repeat_min: int = typer.Option(_TOY.repeat_length[0], help="shortest repeated chunk"),
    repeat_max: int = typer.Option(_TOY.repeat_length[1], help="longest repeated chunk"),
    repeat_copies: int = typer.Option(_TOY.repeat_copies, help="scattered layout: copies of the chunk, at random places"),
    repeat_tokens: str = typer.Option(_TOY.repeat_tokens, help="chunk tokens: middle (the scorer's pool) or all (non-special)"),
    text_loss_fraction: float = typer.Option(_TOY.text_loss_fraction, help="share of positions outside later copies whose loss counts"),
    weight_decay: float = typer.Option(_TOY.weight_decay, help="AdamW weight decay"),
    warmup_steps: int = typer.Option(_TOY.warmup_steps, help="linear warm-up steps"),
    checkpoints_per_octave: int = typer.Option(_TOY.checkpoints_per_octave, help="log-spaced checkpoints per doubling of the step"),
    corpus: Path | None = typer.Option(None, help="a .txt or .txt.gz file, one document a line; default the shipped King James Bible"),
    seed: int = typer.Option(_TOY.seed, help="seeds weights, batches and repeats"),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: torch's choice)"),
    export: Path | None = typer.Option(None, help="also copy the final model here as a HF directory with TRAINING.md"),
) -> None:
    """Train an attention-only toy transformer on CPU, with log-spaced checkpoints."""

    def job() -> None:
        from interp.toy.training import ToyConfig, export_model, train as train_toy

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
    run: Path | None = typer.Option(None, help="an `interp train` run folder: every checkpoints/step_NNNNNN/ is measured"),
    model: str | None = typer.Option(None, help="instead of --run: a hub model with training revisions, e.g. EleutherAI/pythia-70m (needs the hub or its cache)"),
    revisions: str | None = typer.Option(None, help="with --model: comma-separated revisions ending in stepN, e.g. step1000,step8000"),
    out: Path | None = typer.Option(None, help="results folder; default RUN/dynamics"),
    protocol: str = typer.Option("olsson", help="olsson (L = 25, fits small contexts) or bansal (L = 25 + 2s)"),
    seeds: int = typer.Option(10, help="random sequences per checkpoint (Olsson et al.: 10)"),
    icl_examples: Optional[int] = typer.Option(None, help="held-out text windows for the in-context-learning score (default DynamicsConfig's: 256)"),
    icl_length: int | None = typer.Option(None, help="text window length; default min(512, context): token 500 vs 50 at 512, scaled"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    figures: bool = typer.Option(True, help="write the HTML and PNG figure"),
) -> None:
    """Head scores, repeated-sequence loss and in-context-learning score at every checkpoint."""

    def job() -> None:
        from interp.toy.dynamics import DynamicsConfig, run_dynamics

        given = {} if icl_examples is None else {"icl_examples": icl_examples}  # else the config's default
        config = DynamicsConfig(protocol=protocol, num_seeds=seeds, icl_length=icl_length, **given)
        names = [name.strip() for name in revisions.split(",") if name.strip()] if revisions else []
        run_dynamics(out, config, run=run, model=model, revisions=names, device=device, figures=figures)
        typer.echo(f"wrote {out or Path(run) / 'dynamics'}")

    run_job(job)


@app.command()
def importance(
    model: str = typer.Option("smollm2-135m", help=MODEL_HELP),
    tasks: str = typer.Option("all", help="all, comma-separated task names, paper:NAME, or paths to .jsonl files"),
    shots: str = typer.Option("0,1,5", help="comma-separated numbers of demonstrations"),
    method: str = typer.Option("gradient", help="gradient, ablation or attribution"),
    out: Path = typer.Option(Path("results/smollm2-135m"), help="results folder (shared with `interp induction`)"),
    max_items: int | None = typer.Option(None, help="items per task (default: every non-demo item)"),
    ablations: str = typer.Option("zero,mean,resample", help="ablation kinds for --method ablation"),
    batch_size: int = typer.Option(8, help="sequences per forward"),
    seed: int = typer.Option(0, help="demo split, demonstrations, distractors, resampling donors"),
    layers: Optional[str] = typer.Option(None, help="--method ablation only: layers to ablate, e.g. 0-3,10 (default all; the rest stay NaN)"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Task importance of every head and FFN per (task, shots); resumes where it stopped."""

    def job() -> None:
        from interp.importance.methods import ImportanceConfig, run_importance

        try:
            shot_list = [int(value) for value in shots.split(",") if value.strip()]
        except ValueError:
            raise InterpError(f"--shots {shots!r} must be comma-separated integers, e.g. 0,1,5") from None
        config = ImportanceConfig(ablations=tuple(kind.strip() for kind in ablations.split(",") if kind.strip()),
                                  batch_size=batch_size, max_items=max_items, seed=seed,
                                  layers=_parse_layers(layers) if layers else None)
        table = run_importance(model, tasks, shot_list, method, out, config, device=device)
        typer.echo(f"wrote {out / 'importance.parquet'} ({len(table)} rows) and {out / 'task_accuracy.parquet'}")

    run_job(job)


def _parse_layers(text: str) -> tuple[int, ...]:
    """``"0-3,10"`` -> ``(0, 1, 2, 3, 10)``; a clear error for anything else."""
    chosen: list[int] = []
    for part in (piece.strip() for piece in text.split(",") if piece.strip()):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or (high and int(high) < int(low)):
            raise InterpError(f"--layers {text!r}: {part!r} is not a layer or an increasing range; use e.g. 0-3,10")
        chosen.extend(range(int(low), int(high or low) + 1))
    if not chosen:
        raise InterpError(f"--layers {text!r} names no layer; use e.g. 0-3,10")
    return tuple(sorted(set(chosen)))


@app.command()
def crossref(
    results: Path = typer.Option(Path("results/smollm2-135m"), help="results folder with importance and induction_scores"),
    metric: str = typer.Option("gradient", help="importance metric that ranks heads (e.g. gradient, zero_loss_delta)"),
    top_k: int = typer.Option(10, help="heads counted as important / as induction heads"),
    permutations: int = typer.Option(10000, help="permutations for the overlap p-value"),
    figures: bool = typer.Option(True, help="write HTML and PNG figures"),
) -> None:
    """Cross-reference head importance with prefix-matching and copying scores."""

    def job() -> None:
        from interp.importance.crossref import CrossrefConfig, run_crossref

        tables = run_crossref(results, CrossrefConfig(importance_metric=metric, top_k=top_k, n_permutations=permutations),
                              figures=figures)
        typer.echo(f"wrote {', '.join(tables)} into {results}")

    run_job(job)


@app.command("figures")
def figures_command(
    results: Path = typer.Option(Path("results/smollm2-135m"), help="results folder whose figures are redrawn into RESULTS/figures/"),
    formats: str = typer.Option("html,png,pdf", help="comma-separated formats: html, png, pdf, svg"),
) -> None:
    """Regenerate every figure of a results folder (induction, importance, pruning, dynamics where present)."""

    def job() -> None:
        from interp.output.catalogue import regenerate_figures

        chosen = tuple(fmt.strip() for fmt in formats.split(",") if fmt.strip())
        written = regenerate_figures(results, chosen)
        typer.echo(f"wrote {len(written)} files into {results / 'figures'}")

    run_job(job)


@app.command()
def report(
    results: Path = typer.Option(Path("results/smollm2-135m"), help="results folder to report on"),
    out: Optional[Path] = typer.Option(None, help="HTML file to write; default RESULTS/report.html"),
) -> None:
    """Write one self-contained HTML report (plotly inlined, opens offline) with findings from the numbers."""

    def job() -> None:
        from interp.output.report import write_report

        path = write_report(results, out)
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")

    run_job(job)


@app.command()
def pattern(
    model: str = typer.Option("smollm2-135m", help=MODEL_HELP),
    results: Path = typer.Option(Path("results/smollm2-135m"), help="results folder: the table goes here, and the default head comes from its induction scores"),
    layer: Optional[int] = typer.Option(None, help="layer of the head; default: the top prefix-matching head of RESULTS"),
    head: Optional[int] = typer.Option(None, help="head index within the layer (with --layer)"),
    seed: int = typer.Option(0, help="seed of the repeated random sequence (Olsson protocol, L = 25)"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Save one head's attention pattern on a repeated random sequence (drawn by `interp figures` and the report)."""

    def job() -> None:
        from interp.induction.attention import save_head_attention, top_heads
        from interp.models.loading import load_model

        if (layer is None) != (head is None):
            raise InterpError("give both --layer and --head, or neither (the top prefix-matching head)")
        chosen = (layer, head) if layer is not None else top_heads(results, "prefix_matching", 1)[0]
        bridge, _ = load_model(model, device=device)
        stem = save_head_attention(bridge, results, chosen[0], chosen[1], seed)
        typer.echo(f"wrote {stem}.parquet (+ .csv)")

    run_job(job)


@app.command()
def compare(
    results: list[Path] = typer.Option(..., help="results folders, one per model (repeat the option)"),
    metric: str = typer.Option("prefix_matching", help="induction metric to compare"),
    out: Path = typer.Option(Path("figures/comparison"), help="folder for the figure (HTML, PNG, PDF)"),
) -> None:
    """Side-by-side layer x head heatmaps of one induction score for several models."""

    def job() -> None:
        from interp.output.figures import save_figures
        from interp.output.catalogue import comparison_figure

        written = save_figures({out / f"compare_{metric}": comparison_figure(results, metric)})
        typer.echo(f"wrote {', '.join(str(path) for path in written)}")

    run_job(job)


def _number_list(option: str, text: str | None, kind: type = float) -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(kind(value) for value in text.split(",") if value.strip())
    except ValueError:
        raise InterpError(f"{option} {text!r} must be comma-separated numbers, e.g. 0,10,20") from None


@app.command()
def prune(
    study: str = typer.Argument(..., help="heads, ffns, combined, layers or laser"),
    model: str = typer.Option("smollm2-135m", help=MODEL_HELP),
    tasks: str = typer.Option("all", help="all, comma-separated task names, paper:NAME, or paths to .jsonl files"),
    shots: str = typer.Option("0,1,5", help="comma-separated numbers of demonstrations"),
    out: Path = typer.Option(Path("results/smollm2-135m"), help="results folder (shared with `interp induction`)"),
    results: Optional[Path] = typer.Option(None, help="folder with induction_scores for the induction rankings (default --out)"),
    percents: Optional[str] = typer.Option(None, help="heads/ffns: % removed, default 0,10,...,90"),
    head_percents: str = typer.Option("0,10,20,30,40,50,60,70", help="combined: % of heads removed"),
    ffn_percents: str = typer.Option("0,10,20,30,40,50", help="combined: % of FFNs removed"),
    rankings: Optional[str] = typer.Option(None, help="heads/ffns/combined: own, aggregate, most_correlated, least_correlated, task:NAME, prefix_matching, copying, random, random:SEED (default: all that apply)"),
    n_random: int = typer.Option(3, help="seeds behind the `random` ranking"),
    ablation: str = typer.Option("zero", help="what a removed head/FFN outputs: zero or mean"),
    tolerance: float = typer.Option(1.0, help="accuracy points a pruned model may lose and count as unharmed"),
    block_sizes: Optional[str] = typer.Option(None, help="layers: numbers of layers dropped (default 1..n_layers-2)"),
    distance_source: str = typer.Option("tasks", help="layers: angular distances on the task prompts (tasks) or a text sample (text)"),
    save_pruned: bool = typer.Option(True, help="layers: save one pruned model in HF format, reload it and compare"),
    text_windows: int = typer.Option(16, help="layers: windows of held-out text for the text loss"),
    text_length: int = typer.Option(128, help="layers: tokens per text window"),
    layers: Optional[str] = typer.Option(None, help="laser: layers to reduce (default the later half)"),
    matrices: str = typer.Option("mlp_in,mlp_out", help="laser: q, k, v, o, mlp_in, mlp_gate, mlp_out"),
    rhos: str = typer.Option("0.9,0.8,0.6,0.4,0.2,0.1,0.05,0.01", help="laser: shares of the rank kept"),
    max_items: Optional[int] = typer.Option(None, help="items per task (default: every non-demo item)"),
    n_choices: int = typer.Option(4, help="candidates for items without fixed choices"),
    batch_size: int = typer.Option(8, help="sequences per forward"),
    masks_per_forward: int = typer.Option(10, help="masked copies stacked in one forward"),
    seed: int = typer.Option(0, help="demo split, demonstrations and distractors"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    figures: bool = typer.Option(True, help="write HTML and PNG figures"),
) -> None:
    """Prune heads, FFNs, both, whole layers (angular distance) or matrix rank (LASER); resumes where it stopped."""

    def job() -> None:
        from interp.errors import check_choice

        check_choice("study", study, ("heads", "ffns", "combined", "layers", "laser"))
        shot_list = _number_list("--shots", shots, int)
        if study in ("heads", "ffns", "combined"):
            from interp.pruning.components import PruningConfig, run_pruning

            config = PruningConfig(
                percents=_number_list("--percents", percents), head_percents=_number_list("--head-percents", head_percents),
                ffn_percents=_number_list("--ffn-percents", ffn_percents),
                rankings=tuple(name.strip() for name in rankings.split(",") if name.strip()) if rankings else None,
                n_random=n_random, ablation=ablation, tolerance=tolerance, batch_size=batch_size,
                masks_per_forward=masks_per_forward, max_items=max_items, seed=seed, n_choices=n_choices)
            tables = run_pruning(study, model, tasks, shot_list, out, config, results=results, device=device, figures=figures)
        elif study == "layers":
            from interp.pruning.sweeps import LayerSweepConfig, run_layer_sweep

            config = LayerSweepConfig(block_sizes=_number_list("--block-sizes", block_sizes, int), distance_source=distance_source,
                                      save_pruned=save_pruned, tolerance=tolerance, batch_size=batch_size,
                                      text_windows=text_windows, text_length=text_length,
                                      max_items=max_items, seed=seed, n_choices=n_choices)
            tables = run_layer_sweep(model, tasks, shot_list, out, config, device=device, figures=figures)
        else:
            from interp.pruning.sweeps import LaserSweepConfig, run_laser_sweep

            config = LaserSweepConfig(layers=_number_list("--layers", layers, int),
                                      matrices=tuple(name.strip() for name in matrices.split(",") if name.strip()),
                                      rhos=_number_list("--rhos", rhos), batch_size=batch_size, max_items=max_items,
                                      seed=seed, n_choices=n_choices)
            tables = run_laser_sweep(model, tasks, shot_list, out, config, device=device, figures=figures)
        typer.echo(f"wrote {', '.join(tables)} into {out}")

    run_job(job)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
