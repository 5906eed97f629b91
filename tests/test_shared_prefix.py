"""Shared-prefix (Hydragen) attention: exact against standard attention, and the sampler's paths agree."""

from __future__ import annotations

import pytest
import torch

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.shared_prefix import SharedPrefixKV, prefix_suffix_attention, supports
from infertune.models.tiny import TinyConfig, tiny_model


def _reference(query, keys, values, valid, scaling):
    """Softmax attention of one query per row over its own full key list (GQA by repeating keys)."""
    group = query.shape[1] // keys.shape[1]
    keys, values = keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1)
    scores = (query @ keys.transpose(-1, -2)) * scaling
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    return (torch.softmax(scores, -1) @ values).transpose(1, 2)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("drop", [False, True])
def test_prefix_suffix_attention_equals_attention_over_the_concatenation(drop, fused):
    g = torch.Generator().manual_seed(0)
    prompts, n, heads, kv_heads, dim, prefix_len, suffix_len = 3, 4, 6, 2, 16, 11, 5
    rows = prompts * n
    prefix_k = torch.randn(prompts, kv_heads, prefix_len, dim, generator=g, dtype=torch.float64)
    prefix_v = torch.randn(prompts, kv_heads, prefix_len, dim, generator=g, dtype=torch.float64)
    valid = torch.ones(prompts, prefix_len, dtype=torch.bool)
    valid[0, :4] = False  # left padding of a shorter prompt
    valid[2, :1] = False
    suffix_k = torch.randn(rows, kv_heads, suffix_len, dim, generator=g, dtype=torch.float64)
    suffix_v = torch.randn(rows, kv_heads, suffix_len, dim, generator=g, dtype=torch.float64)
    query = torch.randn(rows, heads, 1, dim, generator=g, dtype=torch.float64) * 3
    slots = None
    if drop:  # rows 1, 5 and 6 have finished
        slots = torch.tensor([r for r in range(rows) if r not in (1, 5, 6)])
        query, suffix_k, suffix_v = query[slots], suffix_k[slots], suffix_v[slots]
    owner = (slots if slots is not None else torch.arange(rows)) // n
    keys = torch.cat([prefix_k[owner], suffix_k], 2)
    values = torch.cat([prefix_v[owner], suffix_v], 2)
    full_valid = torch.cat([valid[owner], torch.ones(len(owner), suffix_len, dtype=torch.bool)], 1)
    expected = _reference(query, keys, values, full_valid, 0.25)
    bias = torch.zeros(valid.shape, dtype=torch.float64).masked_fill(~valid, float("-inf"))[:, None, None, :]
    got = prefix_suffix_attention(query, prefix_k, prefix_v, bias, suffix_k, suffix_v, n, slots, 0.25, fused)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)
    got32 = prefix_suffix_attention(query.float(), prefix_k.float(), prefix_v.float(), bias.float(),
                                    suffix_k.float(), suffix_v.float(), n, slots, 0.25, fused)
    assert (got32.double() - expected).abs().max() < 1e-5


def test_decoding_with_shared_prefix_matches_standard_attention_on_a_tiny_llama():
    """Logits of every step against a full forward pass with transformers' own attention, to 1e-5."""
    model, tok = tiny_model(TinyConfig(seed=3))
    assert supports(model) is None
    sampler = HFSampler(model, tok, attention="shared")
    prompts = ["12+345=", "a much longer prompt than the first one: "]
    out = sampler.sample(prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=4))
    worst = 0.0
    for prompt, completions in zip(prompts, out):
        prompt_ids = tok(prompt)["input_ids"]
        for c in completions:
            with torch.no_grad():
                logits = model(torch.tensor([prompt_ids + c.token_ids])).logits[0]
            ref = torch.log_softmax(logits.float(), -1)[len(prompt_ids) - 1 : -1]
            ref = ref.gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
            worst = max(worst, float((ref - torch.tensor(c.logprobs)).abs().max()))
    assert worst < 1e-5
    assert model.config._attn_implementation != "infertune_shared_prefix"  # restored after sampling


def test_shared_and_copied_paths_draw_the_same_samples():
    model, tok = tiny_model(TinyConfig(seed=5))
    params = SamplingParams(n=5, temperature=0.8, top_p=0.9, max_new_tokens=16, seed=9, stop=["9"])
    prompts = ["3479:24=", "1+1=", "xyz"]
    shared = HFSampler(model, tok, attention="shared").sample(prompts, params)
    copied = HFSampler(model, tok, attention="copy").sample(prompts, params)
    for a, b in zip(shared, copied):
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        assert [c.text for c in a] == [c.text for c in b]
        for x, y in zip(a, b):
            assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)


def test_models_without_the_attention_interface_fall_back_to_copies():
    from transformers import GPT2Config, GPT2LMHeadModel

    model, tok = tiny_model(TinyConfig(seed=1))
    model.config.sliding_window = 4
    assert "sliding" in supports(model)
    sampler = HFSampler(model, tok)
    assert sampler.attention == "copy" and "sliding" in sampler.attention_note
    with pytest.raises(ValueError, match="sliding"):
        HFSampler(model, tok, attention="shared")
    with pytest.raises(ValueError, match="attention must be"):
        HFSampler(model, tok, attention="magic")
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=len(tok)))
    sampler = HFSampler(gpt2, tok)
    assert sampler.attention == "copy" and "Llama" in sampler.attention_note
    out = sampler.sample(["abc"], SamplingParams(n=2, max_new_tokens=3))
    assert len(out[0]) == 2


def test_state_keeps_rows_in_slot_order():
    state = SharedPrefixKV(n=2, capacity=1)
    state.prefix_k[0] = torch.zeros(2, 1, 3, 4)
    assert state.rows == 4 and state.prompts == 2
    state.keep_rows(torch.tensor([0, 3]))
    assert state.slots.tolist() == [0, 3] and state.rows == 2


def test_bfloat16_models_decode_with_shared_prefix():
    model, tok = tiny_model(TinyConfig(seed=6))
    model = model.to(torch.bfloat16)
    params = SamplingParams(n=3, temperature=0, max_new_tokens=8)
    shared = HFSampler(model, tok, attention="shared").sample(["12+34="], params)[0]
    copied = HFSampler(model, tok, attention="copy").sample(["12+34="], params)[0]
    assert len(shared) == 3 and all(len(c.token_ids) >= 1 for c in shared)
    # bf16 rounding differs between the two attention paths; the first greedy token and its log-prob agree.
    assert shared[0].token_ids[0] == copied[0].token_ids[0]
    assert shared[0].logprobs[0] == pytest.approx(copied[0].logprobs[0], abs=0.05)


def test_the_attention_function_refuses_what_it_cannot_compute():
    """Reached only by calling it directly (HFSampler checks ``supports`` and copies instead): a clear ValueError."""
    from types import SimpleNamespace

    from infertune.models.shared_prefix import KWARG, attention

    module = SimpleNamespace(layer_idx=0)
    q = k = v = torch.zeros(2, 2, 1, 4)
    with pytest.raises(ValueError, match="sliding_window"):
        attention(module, q, k, v, None, **{KWARG: SharedPrefixKV(n=2, capacity=4), "sliding_window": 8})
    state = SharedPrefixKV(n=2, capacity=4, prefilling=False)
    with pytest.raises(ValueError, match="one new token"):
        attention(module, torch.zeros(2, 2, 3, 4), k, v, None, **{KWARG: state})
