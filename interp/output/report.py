"""One self-contained HTML report of a results folder: record, protocol, findings, claims, figures.

The file inlines plotly.js once (about 4.5 MB) and every figure's data, so it opens offline
from disk.  Every sentence of the findings is written from the measured numbers in the
folder's tables; a result that is absent is said to be absent, never guessed.  A small script
at the end of the page counts the drawn plots and JavaScript errors into ``data-plots`` /
``data-js-errors`` on ``<body>``, which the browser test reads.

>>> claims = paper_claims(Path("no/such/folder"))
>>> sorted(set(claims["this model"]))
['not measured']
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from interp.errors import InterpError
from interp.output.catalogue import (
    FigureEntry,
    collect_figures,
    curve_columns,
    dynamics_tables,
    nearest_percent,
    pattern_task_rows,
    pruning_tables,
    zero_ablation_caveat,
)
from interp.output.claims import CLAIMS

__all__ = ["DEFAULT_TOLERANCE", "findings", "paper_claims", "write_report"]

DEFAULT_TOLERANCE = 0.01  # accuracy drop (absolute) still counted as "within tolerance" when a table states none
_SECTIONS = {"induction": "Induction heads", "importance": "Task importance and induction",
             "pruning": "Pruning, layer dropping and LASER", "dynamics": "Training dynamics", "causal": "Causal test",
             "reconciliation": "Do the estimators agree?",
             "abstract": "Abstract patterns, unrelated labels and attention knockout"}
RECONCILE_GAP = 0.05  # mean accuracy gap under which two pruning curves are said to track each other


def _table(folder: Path, name: str) -> pd.DataFrame | None:
    from interp.store import read_table_if_present

    return read_table_if_present(folder / name)


def _json(path: Path) -> dict[str, Any]:
    from interp.store import read_json

    return read_json(path) if path.exists() else {}


def _heads(label_rows: pd.DataFrame) -> str:
    def interval(row: Any) -> str:
        # tables from before the column: the old bootstrap
        method = getattr(row, "interval_method", "percentile bootstrap")
        if not np.isfinite(row.ci_low):
            return ""
        return f", 95% {'t-interval' if method == 't' else method} {row.ci_low:.3f}-{row.ci_high:.3f}"

    return ", ".join(f"L{int(row.layer)}H{int(row.head)} ({row.mean:.3f}{interval(row)})"
                     for row in label_rows.itertuples())


def _context_findings(folder: Path, seeds: int) -> list[str]:
    """What the model's context and the number of seeds did to the induction protocol."""
    context = _json(folder / "induction_metadata.json").get("context") or {}
    sentences = []
    for kind, verb in (("capped_seeds", "capped at the longest period that fits"), ("dropped_seeds", "left out")):
        changed = context.get(kind) or []
        if changed:
            sentences.append(f"The model reads at most {context.get('tokens')} tokens ({context.get('source')}): seeds "
                             f"{changed[0]}..{changed[-1]} ({len(changed)}) were {verb} (longest sequence "
                             f"{context.get('longest_sequence')} tokens).")
    if 1 < seeds < 5:
        sentences.append(f"Only {seeds} seeds: the intervals are wide, and their coverage rests on the per-seed values "
                         "being near-normal (docs/methods.md, 'Intervals and multiple comparisons').")
    return sentences


