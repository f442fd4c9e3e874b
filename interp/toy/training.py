"""Train small attention-only transformers on CPU and watch induction heads form.

The model is a stock Hugging Face decoder whose MLP weights are zeroed and frozen
(``requires_grad=False``): the MLP of zeros adds exactly zero to the residual stream, so the
network is attention-only, as in Elhage et al. (2021) and Olsson et al. (2022).  Keeping a stock
class (instead of a custom module) means a trained model is an ordinary Hugging Face directory
that :func:`interp.models.loading.load_model` opens like any other model.

Positions (``positions``): by default rotary embeddings (a ``LlamaForCausalLM``).  Rotary
positions enter only the query-key product, never the residual stream: a previous-token head is
one fixed rotation whatever the position, and the residual stream is left to token identities.
On the shipped recipe the 2-layer rotary model formed its induction head between steps 861 and
1,218 (about 3 minutes on one CPU core), while GPT-2-class models with learned positions
(``positions="sinusoidal"`` or ``"learned"``) stayed on the plateau for 2,000-4,000 steps in
every run tried (see ``interp/data/models/toy-attn-2l/TRAINING.md``).

Training data is the King James Bible shipped in ``interp/data/corpus/`` (public domain; see its
README), tokenized with a byte-level BPE built from the same text, with an optional share of
synthetic rows of random tokens (``repeat_layout``):

- ``"periodic"``: a random prefix shorter than the period, then a random chunk repeated to the
  end of the row, like Olsson's test sequences but with a period drawn per row (``repeat_length``)
  and a random phase.  Because the period and phase change from row to row, no fixed offset
  predicts the repeats: only "find the earlier occurrence of this token, copy the one after it"
  does, i.e. an induction head.  (With one fixed period a model with learned positions can
  instead copy from a fixed distance, which predicts just as well and is not an induction head.)
- ``"scattered"``: text with ``repeat_copies`` copies of a random chunk pasted at random places.

Checkpoints are written at log-spaced steps as HF directories ``RUN/checkpoints/step_000128/``;
the latest one also holds the optimizer and sampler state (safetensors + JSON, no pickle), so
running the same command again resumes where it stopped.

>>> config = ToyConfig(n_layers=2, steps=300)
>>> checkpoint_steps(300, per_octave=1)
[0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
>>> ToyConfig(n_layers=5)
Traceback (most recent call last):
...
interp.errors.InterpError: unknown n_layers 5; choose one of: 1, 2, 3
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.data import data_path
from interp.errors import InterpError, check_choice
from interp.store import atomic_directory

if TYPE_CHECKING:  # torch and transformers load inside the functions so `interp --help` is fast
    from torch import Tensor
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = [
    "PRESETS",
    "ToyConfig",
    "build_model",
    "checkpoint_steps",
    "default_corpus",
    "encode_text",
    "export_model",
    "latest_checkpoint",
    "list_checkpoints",
    "read_corpus",
    "train",
    "train_tokenizer",
]

SPECIAL_TOKENS = ("<bos>", "<eos>", "<pad>")  # ids 0, 1, 2: the same layout as the test fixtures
LAYER_COUNTS = (1, 2, 3)
_ARCHITECTURE = {"rotary": "Llama-class model with rotary positions",
                 "sinusoidal": "GPT-2 with learned positions (sinusoidal start)",
                 "learned": "GPT-2 with learned positions"}
POSITIONS = tuple(_ARCHITECTURE)  # rotary, sinusoidal, learned


def default_corpus() -> Path:
    """The shipped corpus: the King James Bible, one chapter a line, gzipped (see its README)."""
    return data_path("corpus", "kjv.txt.gz")


@dataclass(frozen=True)
class ToyConfig:
    """What to train; every default is what the shipped models used unless TRAINING.md says otherwise."""

    n_layers: int = 2  # 1 layer cannot make an induction head: it needs a previous-token head before it
    d_model: int = 64  # enough for a 2,048-token vocabulary; small enough for one CPU core
    n_heads: int = 4  # d_head = 16; a handful of heads keeps the head tables readable
    n_ctx: int = 128  # > 101 tokens, the length of Olsson's prefix-matching sequences
    vocab_size: int = 2048  # a small byte-level BPE, incl. <bos>, <eos>, <pad>
    # the shipped 2-layer run formed its induction head between steps 861 and 1,218; the rest sharpens it
    steps: int = 2000
    batch_size: int = 32  # rows of n_ctx tokens per step
    learning_rate: float = 2e-3  # AdamW peak; small models tolerate a large rate
    weight_decay: float = 0.0  # none: with a few thousand steps there is nothing to regularise
    warmup_steps: int = 50  # linear warm-up, then cosine decay to 10% of the rate
    positions: str = "rotary"  # "rotary" (Llama class), or GPT-2 learned positions: "sinusoidal" (init) / "learned"
    repeat_fraction: float = 0.5  # share of rows made of repeated random tokens (the rest is text)
    # "periodic": one chunk repeated to the row's end; "scattered": copies pasted into text
    repeat_layout: str = "periodic"
    repeat_length: tuple[int, int] = (5, 30)  # chunk lengths (periods) drawn uniformly from this range
    repeat_copies: int = 2  # "scattered" only: copies of the chunk, each at a random place after the previous one
    repeat_tokens: str = "middle"  # chunk tokens: "middle": the scorer's pool (no most/least frequent 4%), or "all"
    # share of positions outside later copies whose loss counts (< 1: cheaper, repeat-weighted)
    text_loss_fraction: float = 1.0
    checkpoints_per_octave: int = 4  # log-spaced checkpoints: steps 2^(k/4), plus 0 and the last; resolves the jump
    seed: int = 0  # seeds the weights, the batches and the repeats
    corpus: str | None = None  # a text file (.txt or .txt.gz); None: the shipped King James Bible
    held_out_fraction: float = 0.05  # the corpus tail kept out of training, for the in-context-learning score

    def __post_init__(self) -> None:
        check_choice("n_layers", self.n_layers, LAYER_COUNTS)
        if not isinstance(self.steps, int) or self.steps < 1:
            raise InterpError(f"steps must be a positive integer, got {self.steps!r}")
        for name in ("d_model", "n_heads", "n_ctx", "batch_size", "checkpoints_per_octave"):
            if getattr(self, name) < 1:
                raise InterpError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise InterpError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.vocab_size < 300:
            raise InterpError(f"vocab_size {self.vocab_size} is too small; byte-level BPE needs at least 300")
        if not 0 <= self.repeat_fraction <= 1:
            raise InterpError(f"repeat_fraction must be in [0, 1], got {self.repeat_fraction!r}")
        low, high = self.repeat_length
        if not isinstance(self.repeat_copies, int) or self.repeat_copies < 2:
            raise InterpError(f"repeat_copies must be an integer >= 2, got {self.repeat_copies!r}")
        copies = self.repeat_copies if self.repeat_layout == "scattered" else 2
        if not 2 <= low <= high or copies * high + 2 > self.n_ctx:
            raise InterpError(f"repeat_length {self.repeat_length} must satisfy 2 <= low <= high and fit "
                              f"{copies} times in n_ctx {self.n_ctx}")
        check_choice("repeat_tokens", self.repeat_tokens, ("all", "middle"))
        if not 0 < self.text_loss_fraction <= 1:
            raise InterpError(f"text_loss_fraction must be in (0, 1], got {self.text_loss_fraction!r}")
        check_choice("positions", self.positions, POSITIONS)
        check_choice("repeat_layout", self.repeat_layout, ("periodic", "scattered"))
        if not 0 < self.held_out_fraction < 0.5:
            raise InterpError(f"held_out_fraction must be in (0, 0.5), got {self.held_out_fraction!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, ToyConfig] = {
    "toy-attn-1l": ToyConfig(n_layers=1),
    "toy-attn-2l": ToyConfig(n_layers=2),
    "toy-attn-3l": ToyConfig(n_layers=3),
    # For tests and smoke runs: seconds, not minutes.
    "tiny": ToyConfig(n_layers=2, d_model=32, n_heads=2, n_ctx=128, vocab_size=512, steps=8, batch_size=4),
    "tiny-gpt2": ToyConfig(n_layers=2, d_model=32, n_heads=2, n_ctx=128, vocab_size=512, steps=8, batch_size=4,
                           positions="sinusoidal", repeat_layout="scattered"),
}


def checkpoint_steps(steps: int, per_octave: int = 2) -> list[int]:
    """Step 0, the log-spaced steps round(2^(k / per_octave)) below ``steps``, and ``steps``."""
    chosen = {0, steps}
    for index in range(int(per_octave * math.log2(max(steps, 1))) + 1):
        step = round(2 ** (index / per_octave))
        if step < steps:
            chosen.add(step)
    return sorted(chosen)


def read_corpus(path: str | Path | None = None) -> list[str]:
    """The corpus as a list of documents (non-empty lines); ``.gz`` files are read transparently."""
    path = Path(path) if path else default_corpus()
    if not path.is_file():
        raise InterpError(f"corpus {str(path)!r} does not exist; pass a .txt or .txt.gz file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        documents = [line.strip() for line in handle if line.strip()]
    if not documents:
        raise InterpError(f"corpus {str(path)!r} has no text")
    return documents


def train_tokenizer(documents: list[str], vocab_size: int) -> "PreTrainedTokenizerFast":
    """A byte-level BPE (the GPT-2 scheme) of ``vocab_size`` tokens with ``<bos>`` as id 0.

    Byte-level means any text encodes, so the in-context-learning score can use any text.
    No post-processor adds BOS: like the other models, callers prepend it themselves.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(documents, trainer)
    bos, eos, pad = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad)


