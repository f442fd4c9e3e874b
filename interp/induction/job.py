"""The main job: score every head of a model for induction, save tables, figures and metadata.

``interp induction`` and :func:`run_induction` write into one results folder:

- ``induction_scores.{parquet,csv}``: model, layer, head, metric, mean, var, ci_low, ci_high,
  n_seeds (model-level rows such as ``loss_repeat_1`` have an empty layer and head);
- ``induction_per_seed.{parquet,csv}`` and ``repeated_loss.{parquet,csv}``: the raw values;
- ``induction_metadata.json``: model record, protocol, seeds, the cache key, package versions,
  device, wall time and the time of each phase (``timing``); written last;
- ``figures/``: the catalogue's induction figures (heatmaps, scatter, loss curve; HTML + PNG).

Per-seed values are cached under ``cache/induction-<key>/``, the key naming everything that
changes them (the model's weights, dtype and kind of device; the protocol; the copying variant;
the metrics; the package version).  Seeds are cached in fixed chunks of
:data:`SEEDS_PER_CHUNK` consecutive seeds, each chunk one folder holding its scores *and* its
loss, renamed into place whole, so a kill leaves every chunk complete or absent and a rerun
computes exactly the batches an uninterrupted run would have.

>>> from interp.induction.job import InductionConfig, run_induction      # doctest: +SKIP
>>> result = run_induction("smollm2-135m", "results/smollm2-135m", InductionConfig(num_seeds=4))  # doctest: +SKIP
>>> result.top_heads("prefix_matching", 3)                           # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from interp.errors import InterpError, check_choice
from interp.induction.scores import COPYING_SOURCES, COPYING_VARIANTS, METRICS, score_heads
from interp.induction.sequences import FITS, PROTOCOLS, SequenceConfig, token_pool
from interp.jobs import FIGURE_FORMATS, JobResult, ModelHandle, WorkEstimate, draw_figures, method_version
from interp.models.context import model_context
from interp.stats import summarise_seeds
from interp.store import (
    DamagedResult,
    atomic_directory,
    cache_key,
    key_difference,
    read_json,
    read_json_if_intact,
    read_table,
    results_folder,
    run_metadata,
    write_json,
    write_table,
)
from interp.timing import PhaseTimer

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.loading import ModelRecord

__all__ = ["CPU_DEFAULT_SEEDS", "GPU_DEFAULT_SEEDS", "InductionConfig", "InductionResult", "check_token_pool",
           "induction_figures", "load_induction", "run_induction"]

GPU_DEFAULT_SEEDS = 100  # the paper's seeds 0..99 (L = 25..223)
CPU_DEFAULT_SEEDS = 20  # L = 25..63: the main job fits in a few minutes on a 2-core CPU
SEEDS_PER_CHUNK = 5  # results are saved after every chunk, so an interruption loses little
TABLES = ("induction_scores", "induction_per_seed", "repeated_loss")


@dataclass
class InductionConfig:
    """What the induction job computes; every field lands in the metadata."""

    num_seeds: int | None = None  # None: 100 (the paper) on GPU, 20 on CPU
    protocol: str = "bansal"  # Bansal et al.'s lengths L = 25 + 2s; "olsson" for L = 25
    copying_variant: str = "olsson"  # attention-weighted output; "reference" = Bansal's code
    copying_source: str = "embeddings"  # the paper's code feeds each layer the embeddings
    exclude_ratio: float = 0.04  # Bansal et al. drop the 4% most and least frequent tokens
    max_batch_tokens: int = 4096  # padded tokens per forward pass; bounds memory
    metrics: tuple[str, ...] = METRICS
    context_fit: str = "cap"  # seeds past the model's context: "cap" their L (keeps the seed count) or "drop" them

    def __post_init__(self) -> None:
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_choice("context fit", self.context_fit, FITS)
        check_choice("copying variant", self.copying_variant, COPYING_VARIANTS)
        check_choice("copying source", self.copying_source, COPYING_SOURCES)
        for metric in self.metrics:
            check_choice("metric", metric, METRICS)
        if self.num_seeds is not None and (not isinstance(self.num_seeds, int) or self.num_seeds < 1):
            raise InterpError(f"seeds must be a positive integer, got {self.num_seeds!r}")
        if self.max_batch_tokens < 1:
            raise InterpError(f"max_batch_tokens must be positive, got {self.max_batch_tokens!r}")

    def sequences(self, device: str, max_length: int | None = None) -> SequenceConfig:
        """The protocol's sequences, fitted to a model that reads at most ``max_length`` tokens."""
        seeds = self.num_seeds or (GPU_DEFAULT_SEEDS if device.startswith("cuda") else CPU_DEFAULT_SEEDS)
        return SequenceConfig(protocol=self.protocol, num_seeds=seeds, exclude_ratio=self.exclude_ratio,
                              max_length=max_length, fit=self.context_fit)


