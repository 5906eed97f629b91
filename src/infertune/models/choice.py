"""Choosing each row's next token from its logits, with one given uniform number per row.

Inverse-CDF sampling turns a uniform u into the token whose cumulative probability first reaches u, so the choice
is a pure function of (logits, u): with ``seeding`` handing out u per (sample, step), a sample does not depend on
what else is in the batch. The cumulative sum is taken in two levels, over blocks of the vocabulary and then inside
the one block that holds u, in float64: as exact as one float64 running sum over the whole vocabulary (a float32
one drifts by more than the probability of rare tokens), for a fraction of the work, which matters when a step's
model call takes milliseconds. Log-probs are always at temperature 1 (the policy's log π), whatever temperature the
token was drawn at.
"""

from __future__ import annotations

import torch

BLOCK = 256


def inverse_cdf(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per row, the first index whose cumulative weight reaches u · (total weight); weights [rows, vocab] >= 0
    (unnormalised), u [rows] float64 in (0, 1)."""
    rows, vocab = weights.shape
    pad = (-vocab) % BLOCK
    if pad:
        weights = torch.nn.functional.pad(weights, (0, pad))
    blocks = weights.reshape(rows, -1, BLOCK)
    block_sums = blocks.sum(-1, dtype=torch.float64)  # [rows, blocks]
    cumulative = block_sums.cumsum(-1)
    target = (u.to(cumulative) * cumulative[:, -1])[:, None]
    b = torch.searchsorted(cumulative, target).clamp(max=cumulative.shape[1] - 1)  # [rows, 1]
    before = cumulative.gather(1, b) - block_sums.gather(1, b)
    inside = blocks.gather(1, b[:, :, None].expand(rows, 1, BLOCK))[:, 0].double().cumsum(-1)
    j = torch.searchsorted(inside, target - before).clamp(max=BLOCK - 1)
    return (b * BLOCK + j)[:, 0].clamp(max=vocab - 1)


def choose_tokens(logits: torch.Tensor, u: torch.Tensor | None, temperature: float,
                  top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(token per row, its temperature-1 log-prob) for logits [rows, vocab] and uniforms u [rows] (float64, in
    (0, 1); unused at temperature 0, where the most likely token is taken)."""
    logits = logits.float()
    top = logits.amax(-1, keepdim=True)
    shifted = logits - top
    if temperature == 0:
        tokens = logits.argmax(dim=-1)
        log_total = torch.log(torch.exp(shifted).sum(-1))
    else:
        if u is None:
            raise ValueError("sampling at a temperature above 0 needs one uniform number per row")
        u = u.to(device=logits.device, dtype=torch.float64)
        weights = torch.exp(shifted if temperature == 1.0 else shifted / temperature)  # unnormalised, max 1
        log_total = torch.log(weights.sum(-1, dtype=torch.float64)).float() if temperature == 1.0 else \
            torch.log(torch.exp(shifted).sum(-1))
        if top_p < 1.0:
            tokens = _nucleus(weights, u, top_p)
        else:
            tokens = inverse_cdf(weights, u)
    chosen = shifted.gather(1, tokens[:, None])[:, 0] - log_total
    return tokens, chosen


def _nucleus(weights: torch.Tensor, u: torch.Tensor, top_p: float) -> torch.Tensor:
    """Inverse-CDF sampling restricted to the smallest set of most likely tokens whose mass reaches top_p."""
    probs = weights.double()
    probs = probs / probs.sum(-1, keepdim=True)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(-1)
    sorted_probs = torch.where(cumulative - sorted_probs < top_p, sorted_probs, 0.0)
    cdf = sorted_probs.cumsum(-1)
    pick = torch.searchsorted(cdf, u[:, None] * cdf[:, -1:]).clamp(max=probs.shape[-1] - 1)
    return order.gather(1, pick)[:, 0]


def top_logprobs(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most likely tokens per row and their temperature-1 log-probs: (log-probs [rows, k], ids [rows, k])."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.topk(min(k, logp.shape[-1]), dim=-1)
