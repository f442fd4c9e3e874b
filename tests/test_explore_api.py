"""The notebook one-liners of ``interp.explore``: each returns a tidy DataFrame or a figure, in memory."""

from __future__ import annotations

import pytest

from interp import explore
from interp.errors import InterpError


@pytest.fixture(scope="module")
def toy(device):
    return explore.load("toy-attn-2l", device=device)


def test_one_liners_return_tables_and_figures(toy):
    scores = explore.score(toy, seeds=2, metrics=("prefix_matching",))
    assert {"layer", "head", "metric", "mean", "ci_low", "ci_high", "n_seeds"} <= set(scores.columns)
    assert set(scores.nlargest(4, "mean")["layer"]) == {1}  # all four layer-1 heads are induction heads
    clean, corrupted, answer = explore.repeated_name_prompts(toy, "And Moses said unto Aaron, and Moses")
    assert toy.tokenizer.decode([answer]) == " said"
    table = explore.patch(toy, clean, corrupted, answer=answer, activations=("z",))
    assert set(table["activation"]) == {"z"} and len(table) == 8
    assert explore.patching_figure(table).data[0].z.shape == (2, 4)
    import interp.explore.composition  # noqa: F401  (the submodule must not shadow the one-liner)

    composition = explore.compose(toy, kinds=("k",))
    assert set(composition["kind"]) == {"k"} and len(composition) == 16
    assert explore.composition_figure(composition).data[0].z.shape == (4, 4)


def test_repeated_name_needs_a_repeated_last_token(toy):
    with pytest.raises(InterpError, match="does not occur earlier"):
        explore.repeated_name_prompts(toy, "And Moses said unto Aaron")
    clean, corrupted, _ = explore.repeated_name_prompts(toy, "And Moses said unto Aaron, and Moses")
    assert int((clean != corrupted).sum()) == 1 and int((clean != corrupted).nonzero()[0, 1]) == 2  # the first Moses
    with pytest.raises(InterpError, match="compose"):
        explore.compose(toy, kinds=())