def encode_text(tokenizer: "PreTrainedTokenizerFast", documents: list[str]) -> "Tensor":
    """All documents as one stream of token ids, each document followed by ``<eos>``."""
    import torch

    stream: list[int] = []
    for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(tokenizer.eos_token_id)
    return torch.tensor(stream, dtype=torch.long)


def build_model(config: ToyConfig, tokenizer: "PreTrainedTokenizerFast") -> "PreTrainedModel":
    """A freshly initialised attention-only decoder: MLPs zeroed and frozen, embeddings tied.

    ``positions="rotary"`` gives a ``LlamaForCausalLM`` (rotary positions in queries and keys
    only), otherwise a ``GPT2LMHeadModel`` with learned positions.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    if config.positions == "rotary":
        hf_config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=config.d_model, num_hidden_layers=config.n_layers,
            num_attention_heads=config.n_heads, num_key_value_heads=config.n_heads,  # no GQA: one key per head
            intermediate_size=4,  # the MLP must exist in Llama; it is all zeros, so keep it tiny
            max_position_embeddings=config.n_ctx, rope_theta=10000.0, tie_word_embeddings=True,
            architectures=["LlamaForCausalLM"], **special,
        )
        model = LlamaForCausalLM(hf_config)
    else:
        hf_config = GPT2Config(
            vocab_size=len(tokenizer), n_positions=config.n_ctx, n_embd=config.d_model, n_layer=config.n_layers,
            n_head=config.n_heads, n_inner=4,  # zero MLP, kept tiny
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # small models on plenty of data: no dropout
            architectures=["GPT2LMHeadModel"], **special,
        )
        model = GPT2LMHeadModel(hf_config)
        if config.positions == "sinusoidal":
            # Sinusoids (Vaswani et al. 2017, sec. 3.5) make any fixed offset a rotation, so a
            # previous-token head forms earlier than from random positions. Scaled to the token
            # embeddings' std.
            with torch.no_grad():
                table = _sinusoids(config.n_ctx, config.d_model) * hf_config.initializer_range / 0.7071
                model.transformer.wpe.weight.copy_(table)
    _freeze_mlps(model)
    return model


def _sinusoids(length: int, width: int) -> "Tensor":
    import torch

    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float32) / width)[None, :]
    table = torch.zeros(length, width)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return table  # (position, d_model), entries of std 1/sqrt(2)


def _freeze_mlps(model: "PreTrainedModel") -> None:
    import torch

    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(".mlp"):  # GPT-2's transformer.h.N.mlp and Llama's model.layers.N.mlp
                for parameter in module.parameters():
                    parameter.zero_()
                    parameter.requires_grad_(False)


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, directory)`` of every complete checkpoint of a run, by step."""
    folder = Path(run_dir) / "checkpoints"
    found = []
    for directory in sorted(folder.glob("step_*")) if folder.is_dir() else []:
        if (directory / "model.safetensors").exists() and directory.name[5:].isdigit():
            found.append((int(directory.name[5:]), directory))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _sample_batch(stream: "Tensor", config: ToyConfig, vocab: "Tensor", bos: int, generator) -> tuple["Tensor",
                                                                                                      "Tensor"]:
    """``batch_size`` rows of ``<bos>`` + tokens: a random window of text or repeated random tokens.

    A ``repeat_fraction`` share of rows holds repeated random tokens (``repeat_layout``).  Also
    returns a mask of the positions inside the second and later copies (the induction targets).
    """
    import torch

    length = config.n_ctx - 1
    starts = torch.randint(0, len(stream) - length, (config.batch_size,), generator=generator)
    offsets = torch.arange(length)
    text = stream[starts[:, None] + offsets[None, :]]  # (batch, position)
    rows = torch.cat([torch.full((config.batch_size, 1), bos, dtype=torch.long), text], dim=1)
    later_copies = torch.zeros_like(rows, dtype=torch.bool)
    repeated = torch.nonzero(torch.rand(config.batch_size, generator=generator) < config.repeat_fraction).flatten()
    low, high = config.repeat_length
    if config.repeat_layout == "periodic" and len(repeated):
        count = len(repeated)
        period = torch.randint(low, high + 1, (count, 1), generator=generator)
        phase = (torch.rand(count, 1, generator=generator) * period).long()  # prefix length in [0, period)
        chunk = vocab[torch.randint(0, len(vocab), (count, high), generator=generator)]
        prefix = vocab[torch.randint(0, len(vocab), (count, length), generator=generator)]
        index = offsets[None, :]
        in_chunk = torch.remainder(index - phase, period)  # chunk position each token repeats
        rows[repeated, 1:] = torch.where(index < phase, prefix, chunk.gather(1, in_chunk))
        later_copies[repeated, 1:] = index >= phase + period
    elif config.repeat_layout == "scattered":
        for row in repeated.tolist():
            size = int(torch.randint(low, high + 1, (1,), generator=generator))
            chunk = vocab[torch.randint(0, len(vocab), (size,), generator=generator)]
            start = 1
            for copy in range(config.repeat_copies):  # each copy at a random place that leaves room for the rest
                left = config.repeat_copies - copy
                start = int(torch.randint(start, config.n_ctx - left * size + 1, (1,), generator=generator))
                rows[row, start:start + size] = chunk
                later_copies[row, start:start + size] = copy > 0
                start += size
    return rows, later_copies


