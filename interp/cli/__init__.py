"""The ``interp`` command line: one typer app, commands grouped by topic in this package.

Each topic module defines its commands on :data:`interp.cli.main.app` and is imported here, so
registering a new command is one import line.  Heavy imports stay inside the commands so
``interp --help`` is fast.
"""

# ruff: noqa: I001  -- the import order is the order of the commands in `interp --help`

from interp.cli.main import app, main
from interp.cli import models  # noqa: F401  (each import registers its module's commands on app)
from interp.cli import induction  # noqa: F401
from interp.cli import importance  # noqa: F401
from interp.cli import prune  # noqa: F401
from interp.cli import toy  # noqa: F401
from interp.cli import output  # noqa: F401
from interp.cli import explore  # noqa: F401
from interp.cli import accuracy  # noqa: F401
from interp.cli import ablate  # noqa: F401
from interp.cli import reach  # noqa: F401  (interp memory; the scale options the commands share)

__all__ = ["app", "main"]
