"""Every figure of a results folder, rebuilt from its saved tables.

One function per kind of result, each returning ``[(section, name, figure, caption)]`` and an
empty list when its tables are absent; :func:`collect_figures` gathers them all and
:func:`regenerate_figures` writes each as HTML, PNG and PDF into ``RESULTS/figures/``.
Tables are discovered by name:

- induction: ``induction_scores``, ``repeated_loss``, ``attention_pattern_L*H*``;
- importance / cross-reference: ``crossref_*`` (from ``interp crossref``), ``task_accuracy``;
- pruning: any table whose name starts with one of ``PRUNING_PREFIXES`` (``pruning_heads``,
  ``pruning_ffns``, ``laser*``, ...), drawn as curves (mean over tasks) when it has a recognised
  x and y column;
- dynamics: ``head_scores`` + ``summary`` in the folder or in ``dynamics/``;
- causal test: ``causal_vs_random`` and ``causal_repeated`` (``interp ablate``); the rows of abstract
  pattern and SUL tasks are also drawn task by task, from the folder's own table and from any
  ``causal_vs_random`` in a subfolder (say ``crosbie/``).

>>> from pathlib import Path
>>> collect_figures(Path("no/such/folder"))
[]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from interp.errors import InterpError

__all__ = ["FigureEntry", "PATTERN_RANKING", "PRUNING_PREFIXES", "causal_entries", "collect_figures",
           "comparison_figure", "curve_columns", "dynamics_entries", "induction_entries", "known_pruning_figures",
           "nearest_percent", "pattern_task_rows", "pruning_tables", "regenerate_figures", "zero_ablation_caveat"]

# names of pruning sweeps
PRUNING_PREFIXES = ("pruning", "layer_pruning", "layer_distances", "layer_drop", "angular", "laser")
_X_COLUMNS = ("head_percent", "ffn_percent", "percent", "fraction_pruned", "fraction_removed", "pruned_fraction",
              "fraction",
              "n_layers_dropped", "layers_dropped", "n_dropped", "block_size", "n", "rho", "rank_fraction")
_Y_COLUMNS = ("accuracy", "accuracy_norm", "relative_accuracy", "score", "loss", "retained", "value")
_GROUP_COLUMNS = ("component", "ranking", "method", "order", "matrix", "shots", "metric")  # tasks are averaged
_MAX_LINES = 24  # more lines than this are unreadable: trailing group columns are dropped
# Crosbie & Shutova rank heads by prefix matching alone; the pattern-task view shows that ranking
PATTERN_RANKING = "prefix_matching"


@dataclass(frozen=True)
class FigureEntry:
    section: str  # report section: induction, importance, pruning, dynamics, causal, abstract
    name: str  # file stem under figures/
    figure: go.Figure
    caption: str


def _table(folder: Path, name: str) -> pd.DataFrame | None:
    from interp.store import read_table_if_present

    return read_table_if_present(folder / name)


def induction_entries(scores: pd.DataFrame, loss: pd.DataFrame | None = None) -> list[FigureEntry]:
    """The figures of ``induction_scores`` (heatmaps, scatter) and ``repeated_loss`` (loss curve); also drawn by the
    job."""
    from interp.output.figures import layer_head_heatmap, repeated_loss_figure, scatter_with_labels

    model = str(scores["model"].iloc[0])
    heads = scores.dropna(subset=["layer", "head"]).astype({"layer": int, "head": int})
    entries = []
    for metric in ("prefix_matching", "copying"):
        rows = heads[heads["metric"] == metric]
        label = metric.replace("_", " ")
        for statistic, words in (("mean", "mean over seeds"), ("var", "variance over seeds")):
            if not rows.empty:
                entries.append(FigureEntry("induction", f"{metric}_{statistic}",
                                           layer_head_heatmap(rows, statistic, f"{model}: {label} score ({words})",
                                                              colorbar_title=statistic),
                                           f"{label.capitalize()} score of every head, {words}; "
                                           "layer 0 at the bottom."))
    wide = heads.pivot_table(index=["layer", "head"], columns="metric", values="mean").reset_index()
    if {"prefix_matching", "copying"} <= set(wide.columns):
        entries.append(FigureEntry("induction", "prefix_vs_copying",
                                   scatter_with_labels(wide, "prefix_matching", "copying",
                                                       f"{model}: prefix matching vs copying"),
                                   "Each head's mean prefix-matching and copying scores; the top five by their sum are "
                                   "labelled."))
    if loss is not None:
        entries.append(FigureEntry("induction", "repeated_loss", repeated_loss_figure(loss, model),
                                   "Per-token loss on the repeated random sequences; dashed lines mark the repeats."))
    return entries


def _induction(folder: Path) -> list[FigureEntry]:
    from interp.output.figures import attention_pattern_figure

    scores = _table(folder, "induction_scores")
    if scores is None:
        return []
    model = str(scores["model"].iloc[0])
    entries = induction_entries(scores, _table(folder, "repeated_loss"))
    for path in sorted(folder.glob("attention_pattern_L*H*.parquet")):
        match = re.fullmatch(r"attention_pattern_L(\d+)H(\d+)", path.stem)
        if match is None:
            continue
        pattern = pd.read_parquet(path)
        period = int(pattern["period"].iloc[0]) if "period" in pattern.columns else None
        label = f"L{match.group(1)}H{match.group(2)}"
        entries.append(FigureEntry("induction", path.stem,
                                   attention_pattern_figure(pattern,
                                                            f"{model}: attention of {label} on a repeated random block",
                                                            period),
                                   f"Attention pattern of {label} on BOS + a random block repeated; an induction head "
                                   f"draws a stripe one block-length minus one below the diagonal."))
    return entries


def _importance(folder: Path) -> list[FigureEntry]:
    from interp.importance.crossref import correlation_keys, primary_rows
    from interp.output.figures import (
        correlation_heatmap,
        layer_head_heatmap,
        layer_share_figure,
        retention_figure,
        scatter_with_labels,
    )

    entries = []
    correlations = _table(folder, "crossref_correlations")
    if correlations is not None:
        keyed = correlations.assign(key=correlation_keys(correlations))  # estimator in the label when there are several
        entries.append(FigureEntry("importance", "crossref_correlations",
                                   correlation_heatmap(keyed, row="key", column="induction_metric", value="spearman",
                                                       title="Spearman: head importance vs induction scores"),
                                   "Rank correlation of each task's head importance with each induction score."))
    matrix = _table(folder, "crossref_rank_matrix")
    if matrix is not None:
        long = matrix.melt(id_vars="key", var_name="other", value_name="spearman")
        entries.append(FigureEntry("importance", "crossref_rank_matrix",
                                   correlation_heatmap(long, row="key", column="other", value="spearman",
                                                       title="Spearman between importance rankings"),
                                   "How alike the head-importance rankings of different tasks and shot counts are."))
    retention = _table(folder, "crossref_retention")
    retention = None if retention is None else primary_rows(retention)  # one ranking per figure: Bansal's when there
    if retention is not None:
        entries.append(FigureEntry("importance", "crossref_retention",
                                   retention_figure(retention, title="Induction score kept as heads are removed"),
                                   "Share of the total induction score kept as heads are removed, least important "
                                   "first."))
    layers = _table(folder, "crossref_layers")
    layers = None if layers is None else primary_rows(layers)
    if layers is not None:
        entries.append(FigureEntry("importance", "crossref_layers",
                                   layer_share_figure(layers, title="Share of importance by layer"),
                                   "Each layer's share of the total task importance of heads and FFNs."))
    aggregate = _table(folder, "crossref_aggregate")
    aggregate = None if aggregate is None else primary_rows(aggregate)
    if aggregate is not None:
        entries.append(FigureEntry("importance", "crossref_aggregate_heatmap",
                                   layer_head_heatmap(aggregate, "aggregate_importance",
                                                      title="Aggregate task importance (mean over tasks and shots)"),
                                   "Mean task importance of every head over tasks and shots."))
        entries.append(FigureEntry("importance", "crossref_aggregate_vs_prefix",
                                   scatter_with_labels(aggregate, "prefix_matching", "aggregate_importance",
                                                       title="Aggregate task importance vs prefix matching",
                                                       rank_by="aggregate_importance"),
                                   "Task importance against prefix matching; the five most important heads are "
                                   "labelled."))
    return entries


def nearest_percent(table: pd.DataFrame, wanted: float | int) -> float:
    """The ``percent`` of a causal-test table closest to ``wanted`` (the table's own grid decides what exists).

    >>> nearest_percent(pd.DataFrame({"percent": [1.0, 5.0, 20.0]}), 10)
    5.0
    """
    return float(min(table["percent"].unique(), key=lambda value: abs(value - wanted)))


def pruning_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every pruning, layer-pruning or LASER table in ``folder`` (by name), read."""
    from interp.store import read_table

    folder = Path(folder)
    names = sorted({path.stem for pattern in ("*.parquet", "*.csv") for path in folder.glob(pattern)
                    if path.stem.startswith(PRUNING_PREFIXES)})
    return {name: read_table(folder / name) for name in names}


def curve_columns(table: pd.DataFrame) -> tuple[str, str, list[str]] | None:
    """The (x, y, group columns) a sweep table is drawn with, or None when unrecognised."""
    candidates = [column for column in _X_COLUMNS if column in table.columns
                  and pd.api.types.is_numeric_dtype(table[column])]
    # e.g. a heads sweep also carries ffn_percent = 0: the swept column is the one that varies most
    x = max(candidates, key=lambda column: table[column].nunique(), default=None)
    y = next((column for column in _Y_COLUMNS if column in table.columns and column != x
              and pd.api.types.is_numeric_dtype(table[column])), None)
    if x is None or y is None:
        return None
    group = [column for column in _GROUP_COLUMNS if column in table.columns and column not in (x, y)
             and table[column].nunique() > 1]
    while group and len(table.drop_duplicates(group)) > _MAX_LINES:
        group.pop()
    return x, y, group


def _study_figures(name: str, table: pd.DataFrame, column: str, noun: str) -> list[FigureEntry]:
    """Per shot count: each task's curve (own ranking), cross-task transfer, and induction vs importance vs random."""
    from interp.output.figures import pruning_curves_figure, pruning_rankings_figure

    entries = []
    for shots, part in table.groupby("shots"):
        own = part[part["ranking"] == "own"]
        if not own.empty:
            entries.append(FigureEntry("pruning", f"{name}_{shots}shot_tasks",
                                       pruning_curves_figure(own, column,
                                                             f"Accuracy vs % {noun} pruned (own importance), "
                                                             f"{shots}-shot"),
                                       f"Accuracy of each task as {noun} are pruned, least important first; bold: "
                                       "the task average."))
        transfer = part[part["ranking"].isin(["own", "aggregate", "most_correlated", "least_correlated"])
                        | part["ranking"].str.startswith("task:")]
        if transfer["ranking"].nunique() > 1:
            entries.append(FigureEntry("pruning", f"{name}_{shots}shot_transfer",
                                       pruning_rankings_figure(transfer, column,
                                                               f"Cross-task transfer: % {noun} pruned, {shots}-shot"),
                                       f"Task-average accuracy as {noun} are pruned by the task's own ranking, the "
                                       "mean ranking over tasks, or the ranking of the most / least correlated other "
                                       "task."))
        versus = part[part["ranking"].isin(["own", "prefix_matching",
                                            "copying"]) | part["ranking"].str.startswith("random")]
        if versus["ranking"].nunique() > 1:
            entries.append(FigureEntry("pruning", f"{name}_{shots}shot_rankings",
                                       pruning_rankings_figure(versus, column,
                                                               f"Induction vs importance vs random: % {noun} "
                                                               f"pruned, {shots}-shot"),
                                       f"Task-average accuracy as {noun} are pruned in the order of each ranking; "
                                       "grey band: random seeds."))
    return entries


def known_pruning_figures(name: str, table: pd.DataFrame) -> list[FigureEntry] | None:
    """Figures of the tables ``interp prune`` writes (names and columns as in interp.pruning.components /
    prune_sweeps)."""
    from interp.output.figures import (
        angular_distance_figure,
        laser_heatmap_figure,
        layer_drop_figure,
        pruning_grid_figure,
    )

    study = {"pruning_heads": ("head_percent", "heads"), "pruning_ffns": ("ffn_percent", "FFNs")}.get(name)
    if study is not None and {"ranking", "task", "shots", "accuracy", study[0]} <= set(table.columns):
        column, noun = study
        return _study_figures(name, table, column, noun)
    if name == "pruning_combined" and {"head_percent", "ffn_percent", "accuracy"} <= set(table.columns):
        return [FigureEntry("pruning", f"{name}_grid",
                            pruning_grid_figure(table, "Accuracy with heads and FFNs pruned (mean over tasks)"),
                            "Mean accuracy over tasks and shots with heads and FFNs pruned together.")]
    if name.startswith("layer_distances") and {"layer", "n", "distance"} <= set(table.columns):
        return [FigureEntry("pruning", name, angular_distance_figure(table, f"Angular distance d(l, n) ({name})"),
                            "Angular distance between the residual stream before layer l and after l + n (Gromov et "
                            "al.).")]
    if name == "layer_pruning" and {"method", "n", "accuracy"} <= set(table.columns):
        return [FigureEntry("pruning", name,
                            layer_drop_figure(table,
                                              "Dropping blocks of layers: l* (angular distance) vs the deepest layers"),
                            "Accuracy (mean over tasks) and text loss as blocks of layers are dropped.")]
    if name == "laser" and {"layer", "matrix", "rho"} <= set(table.columns):
        reduced = table[table["layer"] >= 0]
        return [FigureEntry("pruning", f"laser_{matrix}",
                            laser_heatmap_figure(reduced, matrix, f"LASER on {matrix}: change in answer log-loss"),
                            f"Change in answer log-loss when {matrix} of one layer keeps a share rho of its rank; blue "
                            "= lower loss.")
                for matrix in sorted(reduced["matrix"].unique())]
    return None


def _pruning(folder: Path) -> list[FigureEntry]:
    from interp.output.figures import curve_figure

    entries = []
    for name, table in pruning_tables(folder).items():
        if name.endswith(("_thresholds", "_claims", "_rankings", "_selected", "_saved")):
            continue  # summaries: they go into the findings, not into figures
        known = known_pruning_figures(name, table)
        if known is not None:
            entries += known
            continue
        columns = curve_columns(table)
        if columns is None:
            continue
        x, y, group = columns
        entries.append(FigureEntry("pruning", name, curve_figure(table, x, y, name.replace("_", " "), group=group),
                                   f"{y.replace('_', ' ')} against {x.replace('_', ' ')} from table {name}."))
    return entries


def dynamics_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """``(head_scores, summary)`` of ``interp dynamics``, in ``folder`` or ``folder/dynamics``."""
    for place in (folder, folder / "dynamics"):
        heads, summary = _table(place, "head_scores"), _table(place, "summary")
        if heads is not None and summary is not None:
            return heads, summary
    return None


def dynamics_entries(head_scores: pd.DataFrame, summary: pd.DataFrame,
                     title: str = "Training dynamics") -> list[FigureEntry]:
    """The figure of ``interp dynamics``'s tables; also drawn by the job."""
    from interp.output.figures import dynamics_figure

    return [FigureEntry("dynamics", "dynamics", dynamics_figure(head_scores, summary, title),
                        "Head scores, loss on repeats and in-context-learning score at every checkpoint.")]


def _dynamics(folder: Path) -> list[FigureEntry]:
    tables = dynamics_tables(folder)
    return [] if tables is None else dynamics_entries(*tables)


def causal_entries(versus_random: pd.DataFrame | None, repeated: pd.DataFrame | None = None) -> list[FigureEntry]:
    """The causal test's figures (``interp ablate``): effect vs % of heads removed, rankings against random heads."""
    from interp.output.figures import causal_effect_figure

    entries = []
    if versus_random is not None and not versus_random.empty:
        pooled = versus_random[versus_random["task"] == "all"]
        tasks = versus_random.loc[versus_random["task"] != "all", "task"].nunique()
        for metric, label in (("accuracy", "accuracy change"), ("gold_logprob", "gold log-prob change (nats)")):
            part = pooled[pooled["metric"] == metric]
            if not part.empty:
                entries.append(FigureEntry(
                    "causal", f"causal_{metric}",
                                           causal_effect_figure(part, label,
                                                                f"Causal test: {label}, mean over {tasks} tasks"),
                    f"Change in {label.split(' change')[0]} when the top k% of heads by each ranking are removed "
                    "(bars: 95% "
                    "interval, paired over items, tasks weighted equally); grey: the same number of random heads, "
                    "min-max over draws, dotted their mean."))
    if repeated is not None and not repeated.empty:
        shared = repeated[(repeated["scope"] == "repeated") & (repeated["metric"] == "loss_repeats_later")
                          & (repeated["ranking"] != "random")]
        if not shared.empty:
            shared = shared.rename(columns={"ci_low": "change_ci_low", "ci_high": "change_ci_high"})
            entries.append(FigureEntry(
                "causal", "causal_repeated_loss",
                causal_effect_figure(shared, "loss change on repeats 2-4 (nats)",
                                     "Causal test: loss on repeated random tokens",
                                     facet_columns="metric"),
                "Change in the loss on repeats 2-4 of repeated random tokens (where induction heads act) as the top k% "
                "heads of each ranking are removed; grey: random heads."))
    return entries + _pattern_entries(versus_random)


def pattern_task_rows(versus_random: pd.DataFrame | None) -> pd.DataFrame:
    """The accuracy rows of abstract pattern and SUL tasks for the prefix-matching ranking (maybe empty)."""
    from interp.tasks.prompts import is_pattern_task

    if versus_random is None or versus_random.empty:
        return pd.DataFrame()
    return versus_random[versus_random["task"].map(is_pattern_task) & (versus_random["metric"] == "accuracy")
                         & (versus_random["ranking"] == PATTERN_RANKING)]


def zero_ablation_caveat(folder: Path) -> str | None:
    """A sentence for the zero-ablation rows of the causal test in ``folder`` when its model renormalises each
    attention block's output (``causal.json``'s model record), else None."""
    from interp.store import read_json_if_intact

    metadata = read_json_if_intact(Path(folder) / "causal.json") or {}
    model = metadata.get("model") if isinstance(metadata.get("model"), dict) else {}
    if not model.get("attention_output_norm"):
        return None
    return (f"{model.get('architecture', 'This model')} normalises each attention block's output, so zeroing some of "
            "a layer's heads scales up the layer's other heads instead of removing the zeroed ones: read its "
            "zero-ablation rows as that disruption, and the mean-ablation rows (which keep the scale) for the heads' "
            "absence.")


def _pattern_entries(versus_random: pd.DataFrame | None, name: str = "pattern_tasks_accuracy") -> list[FigureEntry]:
    from interp.output.figures import pattern_task_figure

    rows = pattern_task_rows(versus_random)
    if rows.empty:
        return []
    shots = ", ".join(f"{value}" for value in sorted(rows["shots"].unique()))
    return [FigureEntry(
        "abstract", name, pattern_task_figure(rows, f"Abstract patterns and unrelated labels ({shots}-shot): "
                                                    "accuracy change with heads removed"),
        "Accuracy change on each abstract pattern or SUL task when the top k% of heads by prefix matching are "
        "removed (zero or mean ablation) or only their induction edges are knocked out (95% interval, paired over "
        "items), beside as many random heads (mean, min-max over draws). Crosbie & Shutova report -31.6% / -36% "
        "(relative) at 1% / 3% on Llama-3-8B.")]


def _causal(folder: Path) -> list[FigureEntry]:
    return causal_entries(_table(folder, "causal_vs_random"), _table(folder, "causal_repeated"))


def _abstract(folder: Path) -> list[FigureEntry]:
    """Pattern-task figures of causal tests run into subfolders (the folder's own come with :func:`_causal`)."""
    from interp.store import find_tables, read_table_if_present

    entries = []
    for stem in find_tables(folder, "causal_vs_random"):
        if stem.parent != folder:
            where = "_".join(stem.parent.relative_to(folder).parts)
            entries += _pattern_entries(read_table_if_present(stem), f"{where}_pattern_tasks_accuracy")
    return entries


def collect_figures(folder: Path) -> list[FigureEntry]:
    """Every figure the tables in ``folder`` support, in report order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return (_induction(folder) + _importance(folder) + _pruning(folder) + _dynamics(folder) + _causal(folder)
            + _abstract(folder))


def regenerate_figures(folder: Path, formats: tuple[str, ...] = ("html", "png", "pdf")) -> list[Path]:
    """(Re)write every figure of ``folder`` into ``folder/figures``; raises when nothing can be drawn."""
    from interp.output.figures import save_figures

    folder = Path(folder)
    if not folder.is_dir():
        raise InterpError(f"no results folder {folder}; run `interp induction --out {folder}` first")
    entries = collect_figures(folder)
    if not entries:
        raise InterpError(f"{folder} holds no result tables to draw (induction_scores, crossref_*, pruning*, "
                          "head_scores)")
    return save_figures({folder / "figures" / entry.name: entry.figure for entry in entries}, formats)


def comparison_figure(folders: list[Path], metric: str = "prefix_matching", statistic: str = "mean") -> go.Figure:
    """The same induction score for the models of several results folders, side by side."""
    from interp.output.figures import model_comparison_figure

    tables = {}
    for folder in folders:
        scores = _table(Path(folder), "induction_scores")
        if scores is None:
            raise InterpError(f"no induction_scores in {folder}; run `interp induction --out {folder}` first")
        rows = scores[scores["metric"] == metric].dropna(subset=["layer", "head"])
        if rows.empty:
            raise InterpError(f"{folder}/induction_scores has no {metric!r} rows")
        name = str(rows["model"].iloc[0])
        tables[name if name not in tables else f"{name} ({folder})"] = rows.astype({"layer": int, "head": int})
    return model_comparison_figure(tables, statistic,
                                   f"{metric.replace('_', ' ')} score ({statistic} over seeds) by model")
