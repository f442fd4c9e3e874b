"""The papers' claims beside what a results folder measured: one table, keyed by claim.

Each row has a ``key`` (``heads``, ``ffns``, ``layers``, ``laser``) so the report looks claims up
by key, never by searching their wording.

>>> sorted(CLAIMS)
['ffns', 'heads', 'induction', 'laser', 'layers']
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from interp.store import read_table_if_present, write_table

__all__ = ["CLAIMS", "claims_table", "measured_claims"]

# key -> (the claim, who made it and the number they gave)
CLAIMS: dict[str, tuple[str, str]] = {
    "heads": ("Most attention heads can be removed with little loss of in-context learning",
              "Bansal et al. 2023 (OPT-66B): ~70% of heads"),
    "ffns": ("Some FFNs can be removed with little loss of in-context learning",
             "Bansal et al. 2023 (OPT-66B): ~20% of FFNs"),
    "layers": ("Deep layers can be dropped before performance collapses",
               "Gromov et al. 2024: up to about half of the layers (with healing)"),
    "laser": ("Low-rank reduction of single weight matrices can improve accuracy",
              "Sharma et al. 2023 (LASER): gains on several tasks from reducing later-layer MLP matrices"),
    "induction": ("Induction heads are among the heads important for in-context learning",
                  "Bansal et al. 2023: significant overlap of important heads with prefix-matching/copying heads"),
}


def _component_rows(out: Path) -> list[dict]:
    rows = []
    for key, noun in (("heads", "heads"), ("ffns", "FFNs")):
        part = read_table_if_present(out / f"pruning_{key}_thresholds")
        if part is None:
            continue
        part = part[(part["ranking"] == "own") & (part["task"] == "average")]
        for _, row in part.iterrows():
            rows.append({"key": key, "claim": CLAIMS[key][1], "shots": int(row["shots"]),
                         "measured": f"{row['prunable_percent']}% of {noun} "
                                     f"(95% interval {row['prunable_ci_low']}-{row['prunable_ci_high']}%)",
                         "detail": f"task average, own-importance ranking, within {row['tolerance_points']} points of "
                                   f"{row['baseline_accuracy']:.3f}"})
    return rows


def _layer_rows(out: Path) -> list[dict]:
    part = read_table_if_present(out / "layer_pruning_thresholds")
    if part is None:
        return []
    return [{"key": "layers", "claim": CLAIMS["layers"][1], "shots": int(row["shots"]),
             "measured": f"{row['method']}: {row['prunable_n']} layers ({row['prunable_fraction']:.0%}) "
                         "without healing",
             "detail": f"task average within {row['tolerance_points']} points"}
            for _, row in part[part["task"] == "average"].iterrows()]


def _laser_rows(out: Path) -> list[dict]:
    part = read_table_if_present(out / "laser_selected")
    if part is None:
        return []
    return [{"key": "laser", "claim": CLAIMS["laser"][1], "shots": int(shots),
             "measured": f"mean held-out accuracy change {group['report_accuracy_gain'].mean():+.3f}; "
                         f"{int((group['report_accuracy_gain'] > 0).sum())}/{len(group)} tasks improved",
             "detail": "best (layer, matrix, rho) on the first 20% of items, reported on the other 80%"}
            for shots, group in part.groupby("shots")]


def measured_claims(out: Path) -> pd.DataFrame:
    """The claims this folder's pruning sweeps measured (from their tables, parquet or CSV), one row each."""
    out = Path(out)
    rows = _component_rows(out) + _layer_rows(out) + _laser_rows(out)
    return pd.DataFrame(rows, columns=["key", "claim", "shots", "measured", "detail"])


def claims_table(out: Path) -> pd.DataFrame:
    """:func:`measured_claims`, written as ``pruning_claims`` when any."""
    table = measured_claims(out)
    if not table.empty:
        write_table(table, out / "pruning_claims")
    return table