def _induction_findings(folder: Path, n_layers: int | None) -> list[str]:
    scores = _table(folder, "induction_scores")
    if scores is None:
        return ["No induction scores in this folder (run `interp induction`)."]
    heads = scores.dropna(subset=["layer", "head"])
    sentences = []
    for metric in ("prefix_matching", "copying"):
        rows = heads[heads["metric"] == metric]
        if rows.empty:
            continue
        top = rows.nlargest(5, "mean")
        seeds = int(rows["n_seeds"].max())
        sentences.append(f"The strongest {metric.replace('_', ' ')} heads (mean over {seeds} seeds) are {_heads(top)}.")
        # a quarter of a small model
        top10 = rows.nlargest(min(10, max(1, len(rows) // 4)), "mean")["layer"].astype(int)
        depth = n_layers or int(heads["layer"].max()) + 1
        sentences.append(f"The top {len(top10)} {metric.replace('_', ' ')} heads sit in layers "
                         f"{top10.min()}-{top10.max()} (median layer {top10.median():.0f} of {depth}, i.e. "
                         f"{top10.median() / max(depth - 1, 1):.0%} of the depth).")
    sentences += _context_findings(folder, int(heads["n_seeds"].max()) if len(heads) else 0)
    losses = scores[scores["layer"].isna()].set_index("metric")["mean"]
    if {"loss_repeat_1", "loss_repeats_2_4"} <= set(losses.index):
        first, later = losses["loss_repeat_1"], losses["loss_repeats_2_4"]
        sentences.append(f"On repeated random tokens the loss falls from {first:.2f} nats on the first occurrence to "
                         f"{later:.2f} nats on repeats 2-4 ({first - later:.2f} nats lower): the model copies from "
                         "context.")
    return sentences


_ESTIMATOR_NAMES = {"all": "gradient importance summed over every token (Bansal et al.)",
                    "answer": "gradient importance summed over the answer positions only", "exact": "exact ablation"}


def _estimator_label(estimator: str, bos: bool) -> str:
    return _ESTIMATOR_NAMES.get(estimator, str(estimator)) + ("" if bos else ", prompts without BOS")


def _by_estimator(table: pd.DataFrame) -> list[tuple[tuple[str, bool], pd.DataFrame]]:
    """The table's rows per (estimator, prepend_bos), Bansal's first; q-values added where an old table lacks them."""
    from interp.importance.crossref import ESTIMATOR_COLUMNS
    from interp.stats import bh_qvalues

    table = table.copy()
    if "estimator" not in table.columns:
        table["estimator"] = "all"  # made before the column existed: gradient then always summed over every token
    if "prepend_bos" not in table.columns:
        table["prepend_bos"] = True
    groups = []
    for (estimator, bos), part in table.groupby(list(ESTIMATOR_COLUMNS), sort=False):
        if "q_value" not in part.columns or part["q_value"].isna().all():
            part = part.assign(q_value=bh_qvalues(part["p_value"].to_numpy()))
        groups.append(((str(estimator), bool(bos)), part))
    return sorted(groups, key=lambda group: (group[0][0] != "all", not group[0][1], group[0][0]))


def _overlap_text(rows: pd.DataFrame, with_test: bool) -> str:
    """'k of the top K metric heads (chance c, [test p = ..., ]q = ...)' for each aggregate overlap row."""
    def phrase(row: Any) -> str:
        test = "hypergeometric" if "hypergeometric" in str(getattr(row, "test", "")) else "permutation"
        tested = f"{test} p = {row.p_value:.2g}, " if with_test else ""
        return (f"{int(row.overlap)} of the top {int(row.top_k)} {row.induction_metric.replace('_', ' ')} heads "
                f"(chance {row.expected:.1f}, {tested}q = {row.q_value:.2g})")
    return "; ".join(phrase(row) for row in rows.itertuples())


def _one_estimator(correlations: pd.DataFrame, overlap: pd.DataFrame | None) -> tuple[list[str], str, bool]:
    """Sentences, the overlap text and the verdict (important heads include induction heads) of one estimator."""
    sentences = []
    for row in correlations[correlations["task"] == "aggregate"].itertuples():
        sentences.append("Aggregate head importance (mean over tasks and shots) and "
                         f"{row.induction_metric.replace('_', ' ')} "
                         f"have Spearman rho = {row.spearman:.3f} (p = {row.p_value:.2g}, BH q = {row.q_value:.2g}).")
    tasks = correlations[correlations["task"] != "aggregate"]
    if not tasks.empty:
        by_q = int(((tasks["spearman"] > 0) & (tasks["q_value"] < 0.05)).sum())
        by_p = int(((tasks["spearman"] > 0) & (tasks["p_value"] < 0.05)).sum())
        sentences.append(f"{by_q} of {len(tasks)} (task, shots, metric) correlations are positive with "
                         "Benjamini-Hochberg "
                         f"q < 0.05 ({by_p} with raw p < 0.05, uncorrected for the {len(correlations)} tests).")
    text, verdict = "", False
    if overlap is not None and not overlap.empty:
        rows = overlap[overlap["task"] == "aggregate"]
        text = _overlap_text(rows, with_test=True)
        verdict = bool((rows["q_value"] < 0.05).any())
        if text:
            sentences.append(f"Among the most important heads are {text}.")
    return sentences, text, verdict


def _estimator_agreement(folder: Path) -> list[str]:
    """How alike the two gradient estimators rank heads, per shot count (``crossref_estimators``)."""
    table = _table(folder, "crossref_estimators")
    if table is None or table.empty:
        return []
    sentences = []
    for (first, second), part in table.groupby(["estimator_a", "estimator_b"], sort=False):
        per_shots = part[part["task"] != "aggregate"].groupby("shots").agg(rho=("spearman", "mean"),
                                                                           overlap=("top_k_overlap", "mean"))
        aggregate = part[part["task"] == "aggregate"]
        shots = "; ".join(f"{shot}-shot mean rho {row.rho:.2f}, top-{int(part['top_k'].iloc[0])} overlap "
                          f"{row.overlap:.1f}"
                          for shot, row in per_shots.iterrows())
        whole = f" (aggregate ranking: rho {aggregate['spearman'].iloc[0]:.2f})" if not aggregate.empty else ""
        sentences.append(f"The {first} and {second} estimators rank heads alike to this degree: {shots}{whole}.")
    return sentences


def _importance_findings(folder: Path) -> tuple[list[str], dict[str, str]]:
    from interp.importance.crossref import primary_rows

    correlations = _table(folder, "crossref_correlations")
    if correlations is None:
        return ["Task importance was not cross-referenced with induction scores here (run `interp importance` then "
                "`interp crossref`)."], {}
    overlap = _table(folder, "crossref_overlap")
    overlaps = dict(_by_estimator(overlap)) if overlap is not None else {}
    sentences, measured, verdicts = [], {}, {}
    for key, part in _by_estimator(correlations):
        found, text, verdicts[key] = _one_estimator(part, overlaps.get(key))
        sentences.append(f"Under {_estimator_label(*key)}:")
        sentences += found
        measured.setdefault("induction", f"{text}; {_estimator_label(*key)}" if text else "")
    keys = list(verdicts)
    words = {True: "the important heads include induction heads beyond chance (aggregate overlap q < 0.05)",
             False: "the important heads do not include more induction heads than chance would (no aggregate overlap "
                    "with q < 0.05)"}
    conclusion = f"Conclusion: {words[verdicts[keys[0]]]}; it rests on {_estimator_label(*keys[0])}"
    if len(keys) > 1:
        others = [f"under {_estimator_label(*key)} the same conclusion "
                  f"{'holds' if verdicts[key] == verdicts[keys[0]] else 'does not hold'}" for key in keys[1:]]
        sentences.append(f"{conclusion}; {'; '.join(others)}.")
    else:
        sentences.append(f"{conclusion}; the other gradient estimator was not run here (`interp importance "
                         "--gradient-positions answer`), so whether it holds under that one is not measured.")
    sentences += _estimator_agreement(folder)
    layers = _table(folder, "crossref_layers")
    if layers is not None:
        layers = primary_rows(layers)
        for component, part in layers.groupby("component"):
            share = part.groupby("layer")["share"].mean()
            if share.isna().all():  # no importance at all (an attention-only model's FFNs)
                continue
            sentences.append(f"Important {'heads' if component == 'head' else 'FFNs'} sit around layer "
                             f"{part['mean_layer_of_top'].mean():.1f} on average; layer {int(share.idxmax())} holds "
                             f"the largest share of {component} importance ({share.max():.1%}), under "
                             f"{_estimator_label(*keys[0])}.")
    return sentences, measured


def _within_tolerance(table: pd.DataFrame, x: str, y: str, tolerance: float) -> float | None:
    """Largest x whose mean y stays within ``tolerance`` of the y at the smallest x (lower is worse)."""
    curve = table.groupby(x)[y].mean().sort_index()
    if len(curve) < 2:
        return None
    worse_is_higher = y == "loss"
    baseline = curve.iloc[0]
    drop = (curve - baseline) if worse_is_higher else (baseline - curve)
    ok = drop <= tolerance
    passing = curve.index[ok.cumprod().astype(bool)]  # stop at the first x that leaves the tolerance
    return float(passing.max())


def _threshold_findings(name: str, table: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """Sentences from a ``*_thresholds`` table (``prunable_percent`` per ranking, task, shots)."""
    noun = "FFNs" if "ffn" in name else "layers" if "layer" in name else "heads"
    rows = (table[table["task"] == "average"] if "task" in table.columns and (table["task"] == "average").any()
            else table)
    if "ranking" in rows.columns and (rows["ranking"] == "own").any():
        rows = rows[rows["ranking"] == "own"]
    tolerance = rows["tolerance_points"].iloc[0] if "tolerance_points" in rows.columns else None
    within = (f"within {tolerance:g} accuracy points of the unpruned model" if tolerance is not None
              else "within tolerance")
    parts = []
    for row in rows.itertuples():
        paired = "paired with the unpruned model, " if str(getattr(row, "interval_method",
                                                                   "")).startswith("paired") else ""
        interval = (f" (95% CI {paired}{row.prunable_ci_low:g}-{row.prunable_ci_high:g}%)"
                    if hasattr(row, "prunable_ci_low") and hasattr(row, "prunable_ci_high") else "")
        shots = f"{row.shots}-shot" if hasattr(row, "shots") else ""
        parts.append(f"{row.prunable_percent:g}%{interval} {shots}".strip())
    if not parts:
        return [], {}
    how = " (gradient summed over every token)" if noun == "heads" else ""  # FFNs: the ranking the sweep's config names
    ranking = f" ranked by each task's own importance{how}" if "ranking" in table.columns else ""
    sentence = f"Share of {noun} prunable {within}, mean over tasks{ranking}: {'; '.join(parts)} (table {name})."
    key = {"heads": "heads", "FFNs": "ffns", "layers": "layers"}[noun]
    return [sentence], {key: f"{'; '.join(parts)} {within}"}


def _layer_dropping_findings(thresholds: pd.DataFrame) -> tuple[list[str], str]:
    """A sentence per method's layer-dropping threshold averaged over tasks; their texts joined."""
    sentences, texts = [], []
    for row in thresholds[thresholds["task"] == "average"].itertuples():
        interval = (f", 95% CI {row.prunable_n_ci_low}-{row.prunable_n_ci_high} paired with the unpruned model"
                    if hasattr(row, "prunable_n_ci_low") else "")
        text = (f"{row.method}, {getattr(row, 'shots', '?')}-shot: {row.prunable_n} layers "
                f"({row.prunable_fraction:.0%}{interval}) within {getattr(row, 'tolerance_points', '?')} accuracy "
                "points, no healing")
        sentences.append(f"Layer dropping ({text}).")
        texts.append(text)
    return sentences, "; ".join(texts)


def _best_laser_text(selected: pd.DataFrame) -> str:
    """The LASER intervention with the largest held-out accuracy gain, and the mean gain over tasks."""
    best = selected.loc[selected["report_accuracy_gain"].idxmax()]
    paired = (f" (95% CI {best['gain_ci_low']:+.3f} to {best['gain_ci_high']:+.3f}, paired with the unmodified model)"
              if "gain_ci_low" in selected.columns and np.isfinite(best["gain_ci_low"]) else "")
    return (f"{best['matrix']} of layer {int(best['layer'])} at rho = {best['rho']:g} on {best['task']} "
            f"({best['shots']}-shot): held-out accuracy {best['report_accuracy_gain']:+.3f}{paired}; mean change over "
            f"tasks {selected['report_accuracy_gain'].mean():+.3f}")


def _laser_curve_text(table: pd.DataFrame, y: str) -> str:
    """The best ``y`` of a LASER sweep, where it is, and the unreduced model's value beside it."""
    best = table.loc[table[y].idxmin() if y == "loss" else table[y].idxmax()]
    where = ", ".join(f"{column} {best[column]}" for column in ("layer", "matrix", "rho", "task")
                      if column in table.columns)
    reference = (table[table["rho"] >= 1.0][y].mean() if "rho" in table.columns and (table["rho"] >= 1.0).any()
                 else None)
    gain = f" against {reference:.3f} unreduced" if reference is not None and np.isfinite(reference) else ""
    return f"best {y} {best[y]:.3f} at {where}{gain}"


def _summarised_elsewhere(name: str, table: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> bool:
    """Whether table ``name`` is a threshold, selection or interval table, or summarised from one."""
    if "prunable_percent" in table.columns or name.endswith(("_thresholds", "_claims", "_rankings", "_selected",
                                                             "_saved", "_effects")):
        return True  # _effects: the paired intervals behind the thresholds
    # laser, layer_pruning and layer_distances: summarised from their selected / thresholds tables
    return name in ("laser", "layer_pruning") or name.startswith("layer_distances") or f"{name}_thresholds" in tables


def _curve_findings(name: str, table: pd.DataFrame, x: str, y: str, group: list[str],
                    summarised: set[str]) -> tuple[list[str], dict[str, str]]:
    """How far each component of a pruning curve goes within tolerance (not for keys already ``summarised``)."""
    sentences, measured = [], {}
    kind = "layers" if name.startswith(("layer", "angular")) or "layer" in x else None
    split = "component" if "component" in group else None
    keys = {"head": "heads", "heads": "heads", "ffn": "ffns", "ffns": "ffns", "mlp": "ffns", "layers": "layers"}
    for component, part in (table.groupby(split) if split else [(kind or "components", table)]):
        label = str(component)
        key = keys.get(label.lower())
        limit = _within_tolerance(part, x, y, DEFAULT_TOLERANCE)
        if limit is None or key in summarised:
            continue
        text = (f"{limit:.0%}" if x.startswith(("fraction", "pruned_fraction", "rank_fraction"))
                else f"{limit:g} ({x.replace('_', ' ')})")
        sentences.append(f"{label}: up to {text} can be pruned with {y.replace('_', ' ')} within "
                         f"{DEFAULT_TOLERANCE:g} of the unpruned model (table {name}).")
        if key:
            measured[key] = f"{text} within {DEFAULT_TOLERANCE:g} {y.replace('_', ' ')}"
    return sentences, measured


def _pruning_findings(folder: Path) -> tuple[list[str], dict[str, str]]:
    tables = pruning_tables(folder)
    if not tables:
        return ["No pruning, layer-dropping or LASER results in this folder: those findings are not measured."], {}
    sentences, measured = [], {}
    for name, table in tables.items():
        if "prunable_percent" in table.columns:
            found, keys = _threshold_findings(name, table)
            sentences += found
            measured.update(keys)
    layer_thresholds = tables.get("layer_pruning_thresholds")
    if layer_thresholds is not None and {"method", "task", "prunable_n",
                                         "prunable_fraction"} <= set(layer_thresholds.columns):
        found, measured["layers"] = _layer_dropping_findings(layer_thresholds)
        sentences += found
    selected = tables.get("laser_selected")
    if selected is not None and {"layer", "matrix", "rho", "report_accuracy_gain"} <= set(selected.columns):
        measured["laser"] = _best_laser_text(selected)
        sentences.append(f"Best LASER intervention: {measured['laser']}.")
    summarised = set(measured)
    for name, table in tables.items():
        if _summarised_elsewhere(name, table, tables):
            continue
        columns = curve_columns(table)
        if columns is None:
            sentences.append(f"Table {name} has no recognised x/y columns; it is listed, not summarised.")
            continue
        x, y, group = columns
        if name.startswith("laser"):
            measured["laser"] = _laser_curve_text(table, y)
            sentences.append(f"LASER: {measured['laser']} (table {name}).")
            continue
        found, keys = _curve_findings(name, table, x, y, group, summarised)
        sentences += found
        measured.update(keys)
    return sentences, measured


def paper_claims(folder: Path) -> pd.DataFrame:
    """Each claim of the papers beside this folder's measurement, or "not measured"."""
    folder = Path(folder)
    measured: dict[str, str] = {}
    if folder.is_dir():
        measured.update(_importance_findings(folder)[1])
        measured.update(_pruning_findings(folder)[1])
        measured.update(_pruning_claims(folder))  # interp prune's own claims table, when written, has the last word
    return pd.DataFrame([{"key": key, "claim": claim, "paper": paper, "this model": measured.get(key, "not measured")}
                         for key, (claim, paper) in CLAIMS.items()])


def _pruning_claims(folder: Path) -> dict[str, str]:
    """Measured text per claim key from ``pruning_claims`` (written by ``interp prune``), by shot count."""
    table = _table(folder, "pruning_claims")
    if table is None or not {"key", "measured"} <= set(table.columns):
        return {}
    measured = {}
    for key, rows in table.groupby("key", sort=False):
        measured[key] = "; ".join(f"{row.shots}-shot: {row.measured} ({row.detail})" for row in rows.itertuples())
    return measured


def findings(folder: Path) -> dict[str, list[str]]:
    """Findings sentences by section, each written from the measured numbers."""
    folder = Path(folder)
    metadata = _json(folder / "induction_metadata.json")
    n_layers = metadata.get("model", {}).get("n_layers") if isinstance(metadata.get("model"), dict) else None
    return {"induction": _induction_findings(folder, n_layers), "importance": _importance_findings(folder)[0],
            "pruning": _pruning_findings(folder)[0], "dynamics": _dynamics_findings(folder),
            "causal": _causal_findings(folder), "reconciliation": _reconciliation_findings(folder),
            "abstract": _abstract_findings(folder)}


def _overlap_reading(folder: Path) -> list[str]:
    overlap = _table(folder, "crossref_overlap")
    if overlap is None or overlap.empty:
        return ["Top-k overlap of important and induction heads: not measured (run `interp crossref`)."]
    sentences = []
    for key, part in _by_estimator(overlap):
        found = _overlap_text(part[part["task"] == "aggregate"], with_test=False)
        if found:
            sentences.append(f"Overlap ({_estimator_label(*key)}): the most important heads hold {found}. This asks "
                             "whether the heads with the largest scores are induction heads.")
    return sentences


def _pruning_reading(folder: Path) -> list[str]:
    """Where pruning that keeps the strongest prefix-matching heads tracks pruning by the task's own importance."""
    table = pruning_tables(folder).get("pruning_heads")
    if table is None or not {"ranking", "head_percent", "accuracy"} <= set(table.columns):
        return []
    curves = table.groupby(["ranking", "head_percent"])["accuracy"].mean().unstack(0)
    if not {"own", "prefix_matching"} <= set(curves.columns):
        return []
    random = curves[[column for column in curves.columns if str(column).startswith("random")]].mean(axis=1)
    gap = (curves["own"] - curves["prefix_matching"]).abs()
    close = [percent for percent in gap.index if percent > 0 and gap.loc[percent] <= RECONCILE_GAP]
    if not close:
        return [f"Pruning: keeping the strongest prefix-matching heads never comes within {RECONCILE_GAP:g} accuracy "
                "of keeping the most important ones (table pruning_heads)."]
    points = "; ".join(f"{percent:g}%: {curves.loc[percent, 'prefix_matching']:.3f} vs "
                       f"{curves.loc[percent, 'own']:.3f} (random {random.loc[percent]:.3f})" for percent in close)
    return [f"Pruning: keeping the strongest prefix-matching heads gives accuracy within {RECONCILE_GAP:g} of keeping "
            f"the most important ones at {len(close)} of {int((gap.index > 0).sum())} pruned fractions (heads removed: "
            f"prefix-kept vs importance-kept accuracy, random-kept in brackets; mean over {table['task'].nunique()} "
            f"tasks): {points}. This asks whether the heads a heavily pruned model still needs include the induction "
            "heads, a different question from which heads score highest."]


def _method_reading(folder: Path) -> list[str]:
    """How far the cheap importance estimators agree with exact ablation (``crossref_methods``, any subfolder)."""
    from interp.store import find_tables, read_table_if_present

    stems = find_tables(folder, "crossref_methods")
    table = read_table_if_present(stems[0]) if stems else None
    if table is None or table.empty:
        return []
    exact = table[table["measure_b"].str.startswith("exact") & ~table["measure_a"].str.startswith("exact")]
    sentences = []
    for (cheap, reference), part in exact.groupby(["measure_a", "measure_b"], sort=False):
        sentences.append(f"Against {reference} ({_cells_text(part)}): {cheap} has Spearman "
                         f"{part['spearman'].mean():+.2f} "
                         f"(range {part['spearman'].min():+.2f} to {part['spearman'].max():+.2f}) and top-"
                         f"{int(part['top_k'].iloc[0])} overlap {part['top_k_overlap'].mean():.1f} heads (chance "
                         f"{part['expected_overlap'].mean():.2f}), mean over {len(part)} (task, shots).")
    return sentences


def _cells_text(part: pd.DataFrame, listed: int = 4) -> str:
    """The (task, shots) cells of a table: named when few, else counted ("14 tasks at 1 and 5 shots")."""
    cells = part[["task", "shots"]].drop_duplicates()
    if len(cells) <= listed:
        return ", ".join(f"{row.task} {row.shots}-shot" for row in cells.itertuples())
    shots = sorted(cells["shots"].astype(int).unique())
    shot_words = " and ".join(str(count) for count in shots)
    n_tasks = cells["task"].nunique()
    if len(cells) == n_tasks * len(shots):
        return f"{n_tasks} tasks at {shot_words} shots"
    return f"{len(cells)} (task, shots) over {n_tasks} tasks at {shot_words} shots"


def _exact_induction_reading(folder: Path) -> list[str]:
    """Exact ablation's own cross-reference with the induction scores (``exact/{zero,mean}_loss``)."""
    sentences = []
    for kind in ("zero", "mean"):
        correlations = _table(folder / "exact" / f"{kind}_loss", "crossref_correlations")
        if correlations is None or correlations.empty:
            continue
        tasks = correlations[correlations["task"] != "aggregate"]
        aggregate = correlations[correlations["task"] == "aggregate"]
        rho = "; ".join(f"{row.induction_metric.replace('_', ' ')} {row.spearman:+.3f} (BH q = {row.q_value:.2g})"
                        for row in aggregate.itertuples())
        positive = int(((tasks["spearman"] > 0) & (tasks["q_value"] < 0.05)).sum())
        negative = int(((tasks["spearman"] < 0) & (tasks["q_value"] < 0.05)).sum())
        text = (f"Exact {kind} ablation against the induction scores ({_cells_text(tasks)}): the loss change when "
                f"a head is removed, averaged over the cells, has Spearman {rho}; per cell, {positive} of "
                f"{len(tasks)} correlations are positive and {negative} negative with q < 0.05")
        overlap = _table(folder / "exact" / f"{kind}_loss", "crossref_overlap")
        if overlap is not None and not overlap.empty:
            cells = overlap[overlap["task"] != "aggregate"]
            text += (f"; top-{int(cells['top_k'].iloc[0])} overlap per cell {cells['overlap'].mean():.2f} heads on "
                     f"average (chance {cells['expected'].mean():.2f}), aggregate "
                     + _overlap_text(overlap[overlap["task"] == "aggregate"], with_test=False))
        sentences.append(text + ".")
    return sentences


def _reconciliation_findings(folder: Path, percent: float = 10) -> list[str]:
    """The three readings of "do induction heads matter" side by side, each from its own table."""
    sentences = (_overlap_reading(folder) + _method_reading(folder) + _exact_induction_reading(folder)
                 + _pruning_reading(folder))
    table = _table(folder, "causal_vs_random")
    if table is None or table.empty:
        sentences.append("Causal test: not run here, so which reading holds causally is not measured "
                         "(`interp ablate`).")
        return sentences
    chosen = nearest_percent(table, percent)
    pooled = table[(table["task"] == "all") & (table["percent"] == chosen)]
    names = {"accuracy": "accuracy", "gold_logprob": "the gold answer's log-probability"}
    for ranking in ("prefix_matching", "own"):
        for row in pooled[pooled["ranking"] == ranking].sort_values(["shots", "ablation", "metric"]).itertuples():
            verdict = _verdict(row.difference_ci_low, row.difference_ci_high, "more than", "less than")
            verdict = f"is {verdict}" if verdict.startswith("not") else f"costs {verdict} random heads"
            measure = names.get(row.metric, row.metric)
            sentences.append(f"Causal test ({row.shots}-shot, {row.ablation}): for {measure}, "
                             f"removing the top {chosen:g}% by {ranking.replace('_', ' ')} {verdict} (difference "
                             f"{row.difference:+.3f}, 95% CI {row.difference_ci_low:+.3f} to "
                             f"{row.difference_ci_high:+.3f}).")
    if (pooled["ranking"] == "own").any():
        sentences.append("The own ranking is each task's gradient importance measured on the very items it is then "
                         "evaluated on: it is chosen with the answers in view, so its effect is an upper bound on what "
                         "a ranking from held-out items would do.")
    return sentences


def _verdict(low: float, high: float, harm: str, less: str) -> str:
    """Words for a difference interval (ablated minus random): below 0 = more harm."""
    if high < 0:
        return harm
    if low > 0:
        return less
    return "not distinguishable from random heads at 95%"


def _causal_findings(folder: Path, percent: float = 10) -> list[str]:
    """The causal test's answer, from ``causal_vs_random``: do the top-k prefix-matching heads matter more than
    random ones?"""
    table = _table(folder, "causal_vs_random")
    if table is None or table.empty:
        return ["The causal test was not run here (run `interp ablate`)."]
    sentences = []
    chosen = nearest_percent(table, percent)
    pooled = table[(table["task"] == "all") & (table["percent"] == chosen) & (table["metric"] == "accuracy")]
    n_tasks = table.loc[table["task"] != "all", "task"].nunique()
    for row in pooled.sort_values(["shots", "ablation", "ranking"]).itertuples():
        verdict = _verdict(row.difference_ci_low, row.difference_ci_high, "hurts more than random heads",
                           "hurts less than random heads")
        sentences.append(
            f"{row.shots}-shot, {row.ablation} ablation: removing the top {chosen:g}% ({row.k}) heads by "
            f"{row.ranking.replace('_', ' ')} changes accuracy by {row.change:+.3f} (95% CI {row.change_ci_low:+.3f} "
            f"to {row.change_ci_high:+.3f}; mean over {n_tasks} tasks); {row.k} random heads by {row.random_mean:+.3f} "
            f"(range {row.random_min:+.3f} to {row.random_max:+.3f} over {row.n_draws} draws); ranking minus random "
            f"{row.difference:+.3f} (95% CI {row.difference_ci_low:+.3f} to {row.difference_ci_high:+.3f}): {verdict}.")
    per_task = table[(table["task"] != "all") & (table["percent"] == chosen) & (table["metric"] == "accuracy")
                     & (table["ranking"] == "prefix_matching")]
    for (shots, ablation), part in per_task.groupby(["shots", "ablation"]):
        worse, better = part["difference_ci_high"] < 0, part["difference_ci_low"] > 0
        corrected = ""
        if "difference_q_value" in part:
            significant = part["difference_q_value"] < 0.05
            corrected = (f"; with Benjamini-Hochberg over the {len(part)} tasks (q < 0.05): more on "
                         f"{int((worse & significant).sum())}, less on {int((better & significant).sum())}")
        named = ", ".join(part.loc[worse, "task"])
        sentences.append(f"Per task ({shots}-shot, {ablation}): the top {chosen:g}% prefix-matching heads hurt "
                         f"accuracy more than random heads on {int(worse.sum())} of {len(part)} tasks"
                         f"{f' ({named})' if named else ''} and less on {int(better.sum())} (95% intervals, "
                         f"uncorrected){corrected}.")
    sentences += _across_k(table)
    caveat = zero_ablation_caveat(folder)
    if caveat and (pooled["ablation"] == "zero").any():
        sentences.append(caveat)
    repeated = _table(folder, "causal_repeated")
    if repeated is not None and "difference" in repeated.columns:
        rows = repeated[(repeated["scope"] == "repeated") & (repeated["metric"] == "loss_repeats_later")
                        & (repeated["ranking"] == "prefix_matching") & (repeated["percent"] == chosen)]
        for row in rows.itertuples():
            sentences.append(f"On repeated random tokens ({row.ablation} ablation), removing them moves the loss on "
                             f"repeats 2-4 from {row.clean:.2f} to {row.ablated:.2f} nats; random heads move it by "
                             f"{row.random_mean:+.2f} on average (difference {row.difference:+.2f}, 95% CI "
                             f"{row.difference_ci_low:+.2f} to {row.difference_ci_high:+.2f}).")
    return sentences


def _across_k(table: pd.DataFrame) -> list[str]:
    """The pooled accuracy difference from random at every k, per (shots, ablation, ranking), where several k ran."""
    pooled = table[(table["task"] == "all") & (table["metric"] == "accuracy")]
    if pooled["percent"].nunique() < 2:
        return []
    sentences = []
    for (shots, ablation, ranking), part in pooled.groupby(["shots", "ablation", "ranking"], sort=True):
        points = "; ".join(f"{row.percent:g}% ({row.k}): {row.difference:+.3f} [{row.difference_ci_low:+.3f}, "
                           f"{row.difference_ci_high:+.3f}]" for row in part.sort_values("percent").itertuples())
        below = int((part["difference_ci_high"] < 0).sum())
        sentences.append(f"Across k ({shots}-shot, {ablation}), top heads by {ranking.replace('_', ' ')} minus as many "
                         f"random heads, accuracy (95% CI): {points}; below random at {below} of {len(part)} k.")
    return sentences


def _heads_count(k: int, kind: str) -> str:
    return f"{k} {kind} head" if k == 1 else f"{k} {kind} heads"


def _pattern_sentence(row: Any, clean: float | None) -> str:
    relative = f", {row.change / clean:+.0%} relative" if clean else ""
    before = f"{clean:.3f} -> {clean + row.change:.3f}, " if clean is not None else ""
    removal = "induction edges knocked out" if row.ablation == "knockout" else f"{row.ablation} ablation"
    verdict = _verdict(row.difference_ci_low, row.difference_ci_high, "hurts more than random heads",
                       "hurts less than random heads")
    return (f"{row.task} ({row.shots}-shot, {row.n} items), top {row.percent:g}% ({row.k}) prefix-matching heads, "
            f"{removal}: accuracy {before}change {row.change:+.3f} (95% CI {row.change_ci_low:+.3f} to "
            f"{row.change_ci_high:+.3f}{relative}); {_heads_count(row.k, 'random')} {row.random_mean:+.3f} (range "
            f"{row.random_min:+.3f} to {row.random_max:+.3f} over {row.n_draws} draws); minus random "
            f"{row.difference:+.3f} (95% CI {row.difference_ci_low:+.3f} to {row.difference_ci_high:+.3f}): {verdict}.")


def _abstract_findings(folder: Path) -> list[str]:
    """Crosbie & Shutova's test, task by task: do the top 1% / 3% prefix-matching heads carry the abstract tasks?"""
    from interp.store import find_tables, read_table_if_present

    sentences = []
    for stem in find_tables(folder, "causal_vs_random"):
        rows = pattern_task_rows(read_table_if_present(stem))
        if rows.empty:
            continue
        effects = read_table_if_present(stem.parent / "causal_effects")
        clean = ({} if effects is None else
                 effects[effects["metric"] == "accuracy"].groupby(["task", "shots"])["clean"].first().to_dict())
        sentences += [_pattern_sentence(row, clean.get((row.task, row.shots)))
                      for row in rows.sort_values(["task", "percent", "ablation"]).itertuples()]
        caveat = zero_ablation_caveat(stem.parent)
        if caveat and (rows["ablation"] == "zero").any():
            sentences.append(caveat)
    if not sentences:
        return ["Abstract pattern and SUL tasks with induction heads removed: not measured here "
                "(`interp ablate --tasks abstract,sul:sentiment --percents 1,3 --ablations zero,mean,knockout`)."]
    return sentences + ["Crosbie & Shutova (2025) report, on Llama-3-8B, a relative fall of 31.6% at 1% and 36% at "
                        "3% of heads on their abstract pattern tasks, with random heads barely mattering; their tasks, "
                        "items and model differ from these."]


def _dynamics_findings(folder: Path) -> list[str]:
    """When the best prefix-matching head formed, and what the losses did across that jump."""
    tables = dynamics_tables(folder)
    if tables is None:
        return ["No training dynamics in this folder (run `interp dynamics`): not measured."]
    heads, summary = tables
    means = heads.groupby(["step", "layer", "head", "metric"], as_index=False)["value"].mean()
    prefix = means[means["metric"] == "prefix_matching"]
    if prefix.empty:
        return ["The dynamics tables hold no prefix-matching scores."]
    final_step = prefix["step"].max()
    final = prefix[prefix["step"] == final_step].nlargest(1, "value").iloc[0]
    layer, head = int(final["layer"]), int(final["head"])
    curve = prefix[(prefix["layer"] == layer) & (prefix["head"] == head)].sort_values("step")
    jumps = curve["value"].diff().fillna(-np.inf).to_numpy()
    at = int(jumps.argmax())  # position of the checkpoint that ends the largest rise
    before, after = curve.iloc[max(at - 1, 0)], curve.iloc[at]
    sentences = [f"The final best prefix-matching head, L{layer}H{head} ({final['value']:.3f} at step "
                 f"{int(final_step)}), "
                 f"made its largest jump between checkpoints {int(before['step'])} and {int(after['step'])}: "
                 f"{before['value']:.3f} -> {after['value']:.3f}."]
    wide = summary.pivot_table(index="step", columns="metric", values="value")
    steps = [int(before["step"]), int(after["step"])]
    if "repeated_loss_repeat_1" in wide.columns and set(steps) <= set(wide.index):
        later = [column for column in wide.columns if column.startswith("repeated_loss_repeat_")
                 and column != "repeated_loss_repeat_1"]
        repeats = wide[later].mean(axis=1)
        sentences.append(f"Across that jump the loss on repeats 2+ went {repeats[steps[0]]:.2f} -> "
                         f"{repeats[steps[1]]:.2f} nats "
                         f"(repeat 1: {wide.loc[steps[0], 'repeated_loss_repeat_1']:.2f} -> "
                         f"{wide.loc[steps[1], 'repeated_loss_repeat_1']:.2f}).")
    for column, name in (("icl_score", "in-context-learning score (token 500 - token 50, scaled)"),
                         ("icl_score_band", "banded in-context-learning score")):
        if column in wide.columns and set(steps) <= set(wide.index):
            series = wide[column].dropna()
            sentences.append(f"The {name} went {series[steps[0]]:.2f} -> {series[steps[1]]:.2f} across the jump; "
                             f"{series.iloc[0]:.2f} at step {int(series.index[0])}, {series.iloc[-1]:.2f} at the end "
                             "(more negative = more in-context learning).")
    previous = means[(means["metric"] == "previous_token") & (means["layer"] == 0)]
    if not previous.empty and layer > 0:
        best = previous.groupby("step")["value"].max()
        sentences.append(f"The best layer-0 previous-token score went {best.get(steps[0], float('nan')):.3f} -> "
                         f"{best.get(steps[1], float('nan')):.3f} over the same checkpoints (final "
                         f"{best.iloc[-1]:.3f}).")
    return sentences


def _definition_list(data: dict[str, Any]) -> str:
    items = []
    for key, value in data.items():
        if isinstance(value, list) and len(value) > 12:
            value = f"{len(value)} values: {value[0]} .. {value[-1]}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        items.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>")
    return "<table class='record'>" + "".join(items) + "</table>"


def _figure_html(entry: FigureEntry, index: int) -> str:
    import plotly.io as pio

    div = pio.to_html(entry.figure, full_html=False, include_plotlyjs=False, div_id=f"figure-{index}",
                      config={"displaylogo": False, "responsive": False})
    return (f"<figure class='plot' id='{html.escape(entry.name)}'>{div}"
            f"<figcaption>{html.escape(entry.caption)}</figcaption></figure>")


_STYLE = ("body{font-family:Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\n"
          "table{border-collapse:collapse;margin:0.5em 0}"
          "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\n"
          "th{background:#f3f3f3}figure{margin:1.5em 0}figcaption{color:#555;font-size:0.9em}.missing{color:#8a4b00}")

_ERRORS = """<script>
window.interpErrors = 0;
window.addEventListener('error', function(){ window.interpErrors += 1; });
</script>"""

_CHECK = ("""<script>
window.addEventListener('load', function(){
  document.body.dataset.jsErrors = String(window.interpErrors);
  var drawn = 0;
  document.querySelectorAll('.plotly-graph-div').forEach("""
          """function(div){ if (div.querySelector('.main-svg')) drawn += 1; });
  document.body.dataset.plots = String(drawn);
});
</script>""")


def write_report(folder: Path, out: Path | None = None) -> Path:
    """Write ``out`` (default ``folder/report.html``); returns its path."""
    from plotly.offline import get_plotlyjs

    from interp.store import atomic_write

    folder = Path(folder)
    if not (folder / "induction_scores.parquet").exists() and not (folder / "induction_scores.csv").exists():
        raise InterpError(f"{folder} has no induction_scores; run `interp induction --out {folder}` first")
    out = Path(out) if out is not None else folder / "report.html"
    metadata = _json(folder / "induction_metadata.json")
    model = metadata.get("model", {}) if isinstance(metadata.get("model"), dict) else {}
    entries = collect_figures(folder)
    sentences = findings(folder)
    claims = paper_claims(folder)
    protocol = {**metadata.get("protocol", {}),
                **{f"config.{key}": value for key, value in metadata.get("config", {}).items()},
                "seeds": metadata.get("seeds", []), "token ranking": metadata.get("token_ranking", ""),
                "device": metadata.get("device", ""), "wall time (s)": metadata.get("wall_time_s", ""),
                "versions": metadata.get("versions", {})}
    body = [f"<h1>Induction heads in {html.escape(str(model.get('name', folder.name)))}</h1>",
            f"<p>Results folder <code>{html.escape(str(folder))}</code>; regenerate with "
            f"<code>interp report --results {html.escape(str(folder))}</code>.</p>",
            "<h2>Model</h2>", _definition_list(model), "<h2>Protocol</h2>", _definition_list(protocol),
            "<h2>Findings</h2>"]
    for section, items in sentences.items():
        body.append(f"<h3>{_SECTIONS[section]}</h3><ul>" + "".join(f"<li>{html.escape(item)}</li>"
                                                                   for item in items) + "</ul>")
    body.append("<h2>The papers' claims, and this model</h2>")
    body.append(claims.to_html(index=False, escape=True, classes="claims", border=0))
    body.append("<h2>Figures</h2>")
    index = 0
    for section, title in _SECTIONS.items():
        chosen = [entry for entry in entries if entry.section == section]
        body.append(f"<h3>{title}</h3>")
        if not chosen:
            body.append("<p class='missing'>No results of this kind in the folder.</p>")
        for entry in chosen:
            body.append(_figure_html(entry, index))
            index += 1
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>interp report: {html.escape(str(model.get('name', folder.name)))}</title><style>{_STYLE}</style>"
            f"{_ERRORS}<script>{get_plotlyjs()}</script></head><body data-js-errors='0' data-expected-plots='{index}'>"
            + "\n".join(body) + _CHECK + "</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda temporary: Path(temporary).write_text(page, encoding="utf-8"))
    return out
