"""Training dynamics: head scores and losses at every checkpoint of a run, on one time axis.

For each checkpoint (a step of an ``interp train`` run, or a Pythia revision) this measures

- every head's prefix-matching, copying and previous-token score (:func:`interp.induction.scores.score_heads`
  on seeded random sequences; Olsson's protocol by default: 25 tokens repeated 4 times, 10 seeds);
- the loss on those repeated random sequences, by repeat (repeat 1 cannot be predicted; an
  induction-capable model's loss on repeats 2..4 falls towards zero);
- the in-context-learning score (Olsson et al. 2022): mean loss at a late token minus mean loss
  at an early token of real text; 500 vs 50 on 512-token windows, scaled to shorter contexts
  (250 vs 25 at 256). More negative = more in-context learning.  Single tokens are noisy on a
  small held-out text (on the toy models the standard error over 1,000 windows is 0.1 nats), so
  ``icl_score_band`` also averages each end over a band of tokens (``icl_band_positions``; an
  addition of this workbench, not Olsson's definition).  The text is the held-out tail
  of the run's corpus (the shipped King James Bible by default), re-tokenized with each model's
  own tokenizer, so any model can be measured on it.

Tables (parquet + CSV) and ``dynamics.json`` go to ``OUT`` (default ``RUN/dynamics``); the figure
``dynamics.html``/``.png`` plots scores and losses against step on one shared axis.

Pythia (for connected users; not testable offline): ``--model EleutherAI/pythia-70m --revisions
step1000,step2000`` downloads each revision with ``huggingface_hub.snapshot_download`` (or
finds it in the local cache) and loads the directory through :func:`interp.models.loading.load_model`,
the same path as every other model.  Pythia's 2048-token context gives the paper's 500 vs 50.

>>> DynamicsConfig().icl_positions(512)
(500, 50)
>>> DynamicsConfig().icl_positions(256)
(250, 25)
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.jobs import JobResult
from interp.losses import next_token_loss

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "DynamicsConfig",
    "checkpoint_sources",
    "icl_windows",
    "per_token_loss",
    "run_dynamics",
    "score_checkpoint",
]

_REVISION_STEP = re.compile(r"step(\d+)$")
_TABLES = ("head_scores", "summary", "icl_curve")  # what each checkpoint gives


@dataclass(frozen=True)
class DynamicsConfig:
    """What to measure at each checkpoint."""

    protocol: str = "olsson"  # fixed L = 25 (101 tokens) fits a 256-token toy context; bansal reaches 893
    num_seeds: int = 10  # Olsson et al. use 10 random sequences
    metrics: tuple[str, ...] = ("prefix_matching", "copying", "previous_token")  # previous-token shows the layer-0 half
    icl_examples: int = 256  # held-out text windows per checkpoint; 32 left the toy models' ICL score +-0.4 nats noisy
    icl_length: int | None = None  # None: min(512, the model's context), Olsson's 512 where it fits
    held_out_fraction: float = 0.05  # the corpus tail, as `interp train` holds it out

    def __post_init__(self) -> None:
        from interp.induction.sequences import SequenceConfig

        SequenceConfig(protocol=self.protocol, num_seeds=self.num_seeds)  # validates both
        if self.icl_examples < 1:
            raise InterpError(f"icl_examples must be positive, got {self.icl_examples!r}")
        if self.icl_length is not None and self.icl_length < 20:
            raise InterpError(f"icl_length must be at least 20 tokens, got {self.icl_length!r}")

    def icl_positions(self, length: int) -> tuple[int, int]:
        """(late, early) token indices of the ICL score for windows of ``length`` tokens."""
        return round(length * 500 / 512), round(length * 50 / 512)

    def icl_band_positions(self, length: int) -> tuple[range, range]:
        """(late, early) token bands of ``icl_score_band``: about 50 tokens each at 512, scaled.

        >>> late, early = DynamicsConfig().icl_band_positions(512)
        >>> (late.start, late.stop - 1), (early.start, early.stop - 1)
        ((450, 500), (25, 75))
        """
        late, early = self.icl_positions(length)
        half = max(1, round(length * 25 / 512))
        return range(late - 2 * half, late + 1), range(max(1, early - half), early + half + 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def checkpoint_sources(run: str | Path | None = None, model: str | None = None,
                       revisions: Sequence[str] = ()) -> list[tuple[int, str, str]]:
    """``(step, label, loadable spec)`` for every checkpoint of a run or every hub revision."""
    if (run is None) == (model is None):
        raise InterpError("give exactly one of --run (an `interp train` folder) or --model with --revisions")
    if run is not None:
        from interp.toy.training import list_checkpoints

        if not Path(run).is_dir():
            raise InterpError(f"run folder {str(run)!r} does not exist; train one with `interp train --run`")
        found = list_checkpoints(run)
        if not found:
            raise InterpError(f"run folder {str(run)!r} has no checkpoints/step_NNNNNN/ directories")
        return [(step, directory.name, str(directory)) for step, directory in found]
    if not revisions:
        raise InterpError(f"model {model!r}: give --revisions, e.g. step1000,step8000 for Pythia")
    sources = []
    for revision in revisions:
        match = _REVISION_STEP.search(revision)
        if match is None:
            raise InterpError(f"revision {revision!r} does not end in stepN (Pythia names revisions step0..step143000)")
        sources.append((int(match.group(1)), revision, _download_revision(model, revision)))
    return sorted(sources)


def _download_revision(model: str, revision: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model, revision=revision,
                                 allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
    except Exception as error:  # offline, unknown repo or revision: many exception types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InterpError(f"model {model!r} revision {revision!r}: not in the local cache and not downloadable "
                          f"({first})") from None


def icl_windows(bridge: "TransformerBridge", documents: list[str], length: int, count: int) -> Int[Tensor,
                                                                                                   "example position"]:
    """``count`` evenly spaced windows of BOS + ``length - 1`` tokens of the held-out text."""
    tokenizer = bridge.tokenizer
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]:
        stream.extend(ids + separator)
    body = length - 1
    if len(stream) < body:
        raise InterpError(f"held-out text has {len(stream)} tokens, fewer than one {length}-token window")
    starts = torch.linspace(0, len(stream) - body, count).long().unique()
    tokens = torch.tensor(stream, dtype=torch.long)
    windows = tokens[starts[:, None] + torch.arange(body)[None, :]]
    return torch.cat([torch.full((len(starts), 1), bos, dtype=torch.long), windows], dim=1)


def per_token_loss(bridge: "TransformerBridge", tokens: Int[Tensor, "batch position"],
                   batch_size: int = 8) -> Float[Tensor, "batch target"]:
    """Cross-entropy of every next token; column ``p`` is the loss of predicting token ``p + 1``."""
    device = bridge.cfg.device or "cpu"
    losses = []
    with torch.no_grad():
        for start in range(0, len(tokens), batch_size):
            chunk = tokens[start:start + batch_size].to(device)
            losses.append(next_token_loss(bridge(chunk, return_type="logits"), chunk).cpu())
    return torch.cat(losses)


def score_checkpoint(bridge: "TransformerBridge", config: DynamicsConfig, documents: list[str]) -> dict[str,
                                                                                                        pd.DataFrame]:
    """Head scores, repeated-sequence loss and ICL loss curve of one model (step columns added later)."""
    from interp.induction.scores import score_heads
    from interp.induction.sequences import SequenceConfig
    from interp.models.context import check_fits, model_context

    context = model_context(bridge)
    sequences = SequenceConfig(protocol=config.protocol, num_seeds=config.num_seeds)
    longest = max(sequences.sequence_length(sequences.period(seed)) for seed in sequences.seeds())
    # one protocol for every checkpoint: stop rather than cap, so the time axis compares like with like
    check_fits(longest, context, f"{config.num_seeds} seeds of the {config.protocol} protocol",
               "use --protocol olsson (101 tokens) or fewer --seeds")
    heads, repeated = score_heads(bridge, sequences, metrics=config.metrics, loss=True)
    heads = heads.groupby(["layer", "head", "metric"], as_index=False)["value"].agg(value="mean", std="std")
    repeated = repeated.groupby("repeat", as_index=False)["loss"].mean()
    length = config.icl_length or min(512, context.tokens)
    check_fits(length, context, f"--icl-length {length}",
               f"use --icl-length {context.tokens} or less (the default fits)")
    loss = per_token_loss(bridge, icl_windows(bridge, documents, length, config.icl_examples))
    by_token = loss.mean(dim=0)  # column p - 1 is the loss of predicting token p
    curve = pd.DataFrame({"position": range(1, length), "loss": by_token.numpy()})
    late, early = config.icl_positions(length)
    late_band, early_band = config.icl_band_positions(length)
    band_score = (by_token[late_band.start - 1:late_band.stop - 1].mean()
                  - by_token[early_band.start - 1:early_band.stop - 1].mean())
    summary = pd.DataFrame({
        "metric": ["icl_score", "icl_score_band", "text_loss", f"text_loss_token_{early}", f"text_loss_token_{late}"]
                  + [f"repeated_loss_repeat_{repeat}" for repeat in repeated["repeat"]],
        "value": [float(by_token[late - 1] - by_token[early - 1]), float(band_score), float(loss.mean()),
                  float(by_token[early - 1]), float(by_token[late - 1])] + repeated["loss"].tolist(),
    })
    return {"head_scores": heads, "summary": summary, "icl_curve": curve}


def _held_out_documents(run: str | Path | None, fraction: float) -> list[str]:
    from interp.toy.training import read_corpus

    corpus = None
    if run is not None and (Path(run) / "config.json").exists():
        saved = json.loads((Path(run) / "config.json").read_text())
        corpus, fraction = saved.get("corpus"), saved.get("held_out_fraction", fraction)
    documents = read_corpus(corpus)
    return documents[max(1, int(len(documents) * (1 - fraction))):]


def _checkpoint_tables(spec: str, step: int, label: str, folder: Path, config: DynamicsConfig, documents: list[str],
                       loading: dict[str, Any], echo: Callable[[str], None]) -> tuple[dict[str, pd.DataFrame], Any]:
    """One checkpoint's tables, from its cache folder when intact, else measured and cached (all three or none)."""
    from interp.models.loading import load_model
    from interp.store import DamagedResult, atomic_directory, read_table, write_table

    if folder.is_dir():
        try:
            return {name: read_table(folder / name) for name in _TABLES}, None
        except (DamagedResult, InterpError) as error:
            echo(f"cached checkpoint {label} is damaged ({error}); measuring it again")
    bridge, record = load_model(spec, **loading)
    tables = score_checkpoint(bridge, config, documents)
    for table in tables.values():
        table.insert(0, "checkpoint", label)
        table.insert(0, "step", step)

    def write(staging: Path) -> None:
        for name, table in tables.items():
            write_table(table, staging / name, csv=False)

    atomic_directory(folder, write, replace=True)
    return tables, record


