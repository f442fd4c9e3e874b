"""Tidy result tables and JSON metadata, written atomically, into a results folder one run owns at a time.

Every result is a long-format table (one row per model x layer x head x metric, say) saved as
parquet *and* CSV, beside a JSON file of metadata (model record, protocol, seed, package
versions, device, wall time).  Files are written under a temporary name and renamed into place,
so an interrupted run never leaves a half-written table; they get the mode the umask asks for.

- :func:`results_folder` makes a run the one writer of its folder (a lock file with the holder's
  pid and host) and removes the temporary files a killed run left behind.
- :func:`cache_key` names cached work by everything that made it; :func:`key_difference` says, in
  one line, what differs between a stored key and the wanted one.
- :func:`read_table` falls back to the CSV beside a damaged parquet, and names a damaged file
  (:class:`DamagedResult`) so that a job can recompute it.

No pickle anywhere.

>>> import pandas as pd, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_table(pd.DataFrame({"layer": [0], "value": [1.5]}), folder / "scores")
>>> read_table(folder / "scores")["value"].tolist()
[1.5]
>>> cache_key({"model": "toy", "seeds": 3}) == cache_key({"seeds": 3, "model": "toy"})
True
>>> key_difference({"model": {"sha": "a"}, "shots": 1}, {"model": {"sha": "b"}, "shots": 1})
"model.sha: 'a' stored, 'b' wanted"
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.errors import InterpError

if TYPE_CHECKING:  # pandas is imported where a table is read, so loading a model's spec stays fast
    import pandas as pd

__all__ = [
    "DamagedResult",
    "LOCK_NAME",
    "atomic_directory",
    "atomic_write",
    "cache_dir",
    "cache_key",
    "clean_temporaries",
    "find_tables",
    "key_difference",
    "package_versions",
    "read_json",
    "read_json_if_intact",
    "read_table",
    "read_table_if_present",
    "results_folder",
    "run_metadata",
    "write_json",
    "write_table",
]

_VERSIONED_PACKAGES = ("interp", "torch", "transformer-lens", "transformers", "gguf", "numpy", "pandas", "plotly")
LOCK_NAME = ".interp.lock"  # in the results folder: the pid and host of the run writing it
_TEMPORARY_SUFFIX = ".tmp"  # every temporary file or folder is hidden (".name.XXXX.tmp")


class DamagedResult(InterpError):
    """A stored result that cannot be read (truncated, overwritten by something else)."""


def cache_dir() -> Path:
    """Where dequantised weights and other reusable work live (``$INTERP_CACHE``, default ``~/.cache/interp``)."""
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp"))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (another thread may be creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_error(path: Path, error: OSError) -> InterpError:
    reason = error.strerror or _first_line(error)
    return InterpError(f"cannot write {path} ({reason}); free some space or choose another --out")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)`` then rename the temporary file onto ``path``.

    The file gets the mode a plain ``open`` would give it (``0o666`` less the umask), not
    ``mkstemp``'s 0600.  A file-system failure becomes an :class:`InterpError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX)
        os.close(handle)
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, InterpError):
            raise _write_error(path, error) from None
        raise


def atomic_directory(final: Path, write: Callable[[Path], None], replace: bool = False) -> None:
    """Call ``write(staging_directory)``, then rename the directory onto ``final``: all of it appears, or none.

    With ``replace=False`` an existing ``final`` wins (another process made the same thing);
    with ``replace=True`` it is swapped out (a newer checkpoint).
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=_TEMPORARY_SUFFIX))
    except OSError as error:
        raise _write_error(final, error) from None
    try:
        write(staging)
        os.chmod(staging, 0o777 & ~_umask())
        if final.exists() and not replace:
            shutil.rmtree(staging)
            return
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, InterpError):
            raise _write_error(final, error) from None
        raise


