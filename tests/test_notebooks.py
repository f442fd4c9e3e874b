"""The notebooks are committed with their outputs (figures as PNGs a code host shows), and run top to bottom.

Each notebook has one cell tagged ``parameters`` with small defaults; the run test inserts a cell
right after it (as papermill does) that points the results folder into a temporary directory,
swaps the model for a small one and draws figures as plotly JSON (no browser), then executes the
notebook with nbclient on the virtualenv's own ipykernel (nothing registered).  The committed
copies were executed with their own parameters (``RENDERER = "plotly_mimetype+png"``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_induction_heads_tour", "02_reproduce_the_paper", "03_pruning_and_rank_reduction", "04_your_own_prompt"]
NOISE = ("IProgress not found", "TqdmWarning")  # tqdm's complaint when ipywidgets is missing: never shown


def _parameters_index(notebook) -> int:
    tagged = [index for index, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "each notebook has exactly one cell tagged `parameters`"
    return tagged[0]


def _outputs(cells) -> list[dict]:
    return [output for cell in cells if cell["cell_type"] == "code" for output in cell.get("outputs", [])]


def _stream_text(outputs) -> str:
    return "".join("".join(output.get("text", "")) for output in outputs if output.get("output_type") == "stream")


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_shows_its_figures(name):
    notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell["execution_count"] is not None for cell in code), "every code cell was executed"
    outputs = _outputs(notebook["cells"])
    assert not [output for output in outputs if output.get("output_type") == "error"]
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    figures = sum("".join(cell["source"]).count(".show()") for cell in code)
    assert len(pictures) >= figures > 0, "every figure has a PNG a code host can render"
    assert not any(noise in _stream_text(outputs) for noise in NOISE)


# The tour runs on the real embedded model (its story needs real induction heads); the pipeline
# notebooks run on the tiny random Llama (GQA) of conftest, which keeps them to seconds: they test
# that the API calls fit together, not the numbers.  "Your own prompt" runs on the toy model, whose
# tokenizer splits the name differently: a random replacement token keeps the prompt valid.
TINY = {"02_reproduce_the_paper": {}, "03_pruning_and_rank_reduction": {"BLOCK_SIZES": (1,), "LASER_LAYER": 1}}
TOY = {"04_your_own_prompt": {"MODEL": "toy-attn-2l", "REPLACEMENT": None, "SEEDS": 2}}


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_on_small_settings(name, tmp_path, monkeypatch, tiny_model_dirs):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    index = _parameters_index(notebook)
    source = notebook.cells[index].source
    overrides = ["DEVICE = 'cpu'", "RENDERER = 'json'"]  # figures as JSON: no browser, no plotly.js per notebook
    if "RESULTS" in source:
        overrides.append(f"RESULTS = {str(tmp_path / 'results')!r}")
    if name in TINY:
        overrides.append(f"MODEL = {str(tiny_model_dirs['llama'])!r}")
        overrides += [f"{key} = {value!r}" for key, value in TINY[name].items()]
    overrides += [f"{key} = {value!r}" for key, value in TOY.get(name, {}).items()]
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(overrides)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS.parent)}})
    client.execute()
    outputs = _outputs(notebook.cells)
    assert not [output for output in outputs if output.get("output_type") == "error"]
    assert not any(noise in _stream_text(outputs) for noise in NOISE)
    if name == "02_reproduce_the_paper":
        assert (tmp_path / "results" / "report.html").stat().st_size > 1_000_000  # plotly.js inlined
        assert (tmp_path / "results" / "crossref_correlations.parquet").exists()
    if name == "03_pruning_and_rank_reduction":
        assert (tmp_path / "results" / "pruning_heads_thresholds.parquet").exists()
    shown = sum(cell.source.count(".show()") for cell in notebook.cells if cell.cell_type == "code")
    figures = [output for output in outputs if "application/json" in output.get("data", {})]  # plotly's json renderer
    assert len(figures) == shown  # every figure was drawn
