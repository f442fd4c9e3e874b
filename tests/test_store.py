"""The atomic store: tables and metadata written whole, files with the umask's mode, damaged files named or
replaced by the intact CSV, leftovers of a killed writer removed, one writer per results folder, keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from interp.errors import InterpError
from interp.store import (
    LOCK_NAME,
    DamagedResult,
    atomic_directory,
    atomic_write,
    cache_key,
    clean_temporaries,
    key_difference,
    read_json,
    read_json_if_intact,
    read_table,
    results_folder,
    write_json,
    write_table,
)

TABLE = pd.DataFrame({"layer": [0, 1, 1], "head": [0, 0, 1], "value": [0.25, 0.5, 0.125]})


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_take_the_umask_mode_not_mkstemps(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_table(TABLE, tmp_path / "scores")
        write_json({"a": 1}, tmp_path / "meta.json")
        atomic_directory(tmp_path / "chunk", lambda folder: write_table(TABLE, folder / "part", csv=False))
    finally:
        os.umask(previous)
    for path in (tmp_path / "scores.parquet", tmp_path / "scores.csv", tmp_path / "meta.json",
                 tmp_path / "chunk" / "part.parquet"):
        assert path.stat().st_mode & 0o777 == mode, path
    assert (tmp_path / "chunk").stat().st_mode & 0o777 == mode | ((mode & 0o444) >> 2)  # directories: x where r


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    write_json({"version": 1}, tmp_path / "meta.json")

    def half_then_fail(path):
        path.write_text("{\"version\": 2")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "meta.json", half_then_fail)
    assert read_json(tmp_path / "meta.json") == {"version": 1}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["meta.json"]


def test_a_directory_appears_whole_or_not_at_all(tmp_path):
    def first_file_then_fail(folder):
        write_table(TABLE, folder / "scores", csv=False)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_directory(tmp_path / "chunk", first_file_then_fail)
    assert list(tmp_path.iterdir()) == []


def test_file_system_failures_become_one_line_naming_the_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(InterpError, match="cannot write .*a_file/scores.parquet"):
        write_table(TABLE, blocker / "scores")
    with pytest.raises(InterpError, match="is a file, not a folder"):
        with results_folder(blocker, echo=lambda _: None):
            pass


def test_a_damaged_parquet_falls_back_to_the_intact_csv_and_says_so(tmp_path, capsys):
    write_table(TABLE, tmp_path / "scores")
    parquet = tmp_path / "scores.parquet"
    parquet.write_bytes(parquet.read_bytes()[:40])  # truncated
    table = read_table(tmp_path / "scores")
    pd.testing.assert_frame_equal(table, TABLE)
    assert "scores.parquet is damaged" in capsys.readouterr().err
    (tmp_path / "scores.csv").unlink()
    with pytest.raises(DamagedResult, match="scores.parquet is damaged .* no CSV beside it"):
        read_table(tmp_path / "scores")
    (tmp_path / "meta.json").write_text("{\"cut\": ")
    with pytest.raises(DamagedResult, match="meta.json is damaged"):
        read_json(tmp_path / "meta.json")
    assert read_json_if_intact(tmp_path / "meta.json") is None and read_json_if_intact(tmp_path / "absent.json") is None


def test_clean_temporaries_removes_only_the_hidden_leftovers(tmp_path):
    (tmp_path / "figures").mkdir()
    leftovers = [tmp_path / ".scores.parquet.x1y2.tmp", tmp_path / "figures" / ".heatmap.png.abcd.tmp"]
    for path in leftovers:
        path.write_text("half")
    staging = tmp_path / "cache" / ".seeds-000000-000004.q9.tmp"
    staging.mkdir(parents=True)
    (staging / "per_seed.parquet").write_text("half")
    kept = [tmp_path / "scores.parquet", tmp_path / ".gitignore", tmp_path / "figures" / "heatmap.png"]
    for path in kept:
        path.write_text("real")
    removed = clean_temporaries(tmp_path)
    assert set(removed) == {*leftovers, staging}
    assert all(path.exists() for path in kept) and not any(path.exists() for path in [*leftovers, staging])


def test_cache_keys_ignore_order_and_differences_are_named():
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert key_difference({"a": 1, "m": {"x": "p"}}, {"a": 1, "m": {"x": "p"}}) is None
    assert key_difference({"a": 1, "m": {"x": "p"}}, {"a": 1, "m": {"x": "q"}}) == "m.x: 'p' stored, 'q' wanted"
    assert key_difference(None, {"a": 1}).startswith("no key stored")


# --------------------------------------------------------------------------- one writer per results folder

_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from interp.store import results_folder
    with results_folder(Path(sys.argv[1]), echo=lambda _: None):
        Path(sys.argv[2]).write_text("held")
        time.sleep(60)
""")


def _hold(folder, ready):
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), str(ready)])
    for _ in range(600):
        if ready.exists():
            return process
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the holder process never took the lock")


def test_a_second_run_into_a_held_folder_stops_with_one_line(tmp_path):
    folder = tmp_path / "results"
    holder = _hold(folder, tmp_path / "ready")
    try:
        holding = json.loads((folder / LOCK_NAME).read_text())
        assert holding["pid"] == holder.pid and holding["host"]
        with pytest.raises(InterpError, match=f"in use by another run, pid {holder.pid} on "):
            with results_folder(folder, echo=lambda _: None):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_is_taken_over_and_said(tmp_path):
    folder = tmp_path / "results"
    holder = _hold(folder, tmp_path / "ready")
    holder.send_signal(signal.SIGKILL)  # no finally, no cleanup: the lock file stays behind
    holder.wait()
    assert (folder / LOCK_NAME).exists()
    said = []
    with results_folder(folder, echo=said.append):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert len(said) == 1 and f"pid {holder.pid}" in said[0] and "taking over" in said[0]
    assert not (folder / LOCK_NAME).exists()  # released
    with results_folder(folder, echo=said.append):  # and free again, silently
        pass
    assert len(said) == 1


def test_holding_a_folder_cleans_what_a_killed_writer_left(tmp_path):
    (tmp_path / "figures").mkdir()
    leftover = tmp_path / "figures" / ".prefix_matching_mean.png.k3j2.tmp"
    leftover.write_text("half an image")
    said = []
    with results_folder(tmp_path, echo=said.append):
        pass
    assert not leftover.exists() and any("temporary file" in line for line in said)