def clean_temporaries(folder: Path) -> list[Path]:
    """Remove the hidden ``.*.tmp`` files and folders a killed writer left anywhere under ``folder``.

    Only call this while holding the folder (:func:`results_folder`): a live writer's temporaries
    look the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.rglob(f".*{_TEMPORARY_SUFFIX}"), key=lambda found: len(found.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def write_table(table: pd.DataFrame, stem: Path, csv: bool = True) -> None:
    """Write ``stem.parquet`` (and ``stem.csv``) atomically."""
    stem = Path(stem)
    atomic_write(stem.with_suffix(".parquet"), lambda path: table.to_parquet(path, index=False))
    if csv:
        atomic_write(stem.with_suffix(".csv"), lambda path: table.to_csv(path, index=False))


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def read_table(stem: Path) -> pd.DataFrame:
    """Read ``stem.parquet``, or the CSV beside it when the parquet is missing or damaged (said on stderr).

    A damaged table with no intact CSV raises :class:`DamagedResult` naming the file; neither
    file raises :class:`InterpError`.
    """
    import pandas as pd

    stem = Path(stem)
    parquet, csv = stem.with_suffix(".parquet"), stem.with_suffix(".csv")
    damage = None
    if parquet.exists():
        try:
            return pd.read_parquet(parquet)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError and others on a bad file
            damage = f"{parquet} is damaged ({_first_line(error)})"
    if csv.exists():
        try:
            table = pd.read_csv(csv)
        except Exception as error:  # noqa: BLE001 - pandas parser errors have many types
            raise DamagedResult(f"{damage + '; ' if damage else ''}{csv} is damaged ({_first_line(error)}); "
                                "delete it and run the command that makes it again") from None
        if damage:
            _note(f"{damage}; read the intact {csv.name} instead")
        return table
    if damage:
        raise DamagedResult(f"{damage} and has no CSV beside it; delete it and run the command that makes it again")
    raise InterpError(f"no results table {stem}.parquet (or .csv); run the command that makes it first")


def read_table_if_present(stem: Path) -> pd.DataFrame | None:
    """Like :func:`read_table`, but None when the table has not been made."""
    stem = Path(stem)
    if not stem.with_suffix(".parquet").exists() and not stem.with_suffix(".csv").exists():
        return None
    return read_table(stem)


def find_tables(folder: Path, name: str) -> list[Path]:
    """Stems of every ``name`` table (parquet or CSV) at or below ``folder``, shallowest first.

    A run's own table comes before a copy in a subfolder, so callers that want one table take the first.
    """
    folder = Path(folder)
    stems = {path.with_suffix("") for suffix in ("parquet", "csv") for path in folder.rglob(f"{name}.{suffix}")}
    return sorted(stems, key=lambda stem: (len(stem.parts), str(stem)))


def write_json(data: Any, path: Path) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str)
    atomic_write(Path(path), lambda temporary: temporary.write_text(text + "\n"))


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a missing or damaged file raises a one-line error naming it."""
    path = Path(path)
    if not path.exists():
        raise InterpError(f"no metadata file {path}; run the command that makes it first")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise DamagedResult(f"{path} is damaged ({_first_line(error)}); delete it and run the command that makes it "
                            "again") from None


def read_json_if_intact(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or damaged (then a job recomputes it)."""
    try:
        return read_json(path)
    except InterpError:
        return None


def cache_key(fields: Any) -> str:
    """A short stable name for ``fields`` (JSON-able; order of dict keys does not matter): 16 hex digits of SHA-256."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for name, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{name}" if prefix else str(name)))
        return flat
    return {prefix: list(value) if isinstance(value, tuple) else value}


def key_difference(stored: dict[str, Any] | None, wanted: dict[str, Any]) -> str | None:
    """None when the keys agree; else one line naming the first field that differs (``a.b: x stored, y wanted``)."""
    if stored is None:
        return "no key stored (made by an older version)"
    old = _flatten(json.loads(json.dumps(stored, default=str)))
    new = _flatten(json.loads(json.dumps(wanted, default=str)))
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            return f"{name}: {old.get(name)!r} stored, {new.get(name)!r} wanted"
    return None


# --------------------------------------------------------------------------- one writer per results folder


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _holder_text(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('started', '?')})"


