"""Loading models by spec, offline: tiny, a local directory, a LoRA adapter, SmolLM2 from its GGUF package."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.loading import load, load_sampler, smollm2_dir
from infertune.models.tiny import TinyConfig, tiny_model


def test_tiny_and_local_directory_round_trip(tmp_path):
    model, tok = tiny_model(TinyConfig(seed=3))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load(str(tmp_path))
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=1)
    a = HFSampler(model, tok).sample(["12:3="], params)[0]
    b = HFSampler(loaded.model, loaded.tokenizer).sample(["12:3="], params)[0]
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert not loaded.has_chat_template


def test_unknown_model_is_refused_without_any_download(tmp_path):
    with pytest.raises(ValueError, match="nothing is downloaded"):
        load("meta-llama/Llama-3-8B")
    with pytest.raises(ValueError, match="backend"):
        load_sampler("tiny", backend="tpu")


def test_lora_adapter_is_applied(tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_model(TinyConfig(seed=3))
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    model.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(adapter_dir)
    with_adapter = load(str(base_dir), adapter=str(adapter_dir))
    plain = load(str(base_dir))
    ids = torch.tensor([tok("3479:24=")["input_ids"]])
    with torch.no_grad():
        assert not torch.allclose(with_adapter.model(ids).logits, plain.model(ids).logits)
    out = HFSampler(with_adapter.model, with_adapter.tokenizer).sample(["3479:24="], SamplingParams(n=2,
                                                                                                    max_new_tokens=5))
    assert len(out[0]) == 2


def test_vllm_absence_is_reported_cleanly():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here; the absence path cannot be exercised")
    with pytest.raises(ImportError, match="pip install 'infertune\\[vllm\\]'"):
        load_sampler("tiny", backend="vllm")
    sampler, loaded = load_sampler("tiny", backend="auto")  # no GPU: falls back to transformers
    assert isinstance(sampler, HFSampler) and loaded is not None


def test_smollm2_loads_offline_and_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = smollm2_dir()
    assert (path / "config.json").exists() and smollm2_dir() == path  # converted once, then reused
    loaded = load("smollm2")
    assert loaded.has_chat_template
    tok = loaded.tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+3? Reply with a number."}],
                                     tokenize=False, add_generation_prompt=True)
    sampler = HFSampler(loaded.model, tok, add_special_tokens=False)
    out = sampler.sample([prompt], SamplingParams(n=1, temperature=0, max_new_tokens=12))[0][0]
    assert "5" in out.text
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    reference = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                      do_sample=False)[0, ids.shape[1]:].tolist()
    assert out.token_ids == reference[: len(out.token_ids)]
