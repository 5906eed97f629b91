"""The sampler's own decoding step for Llama-family models: the same logits as the model's forward pass, on every
form of the model it accepts, and the forward pass for everything it refuses."""

from __future__ import annotations

import pytest
import torch

from infertune.models import llama_step
from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler, _SharedPrefixDecoder
from infertune.models.shared_prefix import partial_attention
from infertune.models.tiny import char_tokenizer, tiny_model


def _llama(seed: int, **config):
    """A tiny Llama with grouped-query attention (6 heads, 2 KV heads), optionally with biases."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = char_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=96, intermediate_size=160,
                                         num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **config))
    with torch.no_grad():  # transformers initialises biases to 0 and norm weights to 1, which would hide their loss
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.1)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
    return model.eval(), tok


def _steps(model, tok, prompts, n, steps, own, drop_after=None):
    """Logits of the prompt pass and of ``steps`` decoding steps fed fixed tokens, rows dropped after a step."""
    ids = [tok(p)["input_ids"] for p in prompts]
    width = max(len(i) for i in ids)
    input_ids = torch.full((len(ids), width), tok.pad_token_id)
    valid = torch.zeros((len(ids), width), dtype=torch.bool)
    for b, row in enumerate(ids):
        input_ids[b, width - len(row):], valid[b, width - len(row):] = torch.tensor(row), True
    decoder = _SharedPrefixDecoder(model, n, steps, own_step=own)
    out = []
    with torch.inference_mode():
        out.append(decoder.prefill(input_ids, valid))
        positions = torch.tensor([len(i) for i in ids]).repeat_interleave(n)
        tokens = torch.arange(positions.numel()) % 50 + 5
        for step in range(steps):
            if step == drop_after:
                keep = torch.tensor([r for r in range(tokens.numel()) if r % 3 != 1])
                decoder.keep_rows(keep)
                tokens, positions = tokens[keep], positions[keep]
            out.append(decoder.step(tokens, positions))
            tokens, positions = (tokens * 7 + step) % 60 + 3, positions + 1
    return out


@pytest.mark.parametrize("config", [{}, {"attention_bias": True, "mlp_bias": True}, {"tie_word_embeddings": True},
                                    {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, {"head_dim": 24},
                                    {"hidden_act": "gelu"}])
def test_own_step_gives_the_forward_pass_logits(config):
    """Grouped-query attention, padded prompts of different lengths, rows dropped mid-way, biases, norm weights,
    tied head, scaled rope, a head size other than hidden / heads, another activation: every step's logits equal the
    forward pass's to 1e-5."""
    model, tok = _llama(0, **config)
    assert llama_step.unsupported(model) is None
    prompts = ["12+345=", "a longer prompt than the first: ", "x"]
    own = _steps(model, tok, prompts, n=4, steps=6, own=True, drop_after=3)
    ref = _steps(model, tok, prompts, n=4, steps=6, own=False, drop_after=3)
    for a, b in zip(own, ref):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) < 1e-5


def test_the_sampler_uses_its_own_step_and_draws_the_forward_pass_samples():
    model, tok = tiny_model()
    auto, forward = HFSampler(model, tok), HFSampler(model, tok, step="forward")
    assert auto.step == "llama" and auto.step_note is None
    assert forward.step == "forward" and "asked" in forward.step_note
    params = SamplingParams(n=6, temperature=0.9, max_new_tokens=20, seed=2, top_p=0.95)
    prompts = ["3+4=", "12*3-1="]
    for a, b in zip(auto.sample(prompts, params), forward.sample(prompts, params)):
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        for x, y in zip(a, b):
            assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)
    with pytest.raises(ValueError, match="step must be"):
        HFSampler(model, tok, step="fast")


def test_weights_changed_between_calls_are_seen():
    """The step reads the model's weights every time: an update between sampling calls is used at once."""
    model, tok = tiny_model()
    auto, forward = HFSampler(model, tok), HFSampler(model, tok, step="forward")
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=10, seed=1)
    before = auto.sample(["7+8="], params)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    after, reference = auto.sample(["7+8="], params), forward.sample(["7+8="], params)
    assert [c.token_ids for c in after[0]] == [c.token_ids for c in reference[0]]
    assert [c.logprobs for c in after[0]] != [c.logprobs for c in before[0]]


def test_wide_steps_use_the_forward_pass(monkeypatch):
    """Above THIN_ROWS rows a step goes through the model's forward pass (many-row products favour it)."""
    model, tok = tiny_model()
    calls = []
    real = llama_step.decode_step
    monkeypatch.setattr(llama_step, "decode_step", lambda *a: calls.append(a[1].shape[0]) or real(*a))
    sampler = HFSampler(model, tok)
    sampler.sample(["1+1="], SamplingParams(n=llama_step.THIN_ROWS + 1, temperature=1.0, max_new_tokens=3))
    assert calls == []
    sampler.sample(["1+1="], SamplingParams(n=llama_step.THIN_ROWS, temperature=1.0, max_new_tokens=3))
    assert calls and set(calls) == {llama_step.THIN_ROWS}