def _open_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InterpError(f"results folder {folder} is a file, not a folder; choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InterpError(f"results folder {folder}: a part of the path is a file, not a folder; "
                          "choose another --out") from None
    except OSError as error:
        raise InterpError(f"cannot create results folder {folder} ({error.strerror}); choose another --out") from None


def _acquire(folder: Path) -> tuple[int, bool]:
    """Open and ``flock`` ``folder/LOCK_NAME``: (descriptor, whether the file system honours flock).

    The descriptor stays open, and locked, until released; the kernel drops the lock with the
    process, however it dies.
    """
    import fcntl

    path = folder / LOCK_NAME
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as error:
            raise InterpError(f"cannot write into results folder {folder} ({error.strerror}); "
                              "choose another --out") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                return descriptor, False  # no flock here (some network file systems): the pid decides
            holder = _read_holder(descriptor)
            os.close(descriptor)
            raise InterpError(f"results folder {folder} is in use by another run, {_holder_text(holder)}; wait for it "
                              "to finish or choose another --out") from None
        try:  # its last holder may have removed the file between our open and our lock
            if os.fstat(descriptor).st_ino == os.stat(path).st_ino:
                return descriptor, True
        except FileNotFoundError:
            pass
        os.close(descriptor)


def _read_holder(descriptor: int) -> dict[str, Any]:
    try:
        os.lseek(descriptor, 0, os.SEEK_SET)
        text = os.read(descriptor, 4096).decode(errors="replace")
        holder = json.loads(text) if text.strip() else {}
        return holder if isinstance(holder, dict) else {"pid": "?"}
    except (OSError, ValueError):
        return {"pid": "?"}  # a lock file cut short by a kill: its writer is gone


def _claim(descriptor: int, locked: bool, folder: Path, echo: Callable[[str], None]) -> None:
    """Write our pid and host into the lock file; say so when taking over from a run that died."""
    previous = _read_holder(descriptor)
    here = socket.gethostname()
    if previous and not locked:
        pid = previous.get("pid")
        alive = previous.get("host") != here or (isinstance(pid, int) and _process_alive(pid))
        if alive and pid != os.getpid():
            raise InterpError(f"results folder {folder} is in use by another run, {_holder_text(previous)}; "
                              f"wait for it to finish, or delete {folder / LOCK_NAME} if that run is gone")
    if previous:
        echo(f"taking over {folder / LOCK_NAME} from a run that stopped without releasing it "
             f"({_holder_text(previous)})")
    holder = {"pid": os.getpid(), "host": here, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(sys.argv)[:500]}
    os.ftruncate(descriptor, 0)
    os.lseek(descriptor, 0, os.SEEK_SET)
    os.write(descriptor, (json.dumps(holder) + "\n").encode())


_HELD: dict[Path, int] = {}  # folder -> depth: a job calling another job in its own folder does not lock itself out


@contextlib.contextmanager
def results_folder(folder: Path, echo: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold ``folder`` as its one writer for the ``with`` block; clean what killed runs left behind.

    The folder is created (one line if it is a file or cannot be written); a second run into a
    held folder stops with one line naming the holder; a lock left by a run that died is taken
    over, said through ``echo``.  The lock is ``flock``-based, so it goes with its process,
    whatever kills it.
    """
    folder = Path(folder)
    _open_folder(folder)
    resolved = folder.resolve()
    if resolved in _HELD:
        _HELD[resolved] += 1
        try:
            yield folder
        finally:
            _HELD[resolved] -= 1
        return
    descriptor, locked = _acquire(folder)
    try:
        _claim(descriptor, locked, folder, echo)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(descriptor)
        raise
    _HELD[resolved] = 1
    try:
        leftovers = clean_temporaries(folder)
        if leftovers:
            echo(f"removed {len(leftovers)} temporary file(s) an interrupted run left in {folder}")
        yield folder
    finally:
        del _HELD[resolved]
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, 0)
            (folder / LOCK_NAME).unlink(missing_ok=True)
        os.close(descriptor)


# --------------------------------------------------------------------------- metadata


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
