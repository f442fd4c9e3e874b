"""Progress bars in a terminal and in Jupyter, with or without ipywidgets, and never a warning about it.

The workbench's bars come from ``tqdm.auto``: a widget in Jupyter when ipywidgets is installed
(``pip install "interp[jupyter]"``), text otherwise.  Without ipywidgets, tqdm (imported by
transformers the first time a model loads) prints "IProgress not found. Please update jupyter
and ipywidgets" into the notebook; :func:`silence_missing_widgets` drops exactly that message,
and :func:`load_model <interp.models.loading.load_model>` calls it before the heavy imports.

>>> silence_missing_widgets()
>>> bar = progress_bar(range(3), disable=True)
>>> sum(bar)
3
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["progress_bar", "silence_missing_widgets"]

_MISSING_WIDGETS = "IProgress not found"  # the start of tqdm's WARN_NOIPYW message


def silence_missing_widgets() -> None:
    """Ignore tqdm's "IProgress not found" warning (Jupyter without ipywidgets falls back to text bars)."""
    from tqdm import TqdmWarning

    warnings.filterwarnings("ignore", message=_MISSING_WIDGETS, category=TqdmWarning)


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(*args, **kwargs)``: a widget in Jupyter with ipywidgets, text elsewhere."""
    silence_missing_widgets()
    from tqdm.auto import tqdm

    return tqdm(*args, **kwargs)
