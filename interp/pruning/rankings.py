"""The orders in which pruning removes heads and FFNs (Bansal et al. ACL 2023, sections 4-6).

Higher = more important; the lowest go first, ties by ``tiebreak``, then position.

- ``own``: the task's own importance: gradient importance of heads (Michel/Bansal), the oracle
  of FFNs (accuracy drop when one FFN is removed, ties by the loss increase);
- ``aggregate``: the mean of the raw scores over the tasks of the run (same shots);
- ``most_correlated`` / ``least_correlated``: the ranking of the other task whose scores have
  the highest / lowest Spearman correlation with this task's (cross-task transfer);
  ``task:NAME`` names one;
- ``prefix_matching`` / ``copying``: the head's induction score from ``induction_scores`` (heads only);
- ``random:SEED``: the baseline.

>>> rows = ranking_rows("t", 0, {"ffn": (np.array([0.3, 0.1]), np.zeros(2))})
>>> Rankings(rows, {"ffn": (2,)}, None).resolve("own", "t", 0, "ffn", ["t"])[0].tolist()
[0.3, 0.1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.errors import InterpError
from interp.importance.methods import gradient_importance, l2_normalise
from interp.pruning.components import INDUCTION_RANKINGS, PruningConfig, mask_summaries, masked_scores
from interp.tasks.evaluation import EncodedPrompts

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = ["Rankings", "component_scores", "ranking_rows"]


def component_scores(bridge: "TransformerBridge", encoded: EncodedPrompts, config: PruningConfig,
                     means: tuple[Tensor, Tensor] | None, components: Sequence[str] = ("head", "ffn")
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Own importance: {"head": (scores (layer, head), tiebreak), "ffn": (scores (layer,), tiebreak)}."""
    scores = {}
    if "head" in components or config.ffn_importance == "gradient":
        gradient = gradient_importance(bridge, encoded, config.batch_size)
        heads = gradient["head_gradient"]
        if config.head_importance == "gradient_l2":
            heads = l2_normalise(heads)
        if "head" in components:
            scores["head"] = (heads.numpy(), np.zeros(heads.shape))
    if "ffn" not in components:
        pass
    elif config.ffn_importance == "gradient":
        scores["ffn"] = (gradient["ffn_gradient"].numpy(), np.zeros(len(gradient["ffn_gradient"])))
    else:  # Bansal's oracle: accuracy drop with one FFN removed, ties by the loss increase
        n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
        ffn_masks = torch.cat([torch.zeros(1, n_layers, dtype=torch.bool), torch.eye(n_layers, dtype=torch.bool)])
        sums = masked_scores(bridge, encoded, torch.zeros(n_layers + 1, n_layers, n_heads, dtype=torch.bool), ffn_masks,
                             means, config.batch_size, config.masks_per_forward)
        summary = pd.DataFrame(mask_summaries(sums, encoded))
        scores["ffn"] = ((summary["accuracy"].iloc[0] - summary["accuracy"].iloc[1:]).to_numpy(),
                         (summary["loss"].iloc[1:] - summary["loss"].iloc[0]).to_numpy())
    return scores


def ranking_rows(task: str, shots: int, scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """The scores of :func:`component_scores` as tidy rows: task, shots, component, layer, head, value, tiebreak."""
    frames = []
    for component, (values, tiebreak) in scores.items():
        if component == "head":
            layers, heads = np.meshgrid(np.arange(values.shape[0]), np.arange(values.shape[1]), indexing="ij")
        else:
            layers, heads = np.arange(len(values)), np.full(len(values), -1)
        frames.append(pd.DataFrame({"task": task, "shots": shots, "component": component, "layer": layers.ravel(),
                                    "head": heads.ravel(), "value": values.ravel(), "tiebreak": tiebreak.ravel()}))
    return pd.concat(frames, ignore_index=True)


class Rankings:
    """Resolves a ranking name to (scores, tiebreak, source) for a (task, shots, component)."""

    def __init__(self, table: pd.DataFrame, shape: dict[str, tuple[int, ...]], induction: pd.DataFrame | None):
        self.table, self.shape, self.induction = table, shape, induction

    def own(self, task: str, shots: int, component: str) -> tuple[np.ndarray, np.ndarray]:
        part = self.table[(self.table["task"] == task) & (self.table["shots"] == shots)
                          & (self.table["component"] == component)].sort_values(["layer", "head"])
        shape = self.shape[component]
        return part["value"].to_numpy().reshape(shape), part["tiebreak"].to_numpy().reshape(shape)

    def resolve(self, name: str, task: str, shots: int, component: str, tasks: Sequence[str]
                ) -> tuple[np.ndarray, np.ndarray, str] | None:
        """None where the ranking does not apply (transfer with one task)."""
        shape = self.shape[component]
        if name == "own":
            return (*self.own(task, shots, component), task)
        if name == "aggregate":
            owned = [self.own(other, shots, component) for other in tasks]
            return (np.mean([values for values, _ in owned], axis=0), np.mean([tie for _, tie in owned], axis=0),
                    "mean over " + ",".join(tasks))
        if name.startswith("task:"):
            other = name.removeprefix("task:")
            if other not in tasks:
                raise InterpError(f"ranking {name!r}: task {other!r} is not among the run's tasks ({', '.join(tasks)})")
            return (*self.own(other, shots, component), other)
        if name in ("most_correlated", "least_correlated"):
            return self._correlated(name, task, shots, component, tasks)
        if name in INDUCTION_RANKINGS:
            return self._induction(name, component, shape)
        seed = int(name.removeprefix("random:"))
        generator = np.random.default_rng([seed, 4])
        return generator.random(shape), np.zeros(shape), f"seed {seed}"

    def _correlated(self, name: str, task: str, shots: int, component: str, tasks: Sequence[str]
                    ) -> tuple[np.ndarray, np.ndarray, str] | None:
        from scipy import stats

        others = [other for other in tasks if other != task]
        if not others:
            return None  # one task: no transfer to measure
        mine = self.own(task, shots, component)[0].ravel()
        correlations = [stats.spearmanr(mine, self.own(other, shots, component)[0].ravel())[0] for other in others]
        correlations = np.nan_to_num(np.asarray(correlations, dtype=float), nan=0.0)
        chosen = others[int(np.argmax(correlations) if name == "most_correlated" else np.argmin(correlations))]
        return (*self.own(chosen, shots, component), chosen)

    def _induction(self, name: str, component: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, str]:
        if component != "head":
            raise InterpError(f"ranking {name!r} scores heads only; FFN studies take own, aggregate, "
                              "most_correlated, least_correlated, task:NAME or random")
        if self.induction is None:
            raise InterpError(f"ranking {name!r} needs induction_scores in the results folder; "
                              "run `interp induction` first")
        rows = self.induction[self.induction["metric"] == name]
        grid = rows.pivot_table(index="layer", columns="head", values="mean")
        if grid.shape != shape:
            raise InterpError(f"induction_scores has a {grid.shape} grid of {name!r}; the model has {shape}")
        return grid.to_numpy(), np.zeros(shape), "induction_scores"
