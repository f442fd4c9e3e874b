"""Tidy result tables and JSON metadata, written atomically.

Every result is a long-format table (one row per model x layer x head x metric, say) saved as
parquet *and* CSV, beside a JSON file of metadata (model record, protocol, seed, package
versions, device, wall time).  Files are written under a temporary name and renamed into place,
so an interrupted run never leaves a half-written table.  No pickle anywhere.

>>> import pandas as pd, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_table(pd.DataFrame({"layer": [0], "value": [1.5]}), folder / "scores")
>>> read_table(folder / "scores")["value"].tolist()
[1.5]
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from interp.errors import InterpError

if TYPE_CHECKING:  # pandas loads in read_table only, so `interp --help` (which imports this module) stays fast
    import pandas as pd

__all__ = [
    "atomic_directory",
    "atomic_write",
    "package_versions",
    "read_json",
    "read_table",
    "read_table_if_present",
    "run_metadata",
    "write_json",
    "write_table",
]

_VERSIONED_PACKAGES = ("interp", "torch", "transformer-lens", "transformers", "gguf", "numpy", "pandas", "plotly")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_directory(final: Path, write: Callable[[Path], None], replace: bool = False) -> None:
    """Call ``write(staging_directory)``, then rename the directory onto ``final``.

    With ``replace=False`` an existing ``final`` wins (another process made the same thing);
    with ``replace=True`` it is swapped out (a newer checkpoint).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        write(staging)
        if final.exists() and not replace:
            shutil.rmtree(staging)
            return
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_table(table: pd.DataFrame, stem: Path, csv: bool = True) -> None:
    """Write ``stem.parquet`` (and ``stem.csv``) atomically."""
    stem = Path(stem)
    atomic_write(stem.with_suffix(".parquet"), lambda path: table.to_parquet(path, index=False))
    if csv:
        atomic_write(stem.with_suffix(".csv"), lambda path: table.to_csv(path, index=False))


def read_table(stem: Path) -> pd.DataFrame:
    """Read ``stem.parquet`` (falling back to ``stem.csv``); a clear error if neither exists."""
    import pandas as pd

    stem = Path(stem)
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = stem.with_suffix(suffix)
        if path.exists():
            return reader(path)
    raise InterpError(f"no results table {stem}.parquet (or .csv); run the command that makes it first")


def read_table_if_present(stem: Path) -> pd.DataFrame | None:
    """Like :func:`read_table`, but None when the table has not been made."""
    stem = Path(stem)
    if not stem.with_suffix(".parquet").exists() and not stem.with_suffix(".csv").exists():
        return None
    return read_table(stem)


def write_json(data: Any, path: Path) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str)
    atomic_write(Path(path), lambda temporary: temporary.write_text(text + "\n"))


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise InterpError(f"no metadata file {path}; run the command that makes it first")
    return json.loads(path.read_text())


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def run_metadata(record: Any = None, **fields: Any) -> dict[str, Any]:
    """Metadata common to every result: the model record, package versions, and ``fields``."""
    data: dict[str, Any] = {}
    if record is not None:
        data["model"] = record.to_dict() if hasattr(record, "to_dict") else record
    data.update(fields)
    data["versions"] = package_versions()
    data["platform"] = platform.platform()
    return data
