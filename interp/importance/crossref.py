"""Cross-reference task importance with induction scores (Bansal et al. 2023, section 5).

Reads two tables from one results folder: ``importance`` (from ``interp importance``) and
``induction_scores`` (from ``interp induction``: columns model, layer, head, metric, mean, ...).
For every estimator in the importance table (``estimator``: gradient over ``all`` tokens or over
the ``answer`` positions, ``exact`` for ablation; and the BOS policy ``prepend_bos``) and every
(task, shots) it reports

- the Spearman correlation of head importance with prefix matching and with copying, its
  p-value and its Benjamini-Hochberg q-value (one family per estimator and table);
- the overlap of the top-k important heads with the top-k heads of each induction metric, with
  the exact hypergeometric p-value (a uniformly random k-set of heads) and its q-value, and the
  heads that are in both;
- where the important heads and FFNs sit: each layer's share of the total importance;
- the share of total prefix-matching / copying score kept as heads are removed in order of
  increasing task importance (Bansal's "retained induction capacity"; negative head scores are
  counted as 0 so that shares stay within [0, 1]).

Across (task, shots): the Spearman matrix of importance scores (scores are correlated, not
argsort permutations: see docs/methods.md) and an aggregate ranking, the mean of the raw scores.  When
two gradient estimators were run, ``crossref_estimators`` says how far their rankings agree; when the
table holds several importance measures (gradient, attribution patching, exact ablation: :data:`MEASURES`),
``crossref_methods`` does the same for every pair, on the (task, shots) both measured.

>>> import numpy as np
>>> round(overlap_p_value(np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0])), 3)
0.167
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from interp.errors import InterpError
from interp.stats import bh_qvalues, overlap_p_value

__all__ = [
    "CrossrefConfig",
    "ESTIMATOR_COLUMNS",
    "INDUCTION_METRICS",
    "MEASURES",
    "correlation_keys",
    "expected_top_k_overlap",
    "method_agreement",
    "overlap_p_value",
    "primary_rows",
    "retained_share",
    "run_crossref",
    "top_k_mask",
    "top_k_membership",
]

INDUCTION_METRICS = ("prefix_matching", "copying")
ESTIMATOR_COLUMNS = ("estimator", "prepend_bos")  # the choices that make two importance tables different measurements
CORRELATION_TEST = "spearman (t approximation)"  # scipy.stats.spearmanr's p-value
OVERLAP_TEST = "hypergeometric (exact)"
# (method, estimator or None for any, metric) -> (label, sign): sign turns each into "larger = the task needs
# the head more" (an accuracy change is negative when removing the head hurts; the others grow with harm)
MEASURES: dict[tuple[str, str | None, str], tuple[str, int]] = {
    ("gradient", "all", "gradient"): ("gradient, all tokens", 1),
    ("gradient", "answer", "gradient"): ("gradient, answer positions", 1),
    ("attribution", None, "attribution_mean_loss"): ("attribution patching, mean ablation, loss", 1),
    ("ablation", "exact", "zero_loss_delta"): ("exact zero ablation, loss", 1),
    ("ablation", "exact", "zero_accuracy_delta"): ("exact zero ablation, accuracy", -1),
    ("ablation", "exact", "mean_loss_delta"): ("exact mean ablation, loss", 1),
    ("ablation", "exact", "mean_accuracy_delta"): ("exact mean ablation, accuracy", -1),
}


@dataclass(frozen=True)
class CrossrefConfig:
    """Settings for the cross-reference."""

    importance_metric: str = "gradient"  # which importance rows rank the heads (e.g. zero_loss_delta)
    top_k: int = 10  # heads counted as "important" / "induction"
    removal_steps: int = 10  # fractions 0, 1/steps, ..., 1 of heads removed

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise InterpError(f"top_k must be positive, got {self.top_k}")
        if self.removal_steps < 1:
            raise InterpError(f"removal_steps must be positive, got {self.removal_steps}")


def primary_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of one estimator, for figures that show one: Bansal's (all tokens, BOS first) when present.

    >>> frame = pd.DataFrame({"estimator": ["answer", "all"], "prepend_bos": [True, True], "value": [1, 2]})
    >>> primary_rows(frame)["value"].tolist()
    [2]
    """
    if not set(ESTIMATOR_COLUMNS) <= set(table.columns) or table.empty:
        return table
    choices = table[list(ESTIMATOR_COLUMNS)].drop_duplicates()
    ranked = choices.assign(
        order=(choices["estimator"] != "all").astype(int) + (~choices["prepend_bos"].astype(bool)).astype(int)
    )
    chosen = ranked.sort_values(["order", "estimator"]).iloc[0]
    keep = (table["estimator"] == chosen["estimator"]) & (table["prepend_bos"] == chosen["prepend_bos"])
    return table[keep].reset_index(drop=True)


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` largest scores (ties broken by position).

    >>> top_k_mask(np.array([0.1, 0.9, 0.5]), 2).tolist()
    [False, True, True]
    """
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def top_k_membership(scores: np.ndarray, k: int) -> np.ndarray:
    """Probability that each score is among the ``k`` largest when ties at the k-th place are broken at random.

    1 above the k-th value, 0 below it, and (places left) / (tied scores) on it: discrete measures
    (an accuracy change over 40 items moves in steps of 0.025) tie often, and a tie broken by head
    order would make an overlap depend on how heads are numbered.

    >>> top_k_membership(np.array([0.9, 0.5, 0.5, 0.5, 0.1]), 2).tolist()
    [1.0, 0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 0.0]
    """
    if k <= 0:
        return np.zeros(len(scores))
    threshold = np.sort(scores)[::-1][min(k, len(scores)) - 1]
    above, tied = scores > threshold, scores == threshold
    return above.astype(float) + tied * (min(k, len(scores)) - above.sum()) / tied.sum()


def expected_top_k_overlap(left: np.ndarray, right: np.ndarray, k: int) -> float:
    """Expected size of the intersection of the two top-k sets, ties at the k-th place broken at random
    (independently); the plain overlap when neither has such a tie.

    >>> expected_top_k_overlap(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]), 2)
    1.0
    >>> expected_top_k_overlap(np.array([1.0, 1.0, 1.0, 1.0]), np.array([4.0, 3.0, 2.0, 1.0]), 2)
    1.0
    """
    return float((top_k_membership(left, k) * top_k_membership(right, k)).sum())


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
    grid = table[table["metric"].isin(INDUCTION_METRICS)].pivot_table(
        index=["layer", "head"], columns="metric", values="mean", aggfunc="mean"
    )
    merged = heads.merge(grid.reset_index(), on=["layer", "head"], how="left")
    if merged[list(INDUCTION_METRICS)].isna().any().any():
        raise InterpError("induction_scores and importance cover different heads; were they made with the same model?")
    return merged


def _with_estimators(importance: pd.DataFrame) -> pd.DataFrame:
    """Fill the estimator columns of results made before they existed (gradient then always summed over all tokens)."""
    importance = importance.copy()
    if "estimator" not in importance.columns:
        gradient_like = importance["metric"].str.startswith(("gradient", "attribution"))
        importance["estimator"] = np.where(gradient_like, "all", "exact")
    if "prepend_bos" not in importance.columns:
        importance["prepend_bos"] = True  # the bridge's tokenizer has always put BOS first
    importance["prepend_bos"] = importance["prepend_bos"].astype(bool)
    return importance


def _head_tables(scores_by_column: dict, frame: pd.DataFrame, k: int, steps: int) -> dict[str, list]:
    """Correlations, overlaps, shared heads and retention curves of one estimator's (task, shots) columns."""
    n_heads = len(frame)
    out: dict[str, list] = {"correlations": [], "overlaps": [], "both": [], "retention": []}
    for (task, shots), scores in scores_by_column.items():
        important = top_k_mask(scores, k)
        for metric in INDUCTION_METRICS:
            induction = frame[metric].to_numpy()
            rho, p_value = stats.spearmanr(scores, induction)
            out["correlations"].append(
                {
                    "task": task,
                    "shots": shots,
                    "induction_metric": metric,
                    "spearman": rho,
                    "p_value": p_value,
                    "test": CORRELATION_TEST,
                }
            )
            induction_set = top_k_mask(induction, k)
            out["overlaps"].append(
                {
                    "task": task,
                    "shots": shots,
                    "induction_metric": metric,
                    "top_k": k,
                    "overlap": int((important & induction_set).sum()),
                    "expected": k * k / n_heads,
                    "p_value": overlap_p_value(important, induction_set),
                    "test": OVERLAP_TEST,
                }
            )
            for index in np.flatnonzero(important & induction_set):
                out["both"].append(
                    {
                        "task": task,
                        "shots": shots,
                        "induction_metric": metric,
                        "layer": int(frame["layer"][index]),
                        "head": int(frame["head"][index]),
                        "importance": float(scores[index]),
                        "induction": float(induction[index]),
                    }
                )
            curve = retained_share(scores, induction, steps)
            out["retention"].append(curve.assign(task=task, shots=shots, induction_metric=metric))
    return out


def _layer_rows(chosen: pd.DataFrame, k: int) -> list[dict]:
    rows = []
    for (task, shots), group in chosen.groupby(["task", "shots"]):
        for component, part in group.groupby("component"):
            per_layer = part.groupby("layer")["value"].sum()
            total = per_layer.abs().sum()
            top_layers = part.nlargest(k if component == "head" else max(1, len(part) // 5), "value")["layer"]
            for layer, value in per_layer.items():
                rows.append(
                    {
                        "task": task,
                        "shots": shots,
                        "component": component,
                        "layer": int(layer),
                        "share": float(abs(value) / total) if total > 0 else np.nan,
                        "mean_layer_of_top": float(top_layers.mean()),
                    }
                )
    return rows


def _estimator_agreement(grids: dict[tuple, pd.DataFrame], k: int) -> pd.DataFrame:
    """Per (task, shots) and on the aggregate: how alike two estimators' head rankings are (Spearman, top-k overlap)."""
    rows = []
    labels = list(grids)
    for first, second in [(a, b) for index, a in enumerate(labels) for b in labels[index + 1 :]]:
        shared = [column for column in grids[first].columns if column in grids[second].columns]
        pairs = [(column, grids[first][column].to_numpy(), grids[second][column].to_numpy()) for column in shared]
        if shared:
            pairs.append(
                (
                    ("aggregate", -1),
                    grids[first][shared].mean(axis=1).to_numpy(),
                    grids[second][shared].mean(axis=1).to_numpy(),
                )
            )
        for (task, shots), left, right in pairs:
            rows.append(
                {
                    "task": task,
                    "shots": shots,
                    "estimator_a": first[0],
                    "prepend_bos_a": first[1],
                    "estimator_b": second[0],
                    "prepend_bos_b": second[1],
                    "spearman": stats.spearmanr(left, right).statistic,
                    "top_k": k,
                    "top_k_overlap": expected_top_k_overlap(left, right, k),
                }
            )
    return pd.DataFrame(rows)


def method_agreement(importance: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Spearman and top-k overlap of every pair of :data:`MEASURES` per (task, shots) both measured.

    Head rows with BOS first only; each measure is oriented by its sign, so a top-k set is the k heads
    the measure says the task needs most.

    >>> rows = [{"method": "gradient", "estimator": "all", "metric": "gradient", "value": float(v)}
    ...         for v in range(4)] + [{"method": "ablation", "estimator": "exact", "metric": "zero_accuracy_delta",
    ...                                "value": -float(v) ** 2} for v in range(4)]
    >>> table = pd.DataFrame(rows).assign(task="t", shots=1, component="head", layer=0, head=[0, 1, 2, 3] * 2,
    ...                                   prepend_bos=True)
    >>> row = method_agreement(table, k=2).iloc[0]
    >>> row["measure_a"], row["measure_b"], float(row["spearman"]), int(row["top_k_overlap"])
    ('gradient, all tokens', 'exact zero ablation, accuracy', 1.0, 2)
    """
    heads = importance[(importance["component"] == "head") & importance["prepend_bos"].astype(bool)]
    grids = {}
    for (method, estimator, metric), (label, sign) in MEASURES.items():
        part = heads[(heads["method"] == method) & (heads["metric"] == metric)
                     & ((heads["estimator"] == estimator) if estimator is not None else True)]
        if not part.empty:
            grids[label] = sign * part.pivot_table(index=["layer", "head"], columns=["task", "shots"], values="value",
                                                   aggfunc="mean")
    rows = []
    labels = list(grids)
    for first, second in [(a, b) for index, a in enumerate(labels) for b in labels[index + 1:]]:
        for column in [column for column in grids[first].columns if column in grids[second].columns]:
            both = pd.concat([grids[first][column], grids[second][column]], axis=1).dropna()
            left, right = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
            top = min(k, len(both))
            rows.append({"task": column[0], "shots": column[1], "measure_a": first, "measure_b": second,
                         "n_heads": len(both), "spearman": stats.spearmanr(left, right).statistic, "top_k": top,
                         "top_k_overlap": expected_top_k_overlap(left, right, top),
                         "expected_overlap": top * top / len(both), "estimator": "Spearman over heads (NaN when a "
                         "measure is constant); top-k overlap, ties at the k-th place broken at random (its "
                         "expectation), beside the chance value k^2/n"})
    return pd.DataFrame(rows)


def _grids(chosen: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """(estimator, prepend_bos) -> (layer, head) x (task, shots) grid of head importance."""
    grids = {}
    for (estimator, bos), part in chosen[chosen["component"] == "head"].groupby(list(ESTIMATOR_COLUMNS)):
        grid = part.pivot_table(index=["layer", "head"], columns=["task", "shots"], values="value", aggfunc="mean")
        if grid.isna().any().any():
            raise InterpError("importance results cover different heads across tasks; were they made with one model?")
        grids[(estimator, bool(bos))] = grid
    if not grids:
        raise InterpError("the importance table has no head rows to cross-reference")
    return grids


def _tag(table: pd.DataFrame, estimator: str, bos: bool) -> pd.DataFrame:
    return table.assign(estimator=estimator, prepend_bos=bos)


def _with_q_values(table: pd.DataFrame) -> pd.DataFrame:
    """BH q-values beside the p-values: one family per estimator (every (task, shots, metric) row and the aggregate)."""
    table = table.copy()
    table["q_value"] = np.nan
    for _, index in table.groupby(list(ESTIMATOR_COLUMNS)).groups.items():
        table.loc[index, "q_value"] = bh_qvalues(table.loc[index, "p_value"].to_numpy())
    return table


_PART_NAMES = ("correlations", "overlaps", "both", "retention", "layers", "aggregate")


def _chosen_importance(importance: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The importance rows of ``metric``; an error naming the metrics there if none."""
    chosen = importance[importance["metric"] == metric]
    if chosen.empty:
        metrics = ", ".join(sorted(importance["metric"].unique()))
        raise InterpError(f"no importance rows with metric {metric!r}; choose one of: {metrics}")
    return chosen


def _estimator_parts(folder: Path, chosen: pd.DataFrame, head_grid: pd.DataFrame, estimator: str, bos: bool,
                     config: CrossrefConfig) -> tuple[dict[str, pd.DataFrame], int]:
    """One (estimator, BOS) grid's part of each crossref table, tagged with both; and its number of heads."""
    frame = _induction_grid(folder, head_grid.index.to_frame(index=False))
    k = min(config.top_k, len(frame))
    aggregate = head_grid.mean(axis=1).to_numpy()  # mean of raw scores over (task, shots)
    columns = {column: head_grid[column].to_numpy() for column in head_grid.columns} | {
        ("aggregate", -1): aggregate
    }
    found = _head_tables(columns, frame, k, config.removal_steps)
    subset = chosen[(chosen["estimator"] == estimator) & (chosen["prepend_bos"] == bos)]
    table = frame[["layer", "head"]].assign(
        aggregate_importance=aggregate, prefix_matching=frame["prefix_matching"], copying=frame["copying"]
    )
    table["rank"] = table["aggregate_importance"].rank(ascending=False, method="first").astype(int)
    parts = {
        "correlations": pd.DataFrame(found["correlations"]),
        "overlaps": pd.DataFrame(found["overlaps"]),
        "both": pd.DataFrame(
            found["both"], columns=["task", "shots", "induction_metric", "layer", "head", "importance", "induction"]
        ),
        "retention": pd.concat(found["retention"], ignore_index=True)[
            ["task", "shots", "induction_metric", "fraction_removed", "heads_removed", "retained"]
        ],
        "layers": pd.DataFrame(_layer_rows(subset, k)),
        "aggregate": table.sort_values("rank"),
    }
    return {name: _tag(part, estimator, bos) for name, part in parts.items()}, len(frame)


def _crossref_tables(parts: dict[str, list[pd.DataFrame]],
                     rank_columns: dict[str, pd.Series]) -> dict[str, pd.DataFrame]:
    """The crossref_* tables from every grid's parts (q-values over all of them) and the rank columns."""
    rank_matrix = pd.DataFrame(rank_columns).corr(method="spearman")
    return {
        "crossref_correlations": _with_q_values(pd.concat(parts["correlations"], ignore_index=True)),
        "crossref_overlap": _with_q_values(pd.concat(parts["overlaps"], ignore_index=True)),
        "crossref_both_heads": pd.concat(parts["both"], ignore_index=True),
        "crossref_retention": pd.concat(parts["retention"], ignore_index=True),
        "crossref_layers": pd.concat(parts["layers"], ignore_index=True),
        "crossref_rank_matrix": rank_matrix.reset_index(names="key"),
        "crossref_aggregate": pd.concat(parts["aggregate"], ignore_index=True),
    }


def _write_crossref(folder: Path, tables: dict[str, pd.DataFrame], config: CrossrefConfig,
                    grids: dict[tuple[str, bool], pd.DataFrame], chosen: pd.DataFrame) -> None:
    """Each table into ``folder``, and crossref.json with the run's metadata."""
    from interp.store import run_metadata, write_json, write_table

    for name, table in tables.items():
        write_table(table, folder / name)
    write_json(
        run_metadata(
            None,
            command="crossref",
            config=config.__dict__,
            estimators=[list(key) for key in grids],
            n_results=sum(len(grid.columns) for grid in grids.values()),
            ffn_rows=int((chosen["component"] == "ffn").sum()),
        ),
        folder / "crossref.json",
    )


def run_crossref(
    folder: Path, config: CrossrefConfig = CrossrefConfig(), figures: bool = True
) -> dict[str, pd.DataFrame]:
    """Write the crossref_* tables (and figures) into ``folder``; return them."""
    from interp.store import read_table

    folder = Path(folder)
    importance = _with_estimators(read_table(folder / "importance"))  # read once: the chosen metric and every measure
    chosen = _chosen_importance(importance, config.importance_metric)
    grids = _grids(chosen)
    several = len(grids) > 1
    parts: dict[str, list] = {name: [] for name in _PART_NAMES}
    rank_columns = {}
    n_heads = 0
    for (estimator, bos), head_grid in grids.items():
        grid_parts, n_heads = _estimator_parts(folder, chosen, head_grid, estimator, bos, config)
        for name, part in grid_parts.items():
            parts[name].append(part)
        suffix = f" [{estimator}{'' if bos else ', no BOS'}]" if several else ""
        rank_columns.update({f"{task}/{shots}{suffix}": head_grid[(task, shots)] for task, shots in head_grid.columns})
    tables = _crossref_tables(parts, rank_columns)
    if several:
        tables["crossref_estimators"] = _estimator_agreement(grids, min(config.top_k, n_heads))  # the last grid's heads
    methods = method_agreement(importance, config.top_k)
    if not methods.empty:
        tables["crossref_methods"] = methods
    _write_crossref(folder, tables, config, grids, chosen)
    if figures:
        _write_figures(folder, tables)
    return tables


def correlation_keys(correlations: pd.DataFrame) -> pd.Series:
    """Row labels of the correlation heatmap: task/shots, and the estimator when the table holds several."""
    keys = correlations["task"] + "/" + correlations["shots"].astype(str)
    if (
        set(ESTIMATOR_COLUMNS) <= set(correlations.columns)
        and len(correlations[list(ESTIMATOR_COLUMNS)].drop_duplicates()) > 1
    ):
        keys = keys + " [" + correlations["estimator"] + np.where(correlations["prepend_bos"], "", ", no BOS") + "]"
    return keys


def _write_figures(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """The crossref figures; those that show one ranking use :func:`primary_rows`."""
    from interp.output.figures import (
        correlation_heatmap,
        layer_head_heatmap,
        layer_share_figure,
        retention_figure,
        save_figures,
        scatter_with_labels,
    )

    out = folder / "figures"
    correlations = tables["crossref_correlations"]
    matrix = tables["crossref_rank_matrix"].melt(id_vars="key", var_name="other", value_name="spearman")
    aggregate = primary_rows(tables["crossref_aggregate"])
    figures = {
        "crossref_correlations": correlation_heatmap(
            correlations.assign(key=correlation_keys(correlations)),
            row="key",
            column="induction_metric",
            value="spearman",
            title="Spearman: head importance vs induction scores",
        ),
        "crossref_rank_matrix": correlation_heatmap(
            matrix, row="key", column="other", value="spearman", title="Spearman between importance rankings"
        ),
        "crossref_retention": retention_figure(
            primary_rows(tables["crossref_retention"]), title="Induction score kept as heads are removed"
        ),
        "crossref_layers": layer_share_figure(
            primary_rows(tables["crossref_layers"]), title="Share of importance by layer"
        ),
        "crossref_aggregate_heatmap": layer_head_heatmap(
            aggregate, "aggregate_importance", title="Aggregate task importance (mean over tasks and shots)"
        ),
        "crossref_aggregate_vs_prefix": scatter_with_labels(
            aggregate,
            "prefix_matching",
            "aggregate_importance",
            title="Aggregate task importance vs prefix matching",
            rank_by="aggregate_importance",
        ),
    }
    save_figures({out / name: figure for name, figure in figures.items()}, ("html", "png"))  # one browser for all
