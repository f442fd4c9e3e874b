"""The main job: score every head of a model for induction, save tables, figures and metadata.

``interp induction`` and :func:`run_induction` write into one results folder:

- ``induction_scores.{parquet,csv}``: model, layer, head, metric, mean, var, ci_low, ci_high,
  n_seeds (model-level rows such as ``loss_repeat_1`` have an empty layer and head);
- ``induction_per_seed.{parquet,csv}`` and ``repeated_loss.{parquet,csv}``: the raw values;
- ``induction_metadata.json``: model record, protocol, seeds, package versions, device, wall time;
- ``figures/``: heatmaps, the prefix-matching vs copying scatter and the loss curve (HTML + PNG).

Per-seed values are cached under ``cache/`` keyed by everything that changes them, and written
after every chunk of seeds, so a second run reuses them and an interrupted run resumes.

>>> from interp.induction.job import InductionConfig, run_induction      # doctest: +SKIP
>>> result = run_induction("smollm2-135m", "results/smollm2-135m", InductionConfig(num_seeds=4))  # doctest: +SKIP
>>> result.top_heads("prefix_matching", 3)                           # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from interp.errors import InterpError, check_choice
from interp.output.figures import layer_head_heatmap, save_figure, scatter_with_labels
from interp.store import read_json, read_table, read_table_if_present, run_metadata, write_json, write_table
from interp.induction.scores import COPYING_SOURCES, COPYING_VARIANTS, METRICS, score_heads
from interp.induction.sequences import PROTOCOLS, SequenceConfig
from interp.stats import summarise_seeds

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from interp.models.loading import ModelRecord

__all__ = ["CPU_DEFAULT_SEEDS", "GPU_DEFAULT_SEEDS", "InductionConfig", "InductionResult", "induction_figures", "run_induction"]

GPU_DEFAULT_SEEDS = 100  # the paper's seeds 0..99 (L = 25..223)
CPU_DEFAULT_SEEDS = 20  # L = 25..63: the main job fits in a few minutes on a 2-core CPU
SEEDS_PER_CHUNK = 5  # results are saved after every chunk, so an interruption loses little


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

    def __post_init__(self) -> None:
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_choice("copying variant", self.copying_variant, COPYING_VARIANTS)
        check_choice("copying source", self.copying_source, COPYING_SOURCES)
        for metric in self.metrics:
            check_choice("metric", metric, METRICS)
        if self.num_seeds is not None and (not isinstance(self.num_seeds, int) or self.num_seeds < 1):
            raise InterpError(f"seeds must be a positive integer, got {self.num_seeds!r}")
        if self.max_batch_tokens < 1:
            raise InterpError(f"max_batch_tokens must be positive, got {self.max_batch_tokens!r}")

    def sequences(self, device: str) -> SequenceConfig:
        seeds = self.num_seeds or (GPU_DEFAULT_SEEDS if device.startswith("cuda") else CPU_DEFAULT_SEEDS)
        return SequenceConfig(protocol=self.protocol, num_seeds=seeds, exclude_ratio=self.exclude_ratio)


@dataclass
class InductionResult:
    scores: pd.DataFrame  # the tidy summary table
    per_seed: pd.DataFrame
    loss: pd.DataFrame
    metadata: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)

    def top_heads(self, metric: str = "prefix_matching", count: int = 5) -> pd.DataFrame:
        check_choice("metric", metric, sorted(self.scores["metric"].unique()))
        rows = self.scores[self.scores["metric"] == metric]
        return rows.nlargest(count, "mean")[["layer", "head", "mean", "ci_low", "ci_high"]].reset_index(drop=True)


def _cache_key(record: "ModelRecord", config: InductionConfig, sequences: SequenceConfig) -> str:
    identity = {
        "model": [record.name, record.source, record.dtype],
        "protocol": [sequences.protocol, sequences.exclude_ratio, sequences.repeats, sequences.base_length],
        "copying": [config.copying_variant, config.copying_source],
        "metrics": sorted(config.metrics),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def _with_loss_summary(scores: pd.DataFrame, loss: pd.DataFrame) -> pd.DataFrame:
    """Append model-level rows: mean loss on repeat 1 and on repeats 2..4, over seeds."""
    by_seed = loss.assign(block=lambda frame: frame["repeat"].gt(1).map({False: "loss_repeat_1", True: "loss_repeats_2_4"}))
    per_seed = by_seed.groupby(["seed", "block"], as_index=False)["loss"].mean()
    per_seed = per_seed.rename(columns={"block": "metric", "loss": "value"}).assign(layer=-1, head=-1)
    summary = summarise_seeds(per_seed)
    summary[["layer", "head"]] = pd.NA
    combined = pd.concat([scores, summary], ignore_index=True)
    combined[["layer", "head"]] = combined[["layer", "head"]].astype("Int64")
    return combined


def induction_figures(results: Path, formats: tuple[str, ...] = ("html", "png")) -> dict[str, list[Path]]:
    """(Re)draw every induction figure of a results folder from its saved tables."""
    results = Path(results)
    scores = read_table(results / "induction_scores")
    model = str(scores["model"].iloc[0])
    heads = scores.dropna(subset=["layer", "head"]).astype({"layer": int, "head": int})
    folder = results / "figures"
    written: dict[str, list[Path]] = {}
    names = {"prefix_matching": "prefix matching", "copying": "copying"}
    for metric, label in names.items():
        rows = heads[heads["metric"] == metric]
        if rows.empty:
            continue
        for statistic in ("mean", "var"):
            figure = layer_head_heatmap(rows, statistic, f"{model}: {label} score ({statistic} over seeds)",
                                        colorbar_title=f"{statistic}")
            written[f"{metric}_{statistic}"] = save_figure(figure, folder / f"{metric}_{statistic}", formats)
    wide = heads.pivot_table(index=["layer", "head"], columns="metric", values="mean").reset_index()
    if {"prefix_matching", "copying"} <= set(wide.columns):
        figure = scatter_with_labels(wide, "prefix_matching", "copying", f"{model}: prefix matching vs copying")
        written["prefix_vs_copying"] = save_figure(figure, folder / "prefix_vs_copying", formats)
    loss_path = results / "repeated_loss.parquet"
    if loss_path.exists():
        from interp.output.figures import repeated_loss_figure

        written["repeated_loss"] = save_figure(repeated_loss_figure(pd.read_parquet(loss_path), model), folder / "repeated_loss", formats)
    return written


def _resolve_model(model, device, dtype, device_map):
    if isinstance(model, tuple):
        return model
    from interp.models.loading import load_model

    return load_model(model, device=device, dtype=dtype, device_map=device_map)


def run_induction(
    model: "str | tuple[TransformerBridge, ModelRecord]",
    out: Path,
    config: InductionConfig | None = None,
    *,
    device: str = "auto",
    dtype: str = "float32",
    device_map: str | None = None,
    figures: bool = True,
    progress: bool = True,
    echo=print,
) -> InductionResult:
    """Compute, save and summarise the induction scores of ``model`` into ``out``."""
    config = config or InductionConfig()
    started = time.perf_counter()
    bridge, record = _resolve_model(model, device, dtype, device_map)
    sequences = config.sequences(record.device)
    out = Path(out)
    key = _cache_key(record, config, sequences)
    per_seed_path, loss_path = out / "cache" / f"per_seed-{key}.parquet", out / "cache" / f"loss-{key}.parquet"
    per_seed, loss = read_table_if_present(per_seed_path.with_suffix("")), read_table_if_present(loss_path.with_suffix(""))
    done = set() if per_seed is None else set(per_seed["seed"].unique()) & set(loss["seed"].unique())
    todo = [seed for seed in sequences.seeds() if seed not in done]
    if done:
        echo(f"reusing {len(set(sequences.seeds()) & done)} cached seeds from {per_seed_path.parent}")
    if record.device == "cpu" and config.num_seeds is None:
        echo(f"CPU run: {sequences.num_seeds} seeds by default (the paper's 100 are the GPU default; use --seeds 100)")

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"{record.name}: scoring heads", unit="seed")
    for start in range(0, len(todo), SEEDS_PER_CHUNK):
        chunk = todo[start:start + SEEDS_PER_CHUNK]
        metrics = [metric for metric in config.metrics if metric != "ov_copying"]
        table, chunk_loss = score_heads(
            bridge, sequences, metrics, copying_variant=config.copying_variant,
            copying_source=config.copying_source, seeds=chunk, max_batch_tokens=config.max_batch_tokens, loss=True,
        )
        per_seed = table if per_seed is None else pd.concat([per_seed, table], ignore_index=True)
        loss = chunk_loss if loss is None else pd.concat([loss, chunk_loss], ignore_index=True)
        write_table(per_seed, per_seed_path.with_suffix(""), csv=False)
        write_table(loss, loss_path.with_suffix(""), csv=False)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()

    wanted = set(sequences.seeds())
    per_seed = per_seed[per_seed["seed"].isin(wanted)]
    loss = loss[loss["seed"].isin(wanted)].sort_values(["seed", "position"]).reset_index(drop=True)
    if "ov_copying" in config.metrics:
        per_seed = pd.concat([per_seed, score_heads(bridge, sequences, ("ov_copying",))], ignore_index=True)
    scores = _with_loss_summary(summarise_seeds(per_seed), loss)
    scores.insert(0, "model", record.name)

    metadata = run_metadata(
        record,
        job="induction",
        protocol=sequences.to_dict(),
        seeds=sequences.seeds(),
        config=asdict(config),
        token_ranking=_token_ranking(bridge, sequences),
        device=record.device,
        wall_time_s=round(time.perf_counter() - started, 2),
        cache_key=key,
        reused_seeds=sorted(int(seed) for seed in done & wanted),
    )
    write_table(per_seed, out / "induction_per_seed")
    write_table(loss, out / "repeated_loss")
    write_table(scores, out / "induction_scores")
    write_json(metadata, out / "induction_metadata.json")
    result = InductionResult(scores, per_seed, loss, metadata)
    if figures:
        result.figures = induction_figures(out)
    echo(_summary(result, out))
    return result


def _token_ranking(bridge, sequences: SequenceConfig) -> str:
    from interp.induction.sequences import token_pool

    pool, method = token_pool(bridge.tokenizer, sequences.exclude_ratio)
    return f"{method}; {len(pool)} tokens in the pool"


def _summary(result: InductionResult, out: Path) -> str:
    lines = [f"wrote {out}/induction_scores.parquet (+ .csv), induction_metadata.json, figures/"]
    for metric in ("prefix_matching", "copying"):
        if metric in set(result.scores["metric"]):
            top = result.top_heads(metric, 5)
            heads = ", ".join(f"L{row.layer}H{row.head} {row.mean:.3f}" for row in top.itertuples())
            lines.append(f"top {metric.replace('_', ' ')} heads: {heads}")
    losses = result.scores.set_index("metric")["mean"]
    if {"loss_repeat_1", "loss_repeats_2_4"} <= set(losses.index):
        lines.append(f"loss on repeat 1: {losses['loss_repeat_1']:.2f} nats; on repeats 2-4: {losses['loss_repeats_2_4']:.2f}")
    lines.append(f"wall time {result.metadata['wall_time_s']:.1f} s on {result.metadata['device']}")
    return "\n".join(lines)


def load_induction(results: Path) -> InductionResult:
    """Read a results folder written by :func:`run_induction` back into an :class:`InductionResult`."""
    results = Path(results)
    return InductionResult(
        scores=read_table(results / "induction_scores"),
        per_seed=read_table(results / "induction_per_seed"),
        loss=read_table(results / "repeated_loss"),
        metadata=read_json(results / "induction_metadata.json"),
    )