@dataclass
class InductionResult(JobResult):
    """The job's tables (``induction_scores``, ``induction_per_seed``, ``repeated_loss``), figures and paths."""

    @property
    def scores(self) -> pd.DataFrame:
        return self.tables["induction_scores"]

    @property
    def per_seed(self) -> pd.DataFrame:
        return self.tables["induction_per_seed"]

    @property
    def loss(self) -> pd.DataFrame:
        return self.tables["repeated_loss"]

    def top_heads(self, metric: str = "prefix_matching", count: int = 5) -> pd.DataFrame:
        check_choice("metric", metric, sorted(self.scores["metric"].unique()))
        rows = self.scores[self.scores["metric"] == metric]
        return rows.nlargest(count, "mean")[["layer", "head", "mean", "ci_low", "ci_high"]].reset_index(drop=True)


# --------------------------------------------------------------------------- plan


def check_token_pool(bridge: "TransformerBridge", record: "ModelRecord", sequences: SequenceConfig) -> tuple[int, str]:
    """(pool size, ranking method); one line before any work when the seeds need more distinct tokens than it has."""
    pool, method = token_pool(bridge.tokenizer, sequences.exclude_ratio)

    def needs(seed: int) -> int:
        return max(sequences.period(seed), sequences.copying_length(seed))

    seeds = sequences.seeds()
    if needs(seeds[-1]) <= len(pool):
        return len(pool), method
    low, high = 0, len(seeds)  # lengths grow with the seed: the seeds that fit are a prefix
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if needs(seeds[middle - 1]) <= len(pool) else (low, middle - 1)
    advice = f"use --seeds {low} or fewer" if low else "lower --exclude-ratio"
    raise InterpError(f"{len(seeds)} seeds of the {sequences.protocol} protocol need up to {needs(seeds[-1])} distinct "
                      f"tokens (seed {seeds[-1]}), but {record.name}'s token pool has {len(pool)}; {advice}, "
                      "or the olsson protocol (25 tokens per seed)")


def _key(model_key: dict[str, str], config: InductionConfig, sequences: SequenceConfig) -> dict[str, Any]:
    """Everything that changes a seed's numbers (batching, ``max_batch_tokens``, changes only their rounding)."""
    return {
        "job": "induction",
        "model": model_key,
        "protocol": [sequences.protocol, sequences.exclude_ratio, sequences.repeats, sequences.base_length],
        # capped or dropped seeds are other sequences (a model whose context fits every seed keeps its old key)
        **({"context": [sequences.max_length, sequences.fit]} if sequences.fit_note() else {}),
        "copying": [config.copying_variant, config.copying_source],
        "metrics": sorted(config.metrics),
        "version": method_version(),
    }


# --------------------------------------------------------------------------- compute