def _measure(sources: list[tuple[int, str, str]], folders: dict[str, Path], config: DynamicsConfig,
             documents: list[str], loading: dict[str, Any], *, progress: bool, echo: Callable[[str], None],
             confirm: bool) -> tuple[dict[str, pd.DataFrame], Any]:
    """Every checkpoint's tables, concatenated in step order, and the last model's record (None: all were cached)."""
    from tqdm.auto import tqdm

    from interp.jobs import WorkEstimate

    estimate = WorkEstimate(f"dynamics: {len(sources)} checkpoints",
                            sum(not folder.is_dir() for folder in folders.values()), confirm, echo)
    collected, record = {name: [] for name in _TABLES}, None
    for step, label, spec in tqdm(sources, desc="checkpoints", unit="ckpt", disable=not progress):
        tables, loaded = _checkpoint_tables(spec, step, label, folders[label], config, documents, loading, echo)
        record = loaded or record
        for name, table in tables.items():
            collected[name].append(table)
        if loaded is not None:
            estimate.done(1)
    return {name: pd.concat(tables, ignore_index=True) for name, tables in collected.items()}, record


def run_dynamics(out: str | Path | None = None, config: DynamicsConfig = DynamicsConfig(), *,
                 run: str | Path | None = None, model: str | None = None, revisions: Sequence[str] = (),
                 device: str = "auto", dtype: str = "float32",
                 device_map: Any = None, figures: bool = True, progress: bool = True,
                 echo: Callable[[str], None] = print, confirm: bool = False) -> JobResult:
    """Measure every checkpoint (plan, measure, write, draw); write tables, ``dynamics.json`` and the figure to ``out``.

    Each checkpoint's tables are cached under ``out/cache/dynamics-<key>/<label>-<weights>/``, keyed by
    the settings, the held-out text, dtype, device kind and package version, and by the checkpoint's
    own weights: an interrupted run resumes, a retrained run is measured afresh, and new
    checkpoints of a growing run are the only ones measured.
    """
    from transformers.utils import logging as hf_logging

    from interp.jobs import FIGURE_FORMATS, ModelHandle, draw_figures, method_version
    from interp.models.loading import model_identity
    from interp.output.catalogue import dynamics_entries
    from interp.store import cache_key, results_folder, run_metadata, write_json, write_table
    from interp.timing import PhaseTimer

    sources = checkpoint_sources(run, model, revisions)
    hf_logging.disable_progress_bar()  # one bar over checkpoints, not one per weight load
    if out is None and run is None:
        raise InterpError("give --out when measuring hub revisions")
    out, timer = Path(out) if out is not None else Path(run) / "dynamics", PhaseTimer()
    with results_folder(out, echo):
        documents = _held_out_documents(run, config.held_out_fraction)
        handle = ModelHandle(sources[0][2], device, dtype, device_map)
        key = {"job": "dynamics", "config": config.to_dict(), "text": cache_key({"documents": documents}),
               "dtype": handle.key["dtype"], "device": handle.key["device"], "version": method_version()}
        cache = out / "cache" / f"dynamics-{cache_key(key)}"
        folders = {label: cache / f"{label}-{(model_identity(spec) or spec).split(':')[-1][:12]}"
                   for _, label, spec in sources}
        with timer.phase("compute"):
            results, record = _measure(sources, folders, config, documents,
                                       dict(device=device, dtype=dtype, device_map=device_map), progress=progress,
                                       echo=echo, confirm=confirm)
        with timer.phase("write"):
            for name, table in results.items():
                write_table(table, out / name)
        with timer.phase("figures"):
            title = f"Training dynamics: {Path(run).name if run is not None else model}"
            drawn = {entry.name: entry.figure
                     for entry in dynamics_entries(results["head_scores"], results["summary"], title)}
            paths = draw_figures(drawn, out, figures, FIGURE_FORMATS)
        source = {"run": str(run)} if run is not None else {"model": model, "revisions": list(revisions)}
        metadata = run_metadata(record, **source, config=config.to_dict(),
                                checkpoints=[label for _, label, _ in sources], key=key,
                                wall_seconds=round(timer.total(), 2), timing=timer.as_dict())
        write_json(metadata, out / "dynamics.json")
    paths += [out / f"{name}.{suffix}" for name in results for suffix in ("parquet", "csv")] + [out / "dynamics.json"]
    echo(f"wrote {', '.join(results)} and dynamics.json into {out}")
    echo(timer.summary())
    return JobResult(results, drawn, paths, metadata)
