"""Every docstring example (``>>>``) in the package runs, as einops runs its own with testmod.

Examples too expensive for the test suite (loading the real model) carry ``# doctest: +SKIP``
with the reason beside them; everything else must print what the docstring says.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import interp

# `python -m interp.cli` runs the app on import: it has no examples and is not imported here.
MODULES = sorted(info.name for info in pkgutil.walk_packages(interp.__path__, "interp.")
                 if not info.name.endswith("__main__"))


def test_every_module_is_collected():
    expected = {"interp.store", "interp.cli.options", "interp.induction.scores", "interp.pruning.components"}
    assert expected <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "\n".join(report)