def _loss(model, rows: "Tensor", later_copies: "Tensor", config: ToyConfig, generator) -> "Tensor":
    """Next-token loss; with ``text_loss_fraction < 1`` only on later copies and a random share of the rest."""
    import torch

    if config.text_loss_fraction >= 1:
        return model(input_ids=rows, labels=rows).loss
    hidden = model.base_model(input_ids=rows).last_hidden_state[:, :-1]
    targets, counted = rows[:, 1:], later_copies[:, 1:]
    counted = counted | (torch.rand(counted.shape, generator=generator) < config.text_loss_fraction)
    return torch.nn.functional.cross_entropy(model.get_output_embeddings()(hidden[counted]), targets[counted])


def _learning_rate(config: ToyConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _save_checkpoint(directory: Path, model, tokenizer, optimizer, generator, step: int, losses: list) -> None:
    """An HF model directory, plus optimizer/sampler state for resuming (safetensors + JSON)."""
    import torch
    from safetensors.torch import save_file
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per run (ours), not one per checkpoint shard
    tensors = {"generator_state": generator.get_state()}
    state = optimizer.state_dict()
    for index, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value).clone()

    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        save_file(tensors, str(staging / "training_state.safetensors"))
        (staging / "training_state.json").write_text(json.dumps({"step": step, "losses": losses}) + "\n")

    atomic_directory(directory, write, replace=True)


