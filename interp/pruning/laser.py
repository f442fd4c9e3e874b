"""LASER: replace one weight matrix with a low-rank approximation (Sharma et al. 2023).

https://arxiv.org/abs/2312.13558, section 4: matrix ``W`` of layer ``l`` becomes its rank
``k = floor(rho * min(m, n))`` truncation from the SVD.  One SVD per matrix serves every ``rho``
(:class:`LowRankFactors`), since the grid has nine values.

>>> import torch
>>> weight = torch.randn(6, 4)
>>> torch.linalg.matrix_rank(low_rank(weight, 0.5)).item()
2
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError
from interp.models.structure import decoder_layer, hf_model_of

__all__ = ["MATRICES", "LowRankFactors", "check_rho", "laser_intervention", "low_rank", "matrix_parameter", "rank_for"]

# Matrix name -> candidate (parameter name inside a decoder layer, slice of output columns or
# None).  Names are as Hugging Face writes them; the bridge's rewiring is stripped first.
_GPT2_FUSED = "attn.c_attn.weight"  # Conv1D (in, 3 * d_model): q | k | v along columns
MATRICES: dict[str, tuple[tuple[str, int | None], ...]] = {
    "q": (("self_attn.q_proj.weight", None), ("attn.q.weight", None), (_GPT2_FUSED, 0)),
    "k": (("self_attn.k_proj.weight", None), ("attn.k.weight", None), (_GPT2_FUSED, 1)),
    "v": (("self_attn.v_proj.weight", None), ("attn.v.weight", None), (_GPT2_FUSED, 2)),
    "o": (("self_attn.o_proj.weight", None), ("self_attn.out_proj.weight", None), ("attn.o.weight", None),
          ("attn.c_proj.weight", None)),
    "mlp_in": (("mlp.up_proj.weight", None), ("fc1.weight", None), ("mlp.c_fc.weight", None)),
    "mlp_gate": (("mlp.gate_proj.weight", None),),
    "mlp_out": (("mlp.down_proj.weight", None), ("fc2.weight", None), ("mlp.c_proj.weight", None)),
}


def check_rho(rho: float) -> float:
    if not isinstance(rho, (int, float)) or not 0 < rho <= 1:
        raise InterpError(f"rho={rho!r} is outside (0, 1]; use a fraction of the full rank such as 0.1")
    return float(rho)


def rank_for(shape: tuple[int, ...], rho: float) -> int:
    """``k = floor(rho * min(m, n))``, at least 1 (the 1e-9 keeps 0.7 * 10 from flooring to 6)."""
    return max(1, math.floor(check_rho(rho) * min(shape[-2:]) + 1e-9))


class LowRankFactors:
    """The SVD of one matrix, computed once, truncated to any ``rho``.

    >>> factors = LowRankFactors(torch.eye(4))
    >>> factors.approximate(0.5).diagonal().tolist()
    [1.0, 1.0, 0.0, 0.0]
    """

    def __init__(self, weight: Float[Tensor, "rows columns"]):
        self.dtype = weight.dtype
        # float32 at least: SVD in half precision is unsupported or inaccurate.
        work = weight.detach().to(torch.promote_types(weight.dtype, torch.float32))
        self.U, self.S, self.Vh = torch.linalg.svd(work, full_matrices=False)

    def approximate(self, rho: float) -> Float[Tensor, "rows columns"]:
        rank = rank_for((self.U.shape[0], self.Vh.shape[1]), rho)
        approximation = (self.U[:, :rank] * self.S[:rank]) @ self.Vh[:rank]  # (rows, rank) @ (rank, columns)
        return approximation.to(self.dtype)


def low_rank(weight: Float[Tensor, "rows columns"], rho: float) -> Float[Tensor, "rows columns"]:
    """Rank ``floor(rho * min(m, n))`` approximation of ``weight`` (a new tensor)."""
    return LowRankFactors(weight).approximate(rho)


def matrix_parameter(model: Any, layer: int, matrix: str) -> tuple[torch.nn.Parameter, int | None]:
    """The parameter holding ``matrix`` of ``layer`` and, for a fused q|k|v weight, which third."""
    if matrix not in MATRICES:
        raise InterpError(f"unknown matrix {matrix!r}; choose one of: {', '.join(MATRICES)}")
    block = decoder_layer(hf_model_of(model), layer)
    parameters = {name.replace("_original_component.", ""): parameter
                  for name, parameter in block.named_parameters()}
    for name, third in MATRICES[matrix]:
        if name in parameters:
            return parameters[name], third
    raise InterpError(f"{type(hf_model_of(model)).__name__} has no {matrix!r} matrix in layer {layer}")


@contextlib.contextmanager
def laser_intervention(model: Any, layer: int, matrix: str, rho: float,
                       factors: LowRankFactors | None = None) -> Iterator[Tensor]:
    """Within the block, ``matrix`` of ``layer`` is its rank-``rho`` approximation; restored on exit.

    ``model`` is a ``TransformerBridge`` or a Hugging Face model.  Pass ``factors`` (built from
    the original matrix) to reuse one SVD over a grid of ``rho``.  Yields the approximation.
    The parameter's tensor is swapped, never written, so the original comes back bit for bit.
    """
    check_rho(rho)
    parameter, third = matrix_parameter(model, layer, matrix)
    original = parameter.data
    if third is None:
        target = original
    else:
        width = original.shape[1] // 3  # Conv1D weight is (in, out): q, k, v are column blocks
        target = original[:, third * width : (third + 1) * width]
    if factors is None:
        factors = LowRankFactors(target)
    elif (factors.U.shape[0], factors.Vh.shape[1]) != tuple(target.shape):
        raise InterpError(f"factors of shape {(factors.U.shape[0], factors.Vh.shape[1])} do not fit "
                          f"{matrix!r} of layer {layer}, shape {tuple(target.shape)}")
    approximation = factors.approximate(rho).to(original.device)
    if third is None:
        replacement = approximation
    else:
        replacement = original.clone()
        replacement[:, third * width : (third + 1) * width] = approximation
    parameter.data = replacement
    try:
        yield approximation
    finally:
        parameter.data = original