def test_what_the_own_step_refuses_goes_through_the_forward_pass():
    from peft import LoraConfig, get_peft_model
    from transformers import MistralConfig, MistralForCausalLM

    model, tok = tiny_model()
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert "wrapped" in llama_step.unsupported(lora)
    assert "plain torch.nn.Linear" in llama_step.unsupported(lora.get_base_model())
    sampler = HFSampler(lora, tok)
    assert sampler.attention == "shared" and sampler.step == "forward" and "wrapped" in sampler.step_note
    mistral = MistralForCausalLM(MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                               sliding_window=None))
    assert "mistral" in llama_step.unsupported(mistral)
    copied = HFSampler(model, tok, attention="copy")
    assert copied.step == "forward" and "copy" in copied.step_note


@pytest.mark.parametrize("strided", ["query", "key", "value", "expanded key"])
def test_partial_attention_is_exact_for_inputs_with_a_strided_last_dimension(strided):
    """The fused CPU kernel assumes a contiguous last dimension (public SDPA checks this before choosing it; we call
    it directly): partial_attention copies other inputs, transposed or expanded views, and gives the same result."""
    g = torch.Generator().manual_seed(0)
    parts = {"query": torch.randn(4, 3, 2, 16, generator=g), "key": torch.randn(4, 3, 7, 16, generator=g),
             "value": torch.randn(4, 3, 7, 16, generator=g)}
    if strided == "expanded key":  # stride 0 along the last dimension
        parts["key"] = torch.randn(4, 3, 7, 1, generator=g).expand(4, 3, 7, 16)
        name = "key"
    else:  # same values, strides (..., 1, D)
        name = strided
        parts[name] = parts[name].transpose(-1, -2).contiguous().transpose(-1, -2)
    assert parts[name].stride(-1) != 1
    contiguous = {k: v.contiguous() for k, v in parts.items()}
    expected = partial_attention(*contiguous.values(), None, 0.25, fused=True)
    reference = partial_attention(*contiguous.values(), None, 0.25, fused=False)  # matmuls and a softmax
    assert torch.allclose(expected[0], reference[0], atol=1e-5)
    got = partial_attention(*parts.values(), None, 0.25, fused=True)
    assert torch.allclose(got[0], expected[0], atol=1e-6) and torch.allclose(got[1], expected[1], atol=1e-6)


def _own_step_calls(monkeypatch) -> list:
    calls = []
    real = llama_step.decode_step
    monkeypatch.setattr(llama_step, "decode_step", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("where", ["model", "layer", "mlp", "norm", "head", "pre"])
def test_hooked_models_go_through_the_forward_pass(where, monkeypatch):
    """The step calls no module's forward method, so a hook (activation steering, offloading) would be skipped:
    a hooked model, even one hooked after the sampler was made, is sampled by its forward pass, with the hook."""
    model, tok = tiny_model()
    sampler, reference = HFSampler(model, tok), HFSampler(model, tok, step="forward")
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=5)
    module = {"model": model, "layer": model.model.layers[0], "mlp": model.model.layers[1].mlp,
              "norm": model.model.norm, "head": model.lm_head, "pre": model.model.layers[0].self_attn.q_proj}[where]
    if where == "pre":
        handle = module.register_forward_pre_hook(lambda m, args: (args[0] * 1.5,))
    else:
        handle = module.register_forward_hook(lambda m, args, out: out * 1.5 if torch.is_tensor(out) else out)
    assert "hooks" in llama_step.unsupported(model)
    calls = _own_step_calls(monkeypatch)
    got, expected = sampler.sample(["5+6="], params), reference.sample(["5+6="], params)
    assert calls == [] and [c.logprobs for c in got[0]] == [c.logprobs for c in expected[0]]
    handle.remove()
    assert llama_step.unsupported(model) is None
    sampler.sample(["5+6="], params)
    assert calls


def test_an_adapter_added_after_the_sampler_was_made_is_sampled_with(monkeypatch):
    from peft import LoraConfig

    model, tok = tiny_model()
    sampler, reference = HFSampler(model, tok), HFSampler(model, tok, step="forward")
    assert sampler.step == "llama"
    model.add_adapter(LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    calls = _own_step_calls(monkeypatch)
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=5)
    got, expected = sampler.sample(["5+6="], params), reference.sample(["5+6="], params)
    assert calls == [] and [c.logprobs for c in got[0]] == [c.logprobs for c in expected[0]]


def test_a_model_with_fewer_layers_run_than_built_is_refused():
    model, _ = tiny_model()
    model.config.num_hidden_layers = 2
    assert "num_hidden_layers" in llama_step.unsupported(model)
