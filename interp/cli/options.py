"""Options shared by the commands, and the one parser of list options.

Every list option (``--shots 0,1,5``, ``--layers 0-3,10``, ``--rhos 0.9,0.5``, ``--rankings
own,random``) goes through :func:`parse_list`; every command that writes results defaults its
folder to :func:`default_out` of its model.

>>> parse_list("--layers", "0-3,10", int)
(0, 1, 2, 3, 10)
>>> parse_list("--rhos", "0.9, 0.5", float)
(0.9, 0.5)
>>> parse_list("--shots", ",", int)
Traceback (most recent call last):
...
interp.errors.InterpError: --shots ',' is empty; give a comma-separated list, e.g. 0,1,5
>>> default_out("facebook/opt-125m")
PosixPath('results/facebook--opt-125m')
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from interp.errors import InterpError
from interp.models.loading import DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL",
    "Device",
    "DeviceMap",
    "Dtype",
    "Figures",
    "Yes",
    "Model",
    "Out",
    "default_out",
    "parse_list",
    "safe_name",
]


MODEL_HELP = ("model spec: a known name (see `interp models`), a TransformerLens/Hugging Face id, a local HF directory "
              "or a .gguf file")

Model = Annotated[str, typer.Option(help=MODEL_HELP)]
Out = Annotated[Path | None, typer.Option(help="results folder (default: results/MODEL, the model spec made safe as a "
                                               "folder name)")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N or mps")]
Dtype = Annotated[str, typer.Option(help="float32, bfloat16, float16 or float64")]
DeviceMap = Annotated[str | None, typer.Option(help="passed to transformers, e.g. auto, to shard a model over GPUs "
                                                    "(--device is then ignored)")]
Yes = Annotated[bool,
                typer.Option("--yes", "-y",
                             help="go ahead with work estimated to take over an hour (asked for otherwise)")]
Figures = Annotated[bool, typer.Option(help="write HTML and PNG figures; --no-figures also removes this job's figures "
                                            "of an older run")]

_EXAMPLES = {int: "0,1,5", float: "0.9,0.5", str: "own,random"}
_RANGE = re.compile(r"(\d+)-(\d+)")


def _parse_item(option: str, text: str, part: str, kind: type) -> list:
    if kind is str:
        return [part]
    if kind is int and (match := _RANGE.fullmatch(part)):
        low, high = int(match.group(1)), int(match.group(2))
        if high < low:
            raise InterpError(f"{option} {text!r}: {part!r} is not an increasing range; use e.g. 0-3,10")
        return list(range(low, high + 1))
    try:
        return [kind(part)]
    except ValueError:
        allowed = "integers or ranges like 0-3" if kind is int else "numbers"
        message = f"{option} {text!r}: {part!r} is not one of the {allowed}; use e.g. {_EXAMPLES[kind]}"
        raise InterpError(message) from None


def parse_list(option: str, text: str, kind: type = int) -> tuple:
    """``"0-3,10"`` -> ``(0, 1, 2, 3, 10)``: a comma list of ``kind`` (int, float or str).

    Integers also take increasing ranges ``low-high`` (both ends included).  Order is kept and
    repeats dropped; empty items are skipped, and a list with none, or a bad item, raises
    :class:`InterpError` naming ``option``.
    """
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise InterpError(f"{option} {text!r} is empty; give a comma-separated list, e.g. {_EXAMPLES[kind]}")
    values: list = []
    for part in parts:
        values.extend(value for value in _parse_item(option, text, part, kind) if value not in values)
    return tuple(values)


def safe_name(spec: str) -> str:
    """A model spec as one folder name: a local path gives its last part, ``/`` becomes ``--``.

    >>> safe_name("smollm2-135m"), safe_name("EleutherAI/pythia-70m"), safe_name("models/tiny.gguf")
    ('smollm2-135m', 'EleutherAI--pythia-70m', 'tiny')
    """
    path = Path(spec).expanduser()
    looks_local = path.exists() or spec.startswith((".", "/", "~")) or path.suffix == ".gguf"
    name = path.stem if path.suffix == ".gguf" else path.name if looks_local else spec.replace("/", "--")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return name or "model"


def default_out(spec: str) -> Path:
    """``results/<safe model name>``: a run of one model never writes into another model's folder."""
    return Path("results") / safe_name(spec)
