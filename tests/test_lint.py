"""The package, tests and benchmarks pass ``ruff check`` with the settings in pyproject.toml (line length 120)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    # ruff is in the test extra; skip only where the module itself is missing.
    pytest.importorskip("ruff", reason="ruff is not installed (pip install -e .[test])")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "interp", "tests", "benchmarks"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"
