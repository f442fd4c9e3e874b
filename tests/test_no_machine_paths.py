"""No committed file holds an absolute path of the machine it was made on.

Metadata, reports and docs record a model's spec and file name (``gguf:SmolLM2-135M-Instruct.Q4_1.gguf``),
never where it sat (a home folder, an installed package's folder).  System locations every machine shares
(``/usr/bin/env`` in a shebang, ``/usr/bin/chromium`` as a fallback) are not machine paths and are allowed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# a user's or a workplace's folders, an installed package's folder, Windows and macOS homes
MACHINE_PATH = re.compile(rb"(?<![\w.~-])/(?:work|home|root|Users|tmp|mnt|scratch|content|private/var)/[\w.-]"
                          rb"|site-packages[/\\]|[A-Za-z]:\\\\?Users\\")


def _committed_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the committed files cannot be listed")
    return [REPO / name for name in listed.decode().split("\0") if name and (REPO / name).is_file()]


def test_the_pattern_catches_machine_paths_and_spares_system_ones():
    # Built from parts, so this file holds no machine path itself and needs no exemption.
    slash = "/"
    machine_paths = (f"gguf:{slash}home{slash}ada{slash}.venv{slash}lib{slash}python3.11"
                     f"{slash}site-packages{slash}x.gguf",
                     f"dir:{slash}work{slash}main{slash}data", f'"run": "{slash}tmp{slash}pytest-1{slash}run"',
                     "C:" + "\\" + "Users" + "\\" + "ada", f"{slash}Users{slash}ada{slash}results")
    for text in machine_paths:
        assert MACHINE_PATH.search(text.encode()), text
    for text in (b"#!/usr/bin/env bash", b'"/usr/bin/chromium"', b"gguf:SmolLM2-135M-Instruct.Q4_1.gguf",
                 b"results/toy-attn-2l/figures/x.png", b"docs/methods.md", b"https://example.org/home/page"):
        assert not MACHINE_PATH.search(text), text


def test_no_committed_file_holds_an_absolute_machine_path():
    checkout = str(REPO).encode()
    found = []
    for path in _committed_files():
        data = path.read_bytes()
        for match in [*MACHINE_PATH.finditer(data), *re.finditer(re.escape(checkout), data)]:
            context = data[max(0, match.start() - 40):match.end() + 40].decode(errors="replace")
            found.append(f"{path.relative_to(REPO)}: ...{context!r}...")
    assert not found, "absolute machine paths in committed files:\n" + "\n".join(found[:20])
