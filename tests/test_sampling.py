"""The local sampler: exact against transformers, correct in distribution, deterministic and batch-independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infertune.models.base import SamplingParams
from infertune.models.hf import HFSampler
from infertune.models.tiny import TinyConfig, tiny_model

PROMPTS = ["3479:24=", "12:3=", "a longer prompt, with words and 123 digits: "]


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_model(TinyConfig(seed=1))
    return model, tok, HFSampler(model, tok)


def test_greedy_equals_transformers_generate(tiny):
    model, tok, sampler = tiny
    for prompt in PROMPTS:
        ids = torch.tensor([tok(prompt)["input_ids"]])
        reference = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=40, do_sample=False,
                                   pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
        ours = sampler.sample([prompt], SamplingParams(n=3, temperature=0, max_new_tokens=40))[0]
        for c in ours:  # every greedy sample is the same sequence
            assert c.token_ids == reference[: len(c.token_ids)]
            assert len(c.token_ids) == len(reference) or c.finish_reason == "stop"


def test_logprobs_match_a_teacher_forced_forward_pass(tiny):
    model, tok, sampler = tiny
    out = sampler.sample(PROMPTS, SamplingParams(n=4, temperature=1.0, max_new_tokens=24, seed=5))
    worst = 0.0
    for prompt, completions in zip(PROMPTS, out):
        prompt_ids = tok(prompt)["input_ids"]
        for c in completions:
            with torch.no_grad():
                logits = model(torch.tensor([prompt_ids + c.token_ids])).logits[0].float()
            ref = torch.log_softmax(logits, -1)[len(prompt_ids) - 1 : -1].gather(1, torch.tensor(c.token_ids)[:, None])
            worst = max(worst, float((ref[:, 0] - torch.tensor(c.logprobs)).abs().max()))
            assert c.logprob_sum == pytest.approx(sum(c.logprobs))
    assert worst < 1e-4


def test_samples_are_deterministic_batch_independent_and_extendable(tiny):
    _, _, sampler = tiny
    params = SamplingParams(n=6, temperature=1.0, max_new_tokens=20, seed=11)
    together = sampler.sample(PROMPTS, params)
    again = sampler.sample(PROMPTS, params)
    alone = sampler.sample([PROMPTS[2]], params)[0]
    tail = sampler.sample([PROMPTS[2]], SamplingParams(n=2, temperature=1.0, max_new_tokens=20, seed=11,
                                                       start_index=4))[0]
    ids = lambda cs: [c.token_ids for c in cs]  # noqa: E731
    assert [ids(cs) for cs in together] == [ids(cs) for cs in again]
    assert ids(alone) == ids(together[2])
    assert ids(tail) == ids(together[2][4:]) and [c.index for c in tail] == [4, 5]
    other_seed = sampler.sample([PROMPTS[2]], SamplingParams(n=6, temperature=1.0, max_new_tokens=20, seed=12))[0]
    assert ids(other_seed) != ids(alone)
    assert len({tuple(c.token_ids) for c in alone}) > 1  # samples differ from each other


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.5, 1.0), (1.0, 0.6)])
def test_first_token_frequencies_follow_the_tempered_distribution(tiny, temperature, top_p):
    model, tok, sampler = tiny
    prompt = "7+8="
    n = 4000
    out = sampler.sample([prompt], SamplingParams(n=n, temperature=temperature, top_p=top_p, max_new_tokens=1,
                                                  seed=3))[0]
    counts = np.bincount([c.token_ids[0] for c in out], minlength=len(tok))
    with torch.no_grad():
        logits = model(torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1].double()
    p = torch.softmax(logits / temperature, -1).numpy()
    if top_p < 1:
        order = np.argsort(-p)
        keep = order[(np.cumsum(p[order]) - p[order]) < top_p]
        mask = np.zeros_like(p)
        mask[keep] = 1
        p = p * mask / (p * mask).sum()
        assert counts[mask == 0].sum() == 0  # nothing outside the nucleus
    sd = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) <= 5 * sd + 1e-3)


def test_stop_strings_and_length_limits(tiny):
    model, tok, sampler = tiny
    out = sampler.sample(PROMPTS, SamplingParams(n=8, temperature=1.0, max_new_tokens=30, seed=2, stop=["e", "1"]))
    stopped = [c for cs in out for c in cs if c.finish_reason == "stop"]
    assert stopped, "with such common stop strings some sample must stop"
    for cs in out:
        for c in cs:
            assert "e" not in c.text and "1" not in c.text
            if c.finish_reason == "length":
                assert len(c.token_ids) == 30
    capped = sampler.sample(["x"], SamplingParams(n=2, temperature=1.0, max_new_tokens=5, seed=1))[0]
    assert all(len(c.token_ids) <= 5 for c in capped)


def test_end_of_sequence_ends_a_sample_and_is_kept_in_its_tokens():
    model, tok = tiny_model(TinyConfig(seed=2))
    # A head that puts almost all mass on <eos> after one ordinary token ("a" gets the rest).
    head = torch.nn.Linear(model.config.hidden_size, len(tok), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-30.0)
        head.bias[tok.eos_token_id] = 0.0
    model.lm_head = head
    out = HFSampler(model, tok).sample(["abc"], SamplingParams(n=4, temperature=1.0, max_new_tokens=10))[0]
    for c in out:
        assert c.token_ids == [tok.eos_token_id]
        assert c.finish_reason == "stop" and c.text == ""
        assert c.logprobs[0] == pytest.approx(0.0, abs=1e-9)


def test_invalid_params_are_refused():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="n must be"):
        SamplingParams(n=0)


def test_two_level_inverse_cdf_equals_one_float64_cumulative_sum():
    from infertune.models.choice import inverse_cdf

    g = torch.Generator().manual_seed(0)
    weights = torch.rand(64, 1000, generator=g) ** 8  # vocabulary not a multiple of the block size
    weights[:, 500:700] = 0  # zero-probability tokens are never picked
    u = torch.rand(64, generator=g, dtype=torch.float64)
    cdf = weights.double().cumsum(-1)
    expected = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None])[:, 0]
    assert torch.equal(inverse_cdf(weights, u), expected)
    assert not ((inverse_cdf(weights, u) >= 500) & (inverse_cdf(weights, u) < 700)).any()
