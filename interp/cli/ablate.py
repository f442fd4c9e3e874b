"""``interp ablate``: the causal test (top-k induction or importance heads removed, against k random heads)."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.cli.main import app, run_job
from interp.cli.options import DEFAULT_MODEL, Device, Figures, Model, Out, default_out, parse_list

__all__ = ["ablate"]


@app.command()
def ablate(
    model: Model = DEFAULT_MODEL,
    tasks: str = typer.Option("all", help="all, comma-separated task names, paper:NAME, or paths to .jsonl files"),
    shots: str = typer.Option("0,5", help="numbers of demonstrations, e.g. 0,5"),
    percents: str = typer.Option("1,5,10,20", help="k as % of all heads (rounded, at least one head)"),
    ablations: str = typer.Option("zero,mean", help="how a head is removed: zero, mean (its mean output on the task) "
                                                        "or knockout (only its induction edges blocked)"),
    rankings: str = typer.Option("prefix_matching,copying,own", help="top-k sets: prefix_matching, copying (from "
                                                                      "induction_scores), own (the task's gradient "
                                                                      "importance)"),
    n_random: int = typer.Option(5, help="random head sets (draws) per k"),
    max_items: int | None = typer.Option(40, help="items per task (0: every non-demo item)"),
    repeat_seeds: int = typer.Option(10, help="repeated random sequences (25 tokens x 4) for the induction loss"),
    batch_size: int = typer.Option(8, help="prompts per forward"),
    sets_per_forward: int = typer.Option(16, help="head sets stacked in one forward"),
    seed: int = typer.Option(0, help="demo split, demonstrations, distractors and random draws"),
    out: Out = None,
    results: Path | None = typer.Option(None, help="folder with induction_scores (default --out)"),
    device: Device = "auto",
    figures: Figures = True,
    tables_only: bool = typer.Option(False,
                                     help="only tabulate the cells already finished (say, while a long run goes on)"),
    merge: list[Path] | None = typer.Option(None, help="instead of running: pool the tables of two or more finished "
                                                        "runs (split by task, shots, percent or ranking) into --out; "
                                                        "repeat the option once per run folder"),
) -> None:
    """Remove the top-k heads by prefix matching, copying and own importance vs k random heads; resumes where it
    stopped."""
    out = out or default_out(model)

    def job() -> None:
        from interp.importance.causal_sweep import CausalConfig, merge_causal, run_causal

        if merge:
            tables = merge_causal(merge, out, figures=figures)
            typer.echo(f"merged {len(merge)} runs into {out}: {', '.join(tables)} and causal.json")
            return

        config = CausalConfig(percents=parse_list("--percents", percents, float),
                              ablations=parse_list("--ablations", ablations, str),
                              rankings=parse_list("--rankings", rankings, str), n_random=n_random,
                              max_items=max_items or None, seed=seed, batch_size=batch_size,
                              sets_per_forward=sets_per_forward, repeat_seeds=repeat_seeds)
        names = ",".join(parse_list("--tasks", tasks, str))
        tables = run_causal(model, names, list(parse_list("--shots", shots, int)), out, config, results=results,
                            device=device, figures=figures, compute=not tables_only)
        typer.echo(f"wrote {', '.join(tables) or 'no tables (no cell finished)'} and causal.json into {out}")

    run_job(job, out=out, figures=figures)
