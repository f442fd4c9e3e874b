"""Where a model's weights live: device maps, memory caps and disk offload, and reading offloaded weights.

A model bigger than one device is loaded by transformers/accelerate with a *device map* (which
module goes to which GPU, to the CPU or to disk) and an optional *memory cap* per device; the
``TransformerBridge`` then runs over the dispatched model as over any other.  This module parses
the command-line forms of both, names the folder where disk-offloaded weights go, and gives the
one thing the bridge needs help with: reading weights directly (``W_O``, ``W_U`` ...) from modules
whose weights sit on disk or on the meta device between forwards.

- ``--device-map``: ``auto``, ``balanced``, ``balanced_low_0``, ``sequential`` (accelerate's
  strategies), or a JSON object (inline or a ``.json`` file) from module name to ``cpu``,
  ``disk``, ``cuda:N``, ``mps`` or a GPU index.
- ``--max-memory``: ``0=20GiB,1=20GiB,cpu=64GiB`` or the same as a JSON object.

Forwards need nothing from this module: accelerate's hooks move each layer's inputs to its
device and load offloaded weights around its own call, and the workbench's hooks move their
masks and replacement values to the device of the activation they meet.

>>> parse_device_map('{"model.layers.0": "cpu", "model.layers.1": "disk", "lm_head": 0}')
{'model.layers.0': 'cpu', 'model.layers.1': 'disk', 'lm_head': 0}
>>> parse_max_memory("0=20GiB, cpu=64GiB")
{0: '20GiB', 'cpu': '64GiB'}
>>> parse_device_map("everywhere")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
interp.errors.InterpError: device map 'everywhere': use auto, balanced, balanced_low_0, sequential, a JSON object or ...
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.errors import InterpError

if TYPE_CHECKING:
    import torch
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "DEVICE_MAP_STRATEGIES",
    "Placement",
    "check_realized_map",
    "device_label",
    "is_offloaded",
    "parse_device_map",
    "parse_max_memory",
    "outputs_to_input_device",
    "placement_summary",
    "readable_weights",
]

DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_DEVICE_PATTERN = re.compile(r"^(cpu|disk|mps|cuda(:\d+)?|\d+)$")
_SIZE_PATTERN = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)

DeviceMap = str | dict[str, "str | int"]


def _device_value(where: str, value: Any) -> str | int:
    """One device map / memory key value: a GPU index stays an int (accelerate's form)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InterpError(f"{where}: device {value!r} must be cpu, disk, mps, cuda:N or a GPU index")
    text = str(value).strip()
    if text == "meta":
        raise InterpError(f"{where}: 'meta' holds no weights; use disk to keep a module's weights off memory")
    if not _DEVICE_PATTERN.match(text):
        raise InterpError(f"{where}: device {value!r} must be cpu, disk, mps, cuda:N or a GPU index")
    return int(text) if text.isdigit() else text


def parse_device_map(text: "str | dict | None") -> DeviceMap | None:
    """``--device-map`` as accelerate takes it: a strategy name or a module -> device dict (None: no map)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, dict):
        mapping = text
    else:
        text = text.strip()
        if text in DEVICE_MAP_STRATEGIES:
            return text
        source = text
        if text.endswith(".json"):
            path = Path(text).expanduser()
            if not path.is_file():
                raise InterpError(f"device map file {text!r} does not exist")
            source = path.read_text(encoding="utf-8")
        elif not text.startswith("{"):
            raise InterpError(f"device map {text!r}: use {', '.join(DEVICE_MAP_STRATEGIES)}, a JSON object or a .json "
                              "file of module -> device")
        try:
            mapping = json.loads(source)
        except json.JSONDecodeError as error:
            raise InterpError(f"device map {text[:60]!r} is not valid JSON ({error.msg})") from None
        if not isinstance(mapping, dict) or not mapping:
            raise InterpError(f"device map {text[:60]!r} must be a non-empty JSON object of module -> device")
    return {str(module): _device_value(f"device map entry {module!r}", device) for module, device in mapping.items()}


def parse_max_memory(text: "str | dict | None") -> dict[str | int, str] | None:
    """``--max-memory`` as accelerate takes it: ``{0: "20GiB", "cpu": "64GiB"}`` (None: no cap)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, dict):
        pairs = list(text.items())
    elif text.strip().startswith("{"):
        try:
            pairs = list(json.loads(text).items())
        except (json.JSONDecodeError, AttributeError):
            raise InterpError(f"max memory {text!r} is not a JSON object of device -> size") from None
    else:
        pairs = []
        for entry in text.split(","):
            device, separator, size = entry.partition("=")
            if not separator:
                raise InterpError(f"max memory entry {entry.strip()!r}: write DEVICE=SIZE, e.g. 0=20GiB,cpu=64GiB")
            pairs.append((device.strip(), size.strip()))
    limits: dict[str | int, str] = {}
    for device, size in pairs:
        key = _device_value(f"max memory entry {device!r}", device)
        if key == "disk":
            raise InterpError("max memory entry 'disk': disk has no cap; give cpu and GPU caps, the rest goes to disk")
        if not _SIZE_PATTERN.match(str(size).strip()):
            raise InterpError(f"max memory entry {device!r}: size {size!r} must look like 20GiB, 512MB or 300KB")
        limits[key] = str(size).strip()
    return limits


