"""Linear layers computed as W·xᵀ for thin decoding steps: the same numbers as F.linear, in scope only."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.thin_linear import MIN_WEIGHT, thin_linear, thin_linears
from infertune.models.tiny import TinyConfig, tiny_model


@settings(max_examples=60, deadline=None)
@given(lead=st.lists(st.integers(1, 9), min_size=1, max_size=3), inputs=st.integers(1, 40),
       outputs=st.integers(1, 40), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_thin_linear_equals_f_linear(lead, inputs, outputs, bias, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, inputs, generator=g)
    w = torch.randn(outputs, inputs, generator=g)
    b = torch.randn(outputs, generator=g) if bias else None
    got = thin_linear(x, w, b)
    expected = torch.nn.functional.linear(x, w, b)
    assert got.shape == expected.shape and got.is_contiguous()
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Many rows, or another dtype: F.linear itself (the same tensor, to the bit).
    assert torch.equal(thin_linear(x, w, b, max_rows=0), expected)
    assert torch.equal(thin_linear(x.double(), w.double(), None), torch.nn.functional.linear(x.double(), w.double()))


def test_thin_linears_patches_only_inside_the_block_and_restores_on_error():
    model, _ = tiny_model(TinyConfig(seed=1, hidden_size=256, intermediate_size=512))
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear and m.weight.numel() >= MIN_WEIGHT]
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        before = model(ids).logits
        with thin_linears(model) as count:
            assert count == len(linears) > 0
            assert all("forward" in vars(m) for m in linears)
            inside = model(ids).logits
        assert not any("forward" in vars(m) for m in linears)
        with pytest.raises(RuntimeError, match="boom"):
            with thin_linears(model):
                raise RuntimeError("boom")
        assert not any("forward" in vars(m) for m in linears)
        with thin_linears(model, max_rows=0) as count:
            assert count == 0
        small, _ = tiny_model(TinyConfig(seed=1))  # the embedded default's shape: every layer below MIN_WEIGHT
        with thin_linears(small) as count:
            assert count == 0
    assert torch.allclose(before, inside, atol=1e-5)


def test_sampler_draws_the_same_samples_with_and_without_thin_linears():
    model, tok = tiny_model(TinyConfig(seed=7, hidden_size=256, intermediate_size=512))
    params = SamplingParams(n=6, temperature=1.0, max_new_tokens=20, seed=3)
    prompts = ["3479:24=", "12+3="]
    thin = HFSampler(model, tok).sample(prompts, params)
    plain = HFSampler(model, tok, thin_rows=0).sample(prompts, params)
    for a, b in zip(thin, plain):
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        for x, y in zip(a, b):
            assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)