def _restore(directory: Path, optimizer, generator) -> tuple[int, list]:
    from safetensors.torch import load_file

    tensors = load_file(str(directory / "training_state.safetensors"))
    generator.set_state(tensors.pop("generator_state"))
    state = optimizer.state_dict()
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        slots.setdefault(int(index), {})[name] = value
    state["state"] = slots
    optimizer.load_state_dict(state)
    saved = json.loads((directory / "training_state.json").read_text())
    return int(saved["step"]), [tuple(pair) for pair in saved["losses"]]


def _prune_resume_state(run_dir: Path, keep: Path) -> None:
    # Only the latest checkpoint needs optimizer moments; the rest stay plain model directories.
    for _, directory in list_checkpoints(run_dir):
        if directory != keep:
            (directory / "training_state.safetensors").unlink(missing_ok=True)


def _prepare_run(config: ToyConfig, run_dir: Path):
    """The run's tokenizer and token streams, made once and reused when resuming."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import PreTrainedTokenizerFast

    saved_config = run_dir / "config.json"
    if saved_config.exists():
        previous, wanted = json.loads(saved_config.read_text()), json.loads(json.dumps(config.to_dict()))
        extending = wanted["steps"] > previous["steps"] and {**previous, "steps": wanted["steps"]} == wanted
        if previous != wanted and not extending:
            raise InterpError(f"run {str(run_dir)!r} was started with a different configuration; use a new --run "
                              "folder (only --steps may grow, to extend a run)")
        if extending:  # the cosine schedule is re-spread over the new total from the current step on
            saved_config.write_text(json.dumps(wanted, indent=2) + "\n")
    tokenizer_dir, streams = run_dir / "tokenizer", run_dir / "tokens.safetensors"
    if (tokenizer_dir / "tokenizer.json").exists() and streams.exists():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
        tensors = load_file(str(streams))
        return tokenizer, tensors["train"], tensors["held_out"]
    documents = read_corpus(config.corpus)
    split = max(1, int(len(documents) * (1 - config.held_out_fraction)))
    tokenizer = train_tokenizer(documents[:split], config.vocab_size)
    train_stream, held_out = encode_text(tokenizer, documents[:split]), encode_text(tokenizer, documents[split:])
    if len(train_stream) <= config.n_ctx:
        raise InterpError(f"corpus has {len(train_stream)} training tokens, fewer than n_ctx {config.n_ctx}")
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(tokenizer_dir)
    save_file({"train": train_stream, "held_out": held_out}, str(streams))
    saved_config.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return tokenizer, train_stream, torch.as_tensor(held_out)


def _model_to_train(config: ToyConfig, tokenizer, resume: tuple[int, Path] | None):
    """A fresh model, or the one of checkpoint ``resume`` (which must hold its training state)."""
    if resume is None:
        return build_model(config, tokenizer)
    from transformers import AutoModelForCausalLM

    if not (resume[1] / "training_state.safetensors").exists():
        raise InterpError(f"checkpoint {resume[1]} has no training state to resume from; use a new --run folder")
    model = AutoModelForCausalLM.from_pretrained(resume[1])
    _freeze_mlps(model)  # already zero; freezing is not saved in the weights
    return model


def _repeat_vocabulary(config: ToyConfig, tokenizer):
    """The token ids the repeated chunks are drawn from."""
    import torch

    if config.repeat_tokens == "middle":  # the tokens the prefix-matching score draws from
        from interp.induction.sequences import token_pool

        return token_pool(tokenizer)[0]
    special = set(tokenizer.all_special_ids)
    return torch.tensor([index for index in range(len(tokenizer)) if index not in special])


def _checkpoint_and_losses(run_dir: Path, model, tokenizer, optimizer, generator, step: int,
                           losses: list[tuple[int, float]]) -> None:
    """Save checkpoint ``step`` (dropping older resume state) and rewrite the loss table."""
    import pandas as pd

    from interp.store import write_table

    directory = run_dir / "checkpoints" / f"step_{step:06d}"
    _save_checkpoint(directory, model, tokenizer, optimizer, generator, step, losses)
    _prune_resume_state(run_dir, directory)
    write_table(pd.DataFrame(losses, columns=["step", "loss"]), run_dir / "train_loss")


def _write_train_metadata(run_dir: Path, config: ToyConfig, schedule, elapsed: float) -> None:
    """train.json, its training seconds summed over every resumed session."""
    import torch

    from interp.store import run_metadata, write_json

    meta_path = run_dir / "train.json"
    previous = json.loads(meta_path.read_text()).get("train_seconds", 0.0) if meta_path.exists() else 0.0
    write_json(run_metadata(config=config.to_dict(), steps=config.steps, train_seconds=previous + elapsed,
                            threads=torch.get_num_threads(), checkpoints=schedule), meta_path)


def train(config: ToyConfig, run_dir: str | Path, *, progress: bool = True, threads: int | None = None) -> Path:
    """Train (or resume) a run in ``run_dir``; return the final checkpoint directory.

    >>> final = train(PRESETS["tiny"], tempfile.mkdtemp(), progress=False)  # doctest: +SKIP
    """
    import torch
    from tqdm.auto import tqdm

    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    tokenizer, stream, _ = _prepare_run(config, run_dir)
    resume = latest_checkpoint(run_dir)
    model = _model_to_train(config, tokenizer, resume)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(config.seed)
    vocab = _repeat_vocabulary(config, tokenizer)
    schedule = checkpoint_steps(config.steps, config.checkpoints_per_octave)
    step, losses = 0, []
    if resume is not None:
        step, losses = _restore(resume[1], optimizer, generator)
    elif 0 in schedule:
        _save_checkpoint(run_dir / "checkpoints" / "step_000000", model, tokenizer, optimizer, generator, 0, losses)
    model.train()
    started = time.perf_counter()
    bar = tqdm(total=config.steps, initial=step, desc=f"train {config.n_layers}L", disable=not progress, unit="step")
    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step)
        rows, later_copies = _sample_batch(stream, config, vocab, tokenizer.bos_token_id, generator)
        loss = _loss(model, rows, later_copies, config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        step += 1
        losses.append((step, float(loss.detach())))
        bar.set_postfix(loss=f"{losses[-1][1]:.3f}")
        bar.update(1)
        if step in schedule:
            _checkpoint_and_losses(run_dir, model, tokenizer, optimizer, generator, step, losses)
    bar.close()
    final = latest_checkpoint(run_dir)
    assert final is not None and final[0] == config.steps
    _write_train_metadata(run_dir, config, schedule, time.perf_counter() - started)
    return final[1]


def export_model(run_dir: str | Path, target: str | Path, command: str) -> Path:
    """Copy a run's final checkpoint to ``target`` as a plain HF directory with a TRAINING.md."""
    run_dir, target = Path(run_dir), Path(target)
    final = latest_checkpoint(run_dir)
    if final is None:
        raise InterpError(f"run {str(run_dir)!r} has no checkpoints; train it first")
    target.mkdir(parents=True, exist_ok=True)
    for path in final[1].iterdir():
        if not path.name.startswith("training_state"):
            shutil.copy2(path, target / path.name)
    meta = json.loads((run_dir / "train.json").read_text()) if (run_dir / "train.json").exists() else {}
    config = json.loads((run_dir / "config.json").read_text())
    lines = [
        f"# {target.name}", "",
        f"Attention-only {_ARCHITECTURE[config.get('positions', 'sinusoidal')]} (MLP weights zeroed and frozen) "
        "trained by `interp train`.", "",
        "Made with:", "", "```", command, "```", "",
        f"Seed {config['seed']}, {final[0]} steps, {meta.get('train_seconds', float('nan')):.0f} s on "
        f"{meta.get('threads', '?')} CPU thread(s); torch {meta.get('versions', {}).get('torch', '?')}.", "",
        "Configuration:", "", "```json", json.dumps(config, indent=2), "```", "",
        "Corpus: interp/data/corpus/kjv.txt.gz (King James Bible, public domain; see interp/data/corpus/README.md).",
             "",
    ]
    (target / "TRAINING.md").write_text("\n".join(lines))
    return target