@dataclass(frozen=True)
class Placement:
    """How to place a model's weights: the keyword arguments ``from_pretrained`` gets.

    >>> Placement.from_options("auto", "cpu=1GiB").device_map
    'auto'
    >>> Placement.from_options(None, None).sharded
    False
    """

    device_map: DeviceMap | None = None  # None: the whole model on one device (--device)
    max_memory: dict[str | int, str] | None = None  # None: accelerate's own estimate of free memory
    offload_folder: str | None = None  # None: a folder under the interp cache, keyed by model and map

    @classmethod
    def from_options(cls, device_map: "str | dict | None", max_memory: "str | dict | None" = None,
                     offload_folder: str | None = None) -> "Placement":
        parsed_map, limits = parse_device_map(device_map), parse_max_memory(max_memory)
        if limits is not None and parsed_map is None:
            parsed_map = "auto"  # a memory cap only means something to a map that accelerate plans
        if isinstance(parsed_map, dict) and limits is not None:
            raise InterpError("--max-memory plans a map; with an explicit JSON device map it has no effect: give one")
        return cls(parsed_map, limits, offload_folder)

    @property
    def sharded(self) -> bool:
        return self.device_map is not None

    def load_kwargs(self, source: str) -> dict[str, Any]:
        """``device_map``/``max_memory``/``offload_folder`` for ``from_pretrained`` (empty when unsharded)."""
        if not self.sharded:
            return {}
        kwargs: dict[str, Any] = {"device_map": self.device_map, "offload_folder": self._offload_folder(source)}
        if self.max_memory is not None:
            kwargs["max_memory"] = self.max_memory
        return kwargs

    def _offload_folder(self, source: str) -> str:
        if self.offload_folder is not None:
            return self.offload_folder
        from interp.store import cache_dir

        key = hashlib.sha256(json.dumps([source, self.device_map, self.max_memory], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
        return str(cache_dir() / "offload" / key)  # weights accelerate cannot read in place land here


def check_realized_map(hf_device_map: dict[str, Any] | None) -> None:
    """Refuse, in one line, a realised map that TransformerLens 4.x cannot run (GPUs mixed with cpu/disk)."""
    if not hf_device_map:
        return
    values = [str(value).lower() for value in hf_device_map.values()]
    offloaded = sorted({value for value in values if value in ("cpu", "disk")})
    gpus = sorted({value for value in values if value.isdigit() or value.startswith("cuda")})
    if offloaded and gpus:
        raise InterpError(
            f"the device map puts modules on GPU(s) {', '.join(gpus)} and on {' and '.join(offloaded)}; "
            "TransformerLens runs all-GPU maps or all-cpu/disk maps only: raise --max-memory for the GPUs, or use "
            "--device-map with cpu/disk values only"
        )


def device_label(hf_model: "torch.nn.Module") -> str:
    """Where a loaded model sits, for its record: ``cpu``, ``cuda:0``, or ``cpu+disk`` for a dispatched one."""
    hf_map = getattr(hf_model, "hf_device_map", None)
    if hf_map:
        names = {f"cuda:{value}" if isinstance(value, int) else str(value) for value in hf_map.values()}
        return "+".join(sorted(names))
    return str(next(hf_model.parameters()).device)


def _offloaded_modules(module: "torch.nn.Module") -> Iterator["torch.nn.Module"]:
    from accelerate.utils import has_offloaded_params

    return (submodule for submodule in module.modules() if has_offloaded_params(submodule))


def is_offloaded(bridge: "TransformerBridge") -> bool:
    """Whether any of the bridge's weights sit on disk or off-device between forwards."""
    return next(_offloaded_modules(bridge.original_model), None) is not None


@contextlib.contextmanager
def readable_weights(bridge: "TransformerBridge") -> Iterator[None]:
    """Materialise offloaded weights for direct reads (``bridge.W_O``, ``bridge.W_U``); a no-op otherwise.

    Accelerate swaps an offloaded module's real weights in only around that module's own forward,
    so a direct read between forwards sees an empty meta tensor.  Read inside this block and copy
    what you keep (stacking copies already): no forward may run inside it, because each module's
    forward puts its weights back on disk when it returns.  While the block runs, the offloaded
    weights occupy CPU memory (all of them; weight-based scores of a model that fits on disk only
    need as much RAM as the model's weights).
    """
    with contextlib.ExitStack() as stack:
        from accelerate.utils import align_module_device

        for module in _offloaded_modules(bridge.original_model):
            stack.enter_context(align_module_device(module))
        yield


def _real_devices(hf_model: "torch.nn.Module") -> set[str]:
    hf_map = getattr(hf_model, "hf_device_map", None) or {}
    return {str(value) for value in hf_map.values() if str(value) not in ("cpu", "disk")}


def outputs_to_input_device(bridge: "TransformerBridge") -> int:
    """On a model split over several GPUs, bring the last block's and the unembedding's outputs home.

    Accelerate moves each module's *inputs* to its device, so the final residual stream and the
    logits end on the last GPU while the tokens and every index tensor the workbench builds sit on
    the first (``bridge.cfg.device``).  Two forward hooks move those two outputs back, once per
    forward, so indexing by target positions works unchanged; they also fire in resumed runs,
    which call the blocks directly.  Returns how many hooks were added (0 on one device).
    """
    if len(_real_devices(bridge.original_model)) < 2:
        return 0
    home = bridge.cfg.device

    def move(module: Any, args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):
            return (output[0].to(home), *output[1:])
        return output.to(home)

    bridge.blocks[len(bridge.blocks) - 1].register_forward_hook(move)
    bridge.unembed.register_forward_hook(move)
    return 2


def placement_summary(bridge: "TransformerBridge") -> dict[str, Any]:
    """Where the modules went (for metadata): ``{"devices": {"cpu": 5, "disk": 3}, "offloaded": True}``."""
    hf_map = getattr(bridge.original_model, "hf_device_map", None) or {}
    counts: dict[str, int] = {}
    for value in hf_map.values():
        counts[str(value)] = counts.get(str(value), 0) + 1
    return {"devices": counts or {str(bridge.cfg.device): 1}, "offloaded": is_offloaded(bridge),
            "n_devices": int(getattr(bridge.cfg, "n_devices", 1) or 1)}
