"""Cross-reference task importance with induction scores (Bansal et al. 2023, section 5).

Reads two tables from one results folder: ``importance`` (from ``interp importance``) and
``induction_scores`` (from ``interp induction``: columns model, layer, head, metric, mean, ...).
For every (task, shots) it reports

- the Spearman correlation of head importance with prefix matching and with copying;
- the overlap of the top-k important heads with the top-k heads of each induction metric, with
  a permutation-test p-value (random k-sets of heads), and the heads that are in both;
- where the important heads and FFNs sit: each layer's share of the total importance;
- the share of total prefix-matching / copying score kept as heads are removed in order of
  increasing task importance (Bansal's "retained induction capacity"; negative head scores are
  counted as 0 so that shares stay within [0, 1]).

Across (task, shots): the Spearman matrix of importance scores (scores are correlated, not
argsort permutations: see docs/methods.md) and an aggregate ranking, the mean of the raw scores.

>>> import numpy as np
>>> overlap_p_value(np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0]), n_permutations=2000, seed=0) < 0.3
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from interp.errors import InterpError

__all__ = ["CrossrefConfig", "INDUCTION_METRICS", "overlap_p_value", "retained_share", "run_crossref", "top_k_mask"]

INDUCTION_METRICS = ("prefix_matching", "copying")


@dataclass(frozen=True)
class CrossrefConfig:
    """Settings for the cross-reference."""

    importance_metric: str = "gradient"  # which importance rows rank the heads (e.g. zero_loss_delta)
    top_k: int = 10  # heads counted as "important" / "induction"
    n_permutations: int = 10000  # for the overlap p-value
    seed: int = 0  # permutation test
    removal_steps: int = 10  # fractions 0, 1/steps, ..., 1 of heads removed

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise InterpError(f"top_k must be positive, got {self.top_k}")
        if self.n_permutations < 100:
            raise InterpError(f"n_permutations must be at least 100, got {self.n_permutations}")
        if self.removal_steps < 1:
            raise InterpError(f"removal_steps must be positive, got {self.removal_steps}")


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` largest scores (ties broken by position).

    >>> top_k_mask(np.array([0.1, 0.9, 0.5]), 2).tolist()
    [False, True, True]
    """
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def overlap_p_value(important: np.ndarray, induction: np.ndarray, n_permutations: int = 10000, seed: int = 0) -> float:
    """P(random k-set of heads overlaps the induction set at least as much as ``important`` does)."""
    important, induction = important.astype(bool), induction.astype(bool)
    observed = int((important & induction).sum())
    rng = np.random.default_rng(seed)
    keys = rng.random((n_permutations, len(important)))
    random_sets = np.argsort(keys, axis=1)[:, : int(important.sum())]  # (permutation, k) uniform k-subsets
    overlaps = induction[random_sets].sum(axis=1)
    return float((1 + (overlaps >= observed).sum()) / (1 + n_permutations))


def retained_share(importance: np.ndarray, induction: np.ndarray, steps: int = 10) -> pd.DataFrame:
    """Share of the (positive part of the) induction score kept as the least important heads go first.

    >>> retained_share(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0]), steps=2)["retained"].tolist()
    [1.0, 1.0, 0.0]
    """
    positive = np.clip(induction, 0.0, None)
    total = positive.sum()
    order = np.argsort(importance, kind="stable")  # least important first
    removed_cumulative = np.concatenate([[0.0], np.cumsum(positive[order])])
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * len(importance)).astype(int)
    retained = 1.0 - removed_cumulative[counts] / total if total > 0 else np.full(len(counts), np.nan)
    return pd.DataFrame({"fraction_removed": fractions, "heads_removed": counts, "retained": retained})


def _induction_grid(folder: Path, heads: pd.DataFrame) -> pd.DataFrame:
    from interp.store import read_table

    table = read_table(folder / "induction_scores")
    missing = {"layer", "head", "metric", "mean"} - set(table.columns)
    if missing:
        raise InterpError(f"{folder / 'induction_scores'} lacks columns {sorted(missing)}; rerun `interp induction`")
    absent = [metric for metric in INDUCTION_METRICS if metric not in set(table["metric"])]
    if absent:
        raise InterpError(f"{folder / 'induction_scores'} has no {absent[0]!r} rows; rerun `interp induction`")
    grid = table[table["metric"].isin(INDUCTION_METRICS)].pivot_table(index=["layer", "head"], columns="metric",
                                                                      values="mean", aggfunc="mean")
    merged = heads.merge(grid.reset_index(), on=["layer", "head"], how="left")
    if merged[list(INDUCTION_METRICS)].isna().any().any():
        raise InterpError("induction_scores and importance cover different heads; were they made with the same model?")
    return merged


