"""The ``interp`` command line: one typer app, commands grouped by topic in this package.

Each topic module defines its commands on :data:`interp.cli.main.app` and is imported here, so
registering a new command is one import line.  Heavy imports stay inside the commands so
``interp --help`` is fast.
"""

from interp.cli.main import app, main

__all__ = ["app", "main"]