def _chunks(seeds: Sequence[int]) -> list[list[int]]:
    """Seeds grouped by ``seed // SEEDS_PER_CHUNK``: the same groups whatever was done before."""
    groups: dict[int, list[int]] = {}
    for seed in seeds:
        groups.setdefault(seed // SEEDS_PER_CHUNK, []).append(seed)
    return list(groups.values())


def _chunk_name(chunk: Sequence[int]) -> str:
    return f"seeds-{chunk[0]:06d}-{chunk[-1]:06d}"  # sorts by seed


def _read_cache(cache: Path, echo: Callable[[str], None]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Every intact chunk's (scores, loss) by name; a damaged chunk is removed (and said): its seeds are redone."""
    chunks = {}
    for folder in sorted(cache.glob("seeds-*")):
        try:
            chunks[folder.name] = (read_table(folder / "per_seed"), read_table(folder / "loss"))
        except DamagedResult as error:
            echo(f"cached seeds {folder.name} are damaged ({error}); computing them again")
            shutil.rmtree(folder, ignore_errors=True)
    return chunks


def _score_chunk(bridge: "TransformerBridge", sequences: SequenceConfig, config: InductionConfig, chunk: list[int],
                 cache: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score one chunk of seeds and cache its scores and loss together (one folder renamed into place)."""
    metrics = [metric for metric in config.metrics if metric != "ov_copying"]
    table, loss = score_heads(bridge, sequences, metrics, copying_variant=config.copying_variant,
                              copying_source=config.copying_source, seeds=chunk,
                              max_batch_tokens=config.max_batch_tokens, loss=True)

    def write(folder: Path) -> None:
        write_table(table, folder / "per_seed", csv=False)
        write_table(loss, folder / "loss", csv=False)

    atomic_directory(cache / _chunk_name(chunk), write)
    return table, loss


def _score_seeds(bridge: "TransformerBridge", record: "ModelRecord", sequences: SequenceConfig, config: InductionConfig,
                 cache: Path, *, progress: bool, echo: Callable[[str], None], confirm: bool
                 ) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """Per-seed scores and loss of every wanted seed, cached seeds reused; also the reused seeds."""
    chunks = _read_cache(cache, echo)
    done = {int(seed) for table, _ in chunks.values() for seed in table["seed"].unique()}
    wanted = sequences.seeds()
    todo = [seed for seed in wanted if seed not in done]
    reused = sorted(done & set(wanted))
    if reused:
        echo(f"reusing {len(reused)} cached seeds from {cache}")

    def tokens(seed: int) -> int:  # forward-pass work of one seed: its repeated and its copying sequence
        return sequences.repeats * sequences.period(seed) + sequences.copying_length(seed) + 2

    estimate = WorkEstimate(f"{record.name}: {len(todo)} seeds", sum(tokens(seed) for seed in todo), confirm, echo)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"{record.name}: scoring heads", unit="seed", disable=not progress or not todo)
    with bar:
        for chunk in _chunks(todo):
            chunks[_chunk_name(chunk)] = _score_chunk(bridge, sequences, config, chunk, cache)
            bar.update(len(chunk))
            estimate.done(sum(tokens(seed) for seed in chunk))
    ordered = [chunks[name] for name in sorted(chunks)]  # seed order, as an uninterrupted run makes them
    per_seed = pd.concat([table for table, _ in ordered], ignore_index=True)
    loss = pd.concat([loss for _, loss in ordered], ignore_index=True)
    per_seed = per_seed[per_seed["seed"].isin(wanted)].reset_index(drop=True)
    loss = loss[loss["seed"].isin(wanted)].sort_values(["seed", "position"]).reset_index(drop=True)
    return per_seed, loss, reused


def _with_loss_summary(scores: pd.DataFrame, loss: pd.DataFrame) -> pd.DataFrame:
    """Append model-level rows: mean loss on repeat 1 and on repeats 2..4, over seeds."""
    blocks = {False: "loss_repeat_1", True: "loss_repeats_2_4"}
    by_seed = loss.assign(block=lambda frame: frame["repeat"].gt(1).map(blocks))
    per_seed = by_seed.groupby(["seed", "block"], as_index=False)["loss"].mean()
    per_seed = per_seed.rename(columns={"block": "metric", "loss": "value"}).assign(layer=-1, head=-1)
    summary = summarise_seeds(per_seed)
    summary[["layer", "head"]] = pd.NA
    combined = pd.concat([scores, summary], ignore_index=True)
    combined[["layer", "head"]] = combined[["layer", "head"]].astype("Int64")
    return combined


def _tables(bridge: "TransformerBridge", record: "ModelRecord", sequences: SequenceConfig, config: InductionConfig,
            per_seed: pd.DataFrame, loss: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if "ov_copying" in config.metrics:
        per_seed = pd.concat([per_seed, score_heads(bridge, sequences, ("ov_copying",))], ignore_index=True)
    scores = _with_loss_summary(summarise_seeds(per_seed), loss)
    scores.insert(0, "model", record.name)
    return {"induction_scores": scores, "induction_per_seed": per_seed, "repeated_loss": loss}


# --------------------------------------------------------------------------- the job


def run_induction(
    model: "str | tuple[TransformerBridge, ModelRecord]",
    out: Path,
    config: InductionConfig | None = None,
    *,
    device: str = "auto",
    dtype: str = "float32",
    device_map: Any = None,
    figures: bool = True,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    confirm: bool = False,
) -> InductionResult:
    """Compute, save and summarise the induction scores of ``model`` into ``out`` (plan, score, write, draw)."""
    config, out, timer = config or InductionConfig(), Path(out), PhaseTimer()
    with results_folder(out, echo):
        with timer.phase("load"):
            handle = ModelHandle(model, device, dtype, device_map)
            bridge, record = handle.load()
        context = model_context(bridge)
        sequences = config.sequences(record.device, context.tokens)  # never a sequence longer than the model reads
        if sequences.fit_note():
            echo(sequences.fit_note())
        pool_size, ranking = check_token_pool(bridge, record, sequences)
        key = _key(handle.key, config, sequences)
        previous = read_json_if_intact(out / "induction_metadata.json")
        if previous is not None and key_difference(previous.get("key"), key):
            echo(f"replacing the induction results in {out}: {key_difference(previous.get('key'), key)}")
        if record.device == "cpu" and config.num_seeds is None:
            echo(f"CPU run: {sequences.num_seeds} seeds by default (the paper's 100 are the GPU default; "
                 "use --seeds 100)")
        with timer.phase("score"):
            cache = out / "cache" / f"induction-{cache_key(key)}"
            per_seed, loss, reused = _score_seeds(bridge, record, sequences, config, cache, progress=progress,
                                                  echo=echo, confirm=confirm)
            tables = _tables(bridge, record, sequences, config, per_seed, loss)
        metadata = run_metadata(record, job="induction", protocol=sequences.to_dict(), seeds=sequences.seeds(),
                                context={**context.to_dict(), **sequences.fit_report()},
                                config=asdict(config), token_ranking=f"{ranking}; {pool_size} tokens in the pool",
                                device=record.device, key=key, cache_key=cache_key(key), reused_seeds=reused)
        result = InductionResult(tables, metadata=metadata)
        with timer.phase("write"):
            for name, table in tables.items():
                write_table(table, out / name)
                result.paths += [out / f"{name}.parquet", out / f"{name}.csv"]
        with timer.phase("figures"):
            result.figures = {entry.name: entry.figure for entry in _figure_entries(tables)}
            result.paths += draw_figures(result.figures, out / "figures", figures, FIGURE_FORMATS)
        metadata.update(wall_time_s=round(timer.total(), 2), timing=timer.as_dict())
        with timer.phase("write"):
            write_json(metadata, out / "induction_metadata.json")  # last: its presence marks a finished run
        result.paths.append(out / "induction_metadata.json")
    echo(_summary(result, out, figures))
    echo(timer.summary())
    return result


# --------------------------------------------------------------------------- draw and read back


def _figure_entries(tables: dict[str, pd.DataFrame]) -> list:
    from interp.output.catalogue import induction_entries

    return induction_entries(tables["induction_scores"], tables.get("repeated_loss"))


def induction_figures(results: Path, formats: Sequence[str] = FIGURE_FORMATS) -> dict[str, list[Path]]:
    """(Re)draw every induction figure of a results folder from its saved tables (the catalogue's definitions)."""
    results = Path(results)
    tables = {"induction_scores": read_table(results / "induction_scores")}
    if (results / "repeated_loss.parquet").exists() or (results / "repeated_loss.csv").exists():
        tables["repeated_loss"] = read_table(results / "repeated_loss")
    entries = _figure_entries(tables)
    written = draw_figures({entry.name: entry.figure for entry in entries}, results / "figures", True, formats)
    return {entry.name: [path for path in written if path.stem == entry.name] for entry in entries}


def _summary(result: InductionResult, out: Path, figures: bool) -> str:
    written = "induction_scores.parquet (+ .csv), induction_metadata.json" + (", figures/" if figures else "")
    lines = [f"wrote {out}/{written}"]
    for metric in ("prefix_matching", "copying"):
        if metric in set(result.scores["metric"]):
            top = result.top_heads(metric, 5)
            heads = ", ".join(f"L{row.layer}H{row.head} {row.mean:.3f}" for row in top.itertuples())
            lines.append(f"top {metric.replace('_', ' ')} heads: {heads}")
    losses = result.scores.set_index("metric")["mean"]
    if {"loss_repeat_1", "loss_repeats_2_4"} <= set(losses.index):
        lines.append(f"loss on repeat 1: {losses['loss_repeat_1']:.2f} nats; "
                     f"on repeats 2-4: {losses['loss_repeats_2_4']:.2f}")
    lines.append(f"wall time {result.metadata['wall_time_s']:.1f} s on {result.metadata['device']}")
    return "\n".join(lines)


def load_induction(results: Path) -> InductionResult:
    """Read a results folder written by :func:`run_induction` back into an :class:`InductionResult`."""
    results = Path(results)
    return InductionResult({name: read_table(results / name) for name in TABLES},
                           metadata=read_json(results / "induction_metadata.json"))
