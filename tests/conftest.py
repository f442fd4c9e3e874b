"""Shared fixtures: tiny random models of the paper's architectures, and the real embedded model.

Tiny models are saved as ordinary Hugging Face directories (with a small BPE tokenizer trained
here) and loaded through :func:`interp.models.loading.load_model`, so tests exercise the same loading
path as users.  Everything heavy is session-scoped.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a network that is not there

import pytest
import torch

TINY_ARCHITECTURES = ("gpt2", "opt", "llama")


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for model tests (cpu, cuda, cuda:N)")


@pytest.fixture(scope="session")
def device(request) -> str:
    return request.config.getoption("--device")


def _train_tokenizer(directory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{index}" for index in range(300)] + ["the", "cat", "sat", "on", "mat", "and", "dog"]
    corpus = [" ".join(words[(start * 7 + step) % len(words)] for step in range(40)) for start in range(200)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<bos>", "<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    fast.save_pretrained(directory)
    return fast


def build_tiny_model(architecture: str, directory, vocab_size: int, seed: int = 0, bos=0, eos=1, pad=2):
    """Save a tiny randomly initialised model of ``architecture`` into ``directory``."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    if architecture == "gpt2":
        config = GPT2Config(n_positions=1024, n_embd=32, n_layer=2, n_head=4, **common)
        model = GPT2LMHeadModel(config)
    elif architecture == "opt":
        config = OPTConfig(max_position_embeddings=1024, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           ffn_dim=64, word_embed_proj_dim=32, **common)
        model = OPTForCausalLM(config)
    elif architecture == "llama":  # grouped-query attention: 4 query heads share 2 KV heads
        config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=1024, **common)
        model = LlamaForCausalLM(config)
    else:
        raise ValueError(architecture)
    # Random init gives near-uniform attention; scale weights up so patterns are peaked and
    # the scores have something to distinguish.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.mul_(8.0)
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    """Directories of tiny GPT-2, OPT and Llama (GQA) models with a shared BPE tokenizer."""
    root = tmp_path_factory.mktemp("tiny_models")
    directories = {}
    for architecture in TINY_ARCHITECTURES:
        directory = root / architecture
        tokenizer = _train_tokenizer(directory)
        build_tiny_model(architecture, directory, vocab_size=len(tokenizer))
        directories[architecture] = directory
    return directories


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dirs, device):
    from interp.models.loading import load_model

    return {name: load_model(str(path), device=device) for name, path in tiny_model_dirs.items()}


@pytest.fixture(params=TINY_ARCHITECTURES)
def tiny_model(request, tiny_models):
    """Each tiny architecture in turn: (bridge, record)."""
    return tiny_models[request.param]


@pytest.fixture(scope="session")
def smollm2(device):
    """The real embedded default model (SmolLM2-135M, GGUF Q4_1 dequantised)."""
    from interp.models.loading import load_model

    return load_model("smollm2-135m", device=device)


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    """A tiny task in the workbench's JSONL schema whose words exist in the tiny tokenizer."""
    import json

    path = tmp_path_factory.mktemp("task") / "succ.jsonl"
    path.write_text("".join(json.dumps({"input": f"w{i} w{i + 1}", "answer": f"w{i + 2}"}) + "\n"
                            for i in range(0, 60, 2)))
    return path


def encode_tiny_task(bridge, task_file, shots=2, items=3, choices=2):
    """The prompts of ``task_file`` with ``shots`` demonstrations, tokenised for ``bridge``."""
    from interp.tasks.evaluation import encode_prompts
    from interp.tasks.prompts import PromptConfig, build_prompts, read_task_file

    prompts = build_prompts(read_task_file(task_file), shots, PromptConfig(max_items=items, n_choices=choices))
    return encode_prompts(bridge.tokenizer, prompts)
