"""The notebooks run top to bottom on small settings, and are committed without outputs.

Each notebook has one cell tagged ``parameters`` with small defaults; the test inserts a cell
right after it (as papermill does) that points the results folder into a temporary directory,
then executes the notebook with nbclient on the virtualenv's own ipykernel (nothing registered).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_induction_heads_tour", "02_reproduce_the_paper", "03_pruning_and_rank_reduction"]


def _parameters_index(notebook) -> int:
    tagged = [index for index, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "each notebook has exactly one cell tagged `parameters`"
    return tagged[0]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


# The tour runs on the real embedded model (its story needs real induction heads); the pipeline
# notebooks run on the tiny random Llama (GQA) of conftest, which keeps them to seconds: they test
# that the API calls fit together, not the numbers.
TINY = {"02_reproduce_the_paper": {}, "03_pruning_and_rank_reduction": {"BLOCK_SIZES": (1,), "LASER_LAYER": 1}}


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_on_small_settings(name, tmp_path, monkeypatch, tiny_model_dirs):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    index = _parameters_index(notebook)
    source = notebook.cells[index].source
    overrides = ["DEVICE = 'cpu'"]
    if "RESULTS" in source:
        overrides.append(f"RESULTS = {str(tmp_path / 'results')!r}")
    if name in TINY:
        overrides.append(f"MODEL = {str(tiny_model_dirs['llama'])!r}")
        overrides += [f"{key} = {value!r}" for key, value in TINY[name].items()]
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(overrides)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("PLOTLY_RENDERER", "json")  # figures as JSON outputs: no plotly.js inlined per notebook
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS.parent)}})
    client.execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors
    if name == "02_reproduce_the_paper":
        assert (tmp_path / "results" / "report.html").stat().st_size > 1_000_000  # plotly.js inlined
        assert (tmp_path / "results" / "crossref_correlations.parquet").exists()
    if name == "03_pruning_and_rank_reduction":
        assert (tmp_path / "results" / "pruning_heads_thresholds.parquet").exists()
