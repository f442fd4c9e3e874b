"""The built wheel carries what the package reads at run time: task files, toy models, the corpus.

The wheel is built offline (no build isolation: the setuptools already installed) from a copy of
the project, so the checkout gets no ``build/`` folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import interp

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "interp" / "data"


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    source, wheels = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheels")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "interp", source / "interp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--wheel-dir", str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = wheels.glob("interp-*.whl")
    assert wheel.name.startswith(f"interp-{interp.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_carries_every_task_file(wheel_names):
    tasks = sorted(path.name for path in (DATA / "tasks").glob("*.jsonl"))
    assert len(tasks) >= 14
    assert {f"interp/data/tasks/{name}" for name in tasks} <= wheel_names
    assert "interp/data/tasks/README.md" in wheel_names


@pytest.mark.parametrize("model", ["toy-attn-1l", "toy-attn-2l"])
def test_the_wheel_carries_the_toy_models(wheel_names, model):
    files = sorted(path.name for path in (DATA / "models" / model).iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "TRAINING.md"} <= set(files)
    assert {f"interp/data/models/{model}/{name}" for name in files} <= wheel_names


def test_the_wheel_carries_the_corpus_code_and_entry_point(wheel_names):
    assert {"interp/data/corpus/kjv.txt.gz", "interp/data/corpus/README.md", "interp/data/__init__.py"} <= wheel_names
    assert {"interp/cli/main.py", "interp/induction/job.py", "interp/hooks.py"} <= wheel_names
    outside = ("tests/", "figures/", "notebooks/", "benchmarks/")
    assert not any("__pycache__" in name or name.startswith(outside) for name in wheel_names)
    assert any(name.endswith(".dist-info/entry_points.txt") for name in wheel_names)