def run_crossref(folder: Path, config: CrossrefConfig = CrossrefConfig(), figures: bool = True) -> dict[str, pd.DataFrame]:
    """Write the crossref_* tables (and figures) into ``folder``; return them."""
    from interp.store import read_table, run_metadata, write_json, write_table

    folder = Path(folder)
    importance = read_table(folder / "importance")
    chosen = importance[importance["metric"] == config.importance_metric]
    if chosen.empty:
        metrics = ", ".join(sorted(importance["metric"].unique()))
        raise InterpError(f"no importance rows with metric {config.importance_metric!r}; choose one of: {metrics}")
    keys = ["task", "shots"]
    heads = chosen[chosen["component"] == "head"]
    ffns = chosen[chosen["component"] == "ffn"]
    head_grid = heads.pivot_table(index=["layer", "head"], columns=keys, values="value", aggfunc="mean")
    if head_grid.isna().any().any():
        raise InterpError("importance results cover different heads across tasks; were they made with one model?")
    frame = _induction_grid(folder, head_grid.index.to_frame(index=False))
    n_heads = len(frame)
    k = min(config.top_k, n_heads)
    correlations, overlaps, both, retention, layers = [], [], [], [], []
    columns = list(head_grid.columns) + [("aggregate", -1)]
    aggregate = head_grid.mean(axis=1).to_numpy()  # mean of raw scores over (task, shots)
    for column in columns:
        task, shots = column
        scores = aggregate if task == "aggregate" else head_grid[column].to_numpy()
        important = top_k_mask(scores, k)
        for metric in INDUCTION_METRICS:
            induction = frame[metric].to_numpy()
            rho, p_value = stats.spearmanr(scores, induction)
            correlations.append({"task": task, "shots": shots, "induction_metric": metric, "spearman": rho, "p_value": p_value})
            induction_set = top_k_mask(induction, k)
            overlaps.append({"task": task, "shots": shots, "induction_metric": metric, "top_k": k,
                             "overlap": int((important & induction_set).sum()), "expected": k * k / n_heads,
                             "p_value": overlap_p_value(important, induction_set, config.n_permutations, config.seed)})
            for index in np.flatnonzero(important & induction_set):
                both.append({"task": task, "shots": shots, "induction_metric": metric, "layer": int(frame["layer"][index]),
                             "head": int(frame["head"][index]), "importance": float(scores[index]),
                             "induction": float(induction[index])})
            curve = retained_share(scores, induction, config.removal_steps)
            curve.insert(0, "induction_metric", metric)
            curve.insert(0, "shots", shots)
            curve.insert(0, "task", task)
            retention.append(curve)
    for (task, shots), group in chosen.groupby(keys):
        for component, part in group.groupby("component"):
            per_layer = part.groupby("layer")["value"].sum()
            total = per_layer.abs().sum()
            top_layers = part.nlargest(k if component == "head" else max(1, len(part) // 5), "value")["layer"]
            for layer, value in per_layer.items():
                layers.append({"task": task, "shots": shots, "component": component, "layer": int(layer),
                               "share": float(abs(value) / total) if total > 0 else np.nan,
                               "mean_layer_of_top": float(top_layers.mean())})
    rank_matrix = head_grid.corr(method="spearman")
    labels = [f"{task}/{shots}" for task, shots in rank_matrix.columns]
    rank_table = pd.DataFrame(rank_matrix.to_numpy(), index=labels, columns=labels).reset_index(names="key")
    aggregate_table = frame[["layer", "head"]].assign(aggregate_importance=aggregate, prefix_matching=frame["prefix_matching"],
                                                      copying=frame["copying"])
    aggregate_table["rank"] = aggregate_table["aggregate_importance"].rank(ascending=False, method="first").astype(int)
    tables = {
        "crossref_correlations": pd.DataFrame(correlations),
        "crossref_overlap": pd.DataFrame(overlaps),
        "crossref_both_heads": pd.DataFrame(both, columns=["task", "shots", "induction_metric", "layer", "head",
                                                           "importance", "induction"]),
        "crossref_retention": pd.concat(retention, ignore_index=True),
        "crossref_layers": pd.DataFrame(layers),
        "crossref_rank_matrix": rank_table,
        "crossref_aggregate": aggregate_table.sort_values("rank").reset_index(drop=True),
    }
    for name, table in tables.items():
        write_table(table, folder / name)
    write_json(run_metadata(None, command="crossref", config=config.__dict__, n_results=len(head_grid.columns),
                            ffn_rows=len(ffns)), folder / "crossref.json")
    if figures:
        _write_figures(folder, tables)
    return tables


def _write_figures(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    from interp.output.figures import (correlation_heatmap, layer_head_heatmap, layer_share_figure, retention_figure,
                                save_figure, scatter_with_labels)

    out = folder / "figures"
    correlations = tables["crossref_correlations"]
    save_figure(correlation_heatmap(correlations.assign(key=correlations["task"] + "/" + correlations["shots"].astype(str)),
                                    row="key", column="induction_metric", value="spearman",
                                    title="Spearman: head importance vs induction scores"), out / "crossref_correlations")
    matrix = tables["crossref_rank_matrix"].melt(id_vars="key", var_name="other", value_name="spearman")
    save_figure(correlation_heatmap(matrix, row="key", column="other", value="spearman",
                                    title="Spearman between importance rankings"), out / "crossref_rank_matrix")
    save_figure(retention_figure(tables["crossref_retention"], title="Induction score kept as heads are removed"),
                out / "crossref_retention")
    save_figure(layer_share_figure(tables["crossref_layers"], title="Share of importance by layer"), out / "crossref_layers")
    save_figure(layer_head_heatmap(tables["crossref_aggregate"], "aggregate_importance",
                                   title="Aggregate task importance (mean over tasks and shots)"), out / "crossref_aggregate_heatmap")
    save_figure(scatter_with_labels(tables["crossref_aggregate"], "prefix_matching", "aggregate_importance",
                                    title="Aggregate task importance vs prefix matching", rank_by="aggregate_importance"),
                out / "crossref_aggregate_vs_prefix")
