"""Files shipped inside the package: task suites, the toy models and the training corpus.

Read them through :func:`data_path` so they are found in a checkout and in an installed wheel
alike (``importlib.resources``; the package is never zipped, so a real path exists).

>>> data_path("tasks").is_dir()
True
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["data_path"]


def data_path(*parts: str) -> Path:
    """Path of a shipped data file or folder, e.g. ``data_path("tasks", "antonyms.jsonl")``."""
    return Path(str(files("interp.data").joinpath(*parts)))
