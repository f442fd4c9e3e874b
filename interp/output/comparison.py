"""Models side by side: where their induction heads sit, what removing them does, and the papers' claims.

One tidy table (``comparison``: a row per model and quantity, with its interval and the estimator
it came from) and one HTML page, written by ``interp compare``.  Each model is one results folder;
its tables are found anywhere below it (an ``interp prune`` run in ``pruning/``, a causal test in
``causal/``), so a folder laid out as the committed ``figures/MODEL/`` is compared as it is.  A
quantity a folder lacks is a row saying "not measured", never a guess.

>>> table = comparison_table([Path("no/such/folder")])
Traceback (most recent call last):
...
interp.errors.InterpError: no induction_scores under no/such/folder; run `interp induction --out no/such/folder` first
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from interp.errors import InterpError
from interp.output.catalogue import nearest_percent, pattern_task_rows, zero_ablation_caveat
from interp.output.claims import CLAIMS, measured_claims
from interp.store import (
    atomic_write,
    find_tables,
    read_json,
    read_table_if_present,
    run_metadata,
    write_json,
    write_table,
)

__all__ = ["CAUSAL_PERCENT", "PAPER_CAUSAL", "comparison_table", "write_comparison"]

CAUSAL_PERCENT = 10.0  # Bansal et al. remove 10% (and 20%) of OPT-66B's heads ranked by induction score
PAPER_CAUSAL = ("Bansal et al. 2023 (OPT-66B): removing the heads with the top induction scores lowers in-context "
                "accuracy more than removing as many random heads")
PAPER_ABSTRACT = ("Crosbie & Shutova 2025 (Llama-3-8B): removing the top 1% / 3% prefix-matching heads cuts few-shot "
                  "accuracy on abstract pattern tasks by 31.6% / 36%; random heads barely matter")
POST_NORM_NOTE = ("; this model normalises each attention output, so zeroing heads rescales the layer's others: "
                  "read the mean-ablation row")
TOP_HEADS = 3  # enough to see whether a model's induction heads cluster in depth
_COLUMNS = ["model", "section", "quantity", "value", "ci_low", "ci_high", "text", "estimator", "paper", "source"]


def _first(folder: Path, name: str) -> tuple[pd.DataFrame | None, str]:
    stems = find_tables(folder, name)
    if not stems:
        return None, ""
    return read_table_if_present(stems[0]), str(stems[0].relative_to(folder))


def _row(model: str, section: str, quantity: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "section": section, "quantity": quantity, **fields}


def _induction_rows(model: str, folder: Path, scores: pd.DataFrame, source: str) -> list[dict]:
    metadata = read_json(folder / "induction_metadata.json") if (folder / "induction_metadata.json").exists() else {}
    n_layers = (metadata.get("model") or {}).get("n_layers") or int(scores["layer"].max()) + 1
    rows = []
    for metric in ("prefix_matching", "copying"):
        part = scores[scores["metric"] == metric].dropna(subset=["layer", "head"]).nlargest(TOP_HEADS, "mean")
        seeds = int(part["n_seeds"].max()) if "n_seeds" in part else None
        for rank, head in enumerate(part.itertuples(), start=1):
            depth = int(head.layer) / max(n_layers - 1, 1)
            rows.append(_row(model, "induction heads", f"{metric.replace('_', ' ')} #{rank}", value=head.mean,
                             ci_low=getattr(head, "ci_low", None), ci_high=getattr(head, "ci_high", None),
                             text=f"L{int(head.layer)}H{int(head.head)} at depth {depth:.2f} of {n_layers} layers",
                             estimator=f"mean over {seeds} seeds, t-interval", source=source))
    return rows


def _repeated_rows(model: str, folder: Path) -> list[dict]:
    """The causal test on repeated random tokens: loss on repeats 2-4 with the top prefix-matching heads removed."""
    table, source = _first(folder, "causal_repeated")
    if table is None or table.empty:
        return []
    chosen = nearest_percent(table, CAUSAL_PERCENT)
    rows = table[(table["scope"] == "repeated") & (table["metric"] == "loss_repeats_later")
                 & (table["ranking"] == "prefix_matching") & (table["percent"] == chosen)]
    return [_row(model, "causal test", f"repeated tokens, {entry.ablation}: top {chosen:g}% prefix matching, change of "
                                       "loss on repeats 2-4 (nats)",
                 value=entry.change, ci_low=entry.ci_low, ci_high=entry.ci_high,
                 text=f"{entry.k} heads: {entry.clean:.2f} -> {entry.ablated:.2f}; "
                      f"random heads {entry.random_mean:+.2f} "
                      f"(range {entry.random_min:+.2f} to {entry.random_max:+.2f}, {entry.n_draws} draws); "
                      "minus random "
                      f"{entry.difference:+.2f} [{entry.difference_ci_low:+.2f}, {entry.difference_ci_high:+.2f}]",
                 estimator=f"paired over {entry.n} sequences, {entry.interval_method}", source=source)
            for entry in rows.sort_values("ablation").itertuples()]


def _causal_rows(model: str, folder: Path) -> list[dict]:
    table, source = _first(folder, "causal_vs_random")
    if table is None or table.empty:
        return [_row(model, "causal test", f"top {CAUSAL_PERCENT:g}% prefix-matching heads vs random",
                     text="not measured (run `interp ablate`)", paper=PAPER_CAUSAL)] + _repeated_rows(model, folder)
    chosen = nearest_percent(table, CAUSAL_PERCENT)
    pooled = table[(table["task"] == "all") & (table["percent"] == chosen) & (table["metric"] == "accuracy")]
    n_tasks = table.loc[table["task"] != "all", "task"].nunique()
    post_norm = zero_ablation_caveat((folder / source).parent) is not None
    rows = []
    for entry in pooled.sort_values(["shots", "ablation", "ranking"]).itertuples():
        rows.append(_row(
            model, "causal test",
                         f"{entry.shots}-shot {entry.ablation}: top {chosen:g}% {entry.ranking.replace('_', ' ')} "
                                  "minus random, accuracy",
            value=entry.difference, ci_low=entry.difference_ci_low, ci_high=entry.difference_ci_high,
            text=f"{entry.k} heads: change {entry.change:+.3f} vs random {entry.random_mean:+.3f} "
                 f"({entry.n_draws} draws), {n_tasks} tasks"
                 + (POST_NORM_NOTE if post_norm and entry.ablation == "zero" else ""),
            estimator=f"paired over items, {entry.difference_method}", paper=PAPER_CAUSAL, source=source))
    return rows + _repeated_rows(model, folder)


def _abstract_rows(model: str, folder: Path) -> list[dict]:
    """Per abstract or SUL task: accuracy change with the top prefix-matching heads removed or knocked out."""
    rows = []
    for stem in find_tables(folder, "causal_vs_random"):
        chosen = pattern_task_rows(read_table_if_present(stem))
        if chosen.empty:
            continue
        post_norm = zero_ablation_caveat(stem.parent) is not None
        for entry in chosen.sort_values(["task", "percent", "ablation"]).itertuples():
            rows.append(_row(model, "abstract patterns", f"{entry.task} {entry.shots}-shot, top {entry.percent:g}% "
                                                         f"prefix matching, {entry.ablation}: accuracy change",
                             value=entry.change, ci_low=entry.change_ci_low, ci_high=entry.change_ci_high,
                             text=f"{entry.k} heads; random {entry.random_mean:+.3f} ({entry.n_draws} draws); minus "
                                  f"random {entry.difference:+.3f} [{entry.difference_ci_low:+.3f}, "
                                  f"{entry.difference_ci_high:+.3f}], {entry.n} items"
                                  + (POST_NORM_NOTE if post_norm and entry.ablation == "zero" else ""),
                             estimator=f"paired over items, {entry.difference_method}", paper=PAPER_ABSTRACT,
                             source=str(stem.relative_to(folder))))
    return rows or [_row(model, "abstract patterns", "abstract or SUL tasks with induction heads removed",
                         text="not measured (interp ablate --tasks abstract)", paper=PAPER_ABSTRACT)]


def _claim_rows(model: str, folder: Path) -> list[dict]:
    # every folder holding a pruning, layer-dropping or LASER table, each read once
    runs = dict.fromkeys(stem.parent for name in ("pruning_heads_thresholds", "pruning_ffns_thresholds",
                                                  "layer_pruning_thresholds", "laser_selected")
                         for stem in find_tables(folder, name))
    claims = pd.concat([measured_claims(run).assign(source=str(run.relative_to(folder))) for run in runs]
                       or [pd.DataFrame()], ignore_index=True)
    if not claims.empty:  # the same claim measured alike by two runs is said once, from the shallower run
        claims = claims.drop_duplicates(subset=["key", "shots", "measured"])
    rows = []
    for key in ("heads", "ffns", "layers", "laser"):
        found = claims[claims["key"] == key] if not claims.empty else claims
        if found.empty:
            rows.append(_row(model, "claims", key, text="not measured", paper=CLAIMS[key][1]))
        for entry in found.itertuples():
            # two pruning runs of one model stay apart
            where = "" if entry.source in ("", ".") else f" ({entry.source}/)"
            rows.append(_row(model, "claims", f"{key}, {entry.shots}-shot{where}", text=entry.measured,
                             estimator=entry.detail,
                             paper=CLAIMS[key][1], source=entry.source))
    overlap, source = _first(folder, "crossref_overlap")
    if overlap is None:
        rows.append(_row(model, "claims", "induction", text="not measured (run `interp crossref`)",
                         paper=CLAIMS["induction"][1]))
        return rows
    for metric, part in overlap.groupby("induction_metric"):
        rows.append(_row(model, "claims", f"induction: top-10 overlap, {metric.replace('_', ' ')}",
                         value=part["overlap"].mean(),
                         text=f"mean {part['overlap'].mean():.2f} heads vs {part['expected'].mean():.2f} by chance "
                              f"over {len(part)} (task, shots)",
                         estimator="hypergeometric expectation", paper=CLAIMS["induction"][1], source=source))
    return rows


def comparison_table(folders: list[Path]) -> pd.DataFrame:
    """One row per (model, quantity) for the results folders given, one folder a model."""
    rows = []
    for folder in map(Path, folders):
        scores, source = _first(folder, "induction_scores")
        if scores is None:
            raise InterpError(f"no induction_scores under {folder}; run `interp induction --out {folder}` first")
        model = str(scores["model"].iloc[0]) if "model" in scores else folder.name
        rows += (_induction_rows(model, folder, scores, source) + _causal_rows(model, folder)
                 + _abstract_rows(model, folder) + _claim_rows(model, folder))
    return pd.DataFrame(rows).reindex(columns=_COLUMNS)


def _cell(row: pd.Series) -> str:
    if pd.isna(row["value"]):
        return html.escape(str(row["text"]))
    interval = "" if pd.isna(row["ci_low"]) else f" [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
    extra = "" if pd.isna(row["text"]) else f"<br><small>{html.escape(str(row['text']))}</small>"
    return f"{row['value']:.3f}{interval}{extra}"


def write_comparison(folders: list[Path], out: Path) -> list[Path]:
    """``comparison`` (parquet + CSV), its metadata and ``comparison.html`` in ``out``; returns what was written."""
    table = comparison_table(folders)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / "comparison")
    write_json(run_metadata(job="compare", folders=[str(folder) for folder in folders],
                            causal_percent=CAUSAL_PERCENT), out / "comparison_metadata.json")
    models = list(dict.fromkeys(table["model"]))
    body = []
    for section, part in table.groupby("section", sort=False):
        header = "".join(f"<th>{html.escape(model)}</th>" for model in models)
        lines = []
        for quantity, rows in part.groupby("quantity", sort=False):
            by_model = {model: "<br>".join(_cell(row) for _, row in group.iterrows())  # layer methods share a row
                        for model, group in rows.groupby("model", sort=False)}
            paper = rows["paper"].dropna()
            cells = "".join(f"<td>{by_model.get(model, 'not measured')}</td>" for model in models)
            lines.append(f"<tr><th>{html.escape(quantity)}</th>{cells}"
                         f"<td>{html.escape(paper.iloc[0]) if len(paper) else ''}</td></tr>")
        body.append(f"<h2>{html.escape(section)}</h2><table><tr><th></th>{header}<th>paper</th></tr>{''.join(lines)}"
                    "</table>")
    page = out / "comparison.html"
    text = (
        "<!doctype html><meta charset='utf-8'><title>Models compared</title><style>body{font-family:sans-serif;"
        "max-width:1200px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left;vertical-align:top}</style><h1>Models compared</h1><p>Each cell: the value with its 95% "
        "interval in brackets where one exists; the estimator of every row is in <code>comparison.csv</code>. "
        f"Causal rows: accuracy change of removing the top {CAUSAL_PERCENT:g}% of heads by a ranking minus that of "
        "as many random heads (below 0: the ranking's heads matter more).</p>" + "".join(body))
    atomic_write(page, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
    return [out / "comparison.parquet", out / "comparison.csv", out / "comparison_metadata.json", page]
