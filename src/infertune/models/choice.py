"""Choosing each row's next token from its logits, with one given uniform number per row.

Inverse-CDF sampling turns a uniform u into the token whose cumulative probability first reaches u, so the choice
is a pure function of (logits, u): with ``seeding`` handing out u per (sample, step), a sample does not depend on
what else is in the batch. The CDF is accumulated in float64, since a float32 running sum over a 50k vocabulary
drifts by more than the probability of rare tokens. Log-probs are always at temperature 1 (the policy's log π),
whatever temperature the token was drawn at.
"""

from __future__ import annotations

import torch


def choose_tokens(logits: torch.Tensor, u: torch.Tensor | None, temperature: float,
                  top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(token per row, temperature-1 log-probs of the whole vocabulary) for logits [rows, vocab] and uniforms u
    [rows] (float64, in (0, 1); unused at temperature 0, where the most likely token is taken)."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    if temperature == 0:
        return logits.argmax(dim=-1), logp
    if u is None:
        raise ValueError("sampling at a temperature above 0 needs one uniform number per row")
    if temperature == 1.0:
        probs = logp.double().exp()
    else:
        probs = torch.softmax(logits.double() / temperature, dim=-1)
    u = u.to(device=probs.device, dtype=torch.float64)[:, None]
    last = probs.shape[-1] - 1
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        cumulative = sorted_probs.cumsum(-1)
        # Keep the smallest set of most likely tokens whose mass reaches top_p.
        sorted_probs = torch.where(cumulative - sorted_probs < top_p, sorted_probs, 0.0)
        cdf = sorted_probs.cumsum(-1)
        pick = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=last)
        tokens = order.gather(1, pick)[:, 0]
    else:
        cdf = probs.cumsum(-1)
        tokens = torch.searchsorted(cdf, u * cdf[:, -1:])[:, 0].clamp(max=last)
    return tokens, logp
