"""Log-probabilities of sampled sequences under the distribution they were sampled from.

A sample drawn at temperature T came from π_T = softmax(logits / T); every score-function estimator and the KL
term need log π_T of it, not log π_1 (which biases the gradient, not only its scale). This is the one function the
trainer (policy and anchor) uses to re-score samples.

With ``entropy=True`` it also returns, without gradient, the exact entropy of π_T(· | x, y_<t) at every position of
the completion: −Σ_v π_T(v) log π_T(v) over the whole vocabulary, from the same logits. Averaged over sampled tokens
this is the entropy of the distribution the samples were actually drawn from (the training telemetry's
``entropy``), not −log π_1 of the drawn tokens (a one-sample estimate of it, and of the T = 1 distribution at that).
"""

from __future__ import annotations


def sequence_logprobs(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int,
                      temperature: float = 1.0, entropy: bool = False):
    """Σ_t log π_T(y_t | x, y_<t), π_T = softmax(logits / T), for each (prompt, completion) pair, with gradients;
    also the per-token values and the mask of completion tokens (and, with ``entropy``, the per-position entropy of
    π_T, detached, zero outside the completion)."""
    import torch

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    target_mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        ids[b, : len(p) + len(c)] = torch.tensor(p + c)
        mask[b, : len(p) + len(c)] = 1
        target_mask[b, len(p) : len(p) + len(c)] = True
    device = next(model.parameters()).device
    ids, mask, target_mask = ids.to(device), mask.to(device), target_mask.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    log_probs = torch.log_softmax(logits, dim=-1)
    token_lp = log_probs.gather(2, ids[:, 1:, None])[..., 0]
    token_lp = token_lp * target_mask[:, 1:]
    if not entropy:
        return token_lp.sum(dim=1), token_lp, target_mask[:, 1:]
    with torch.no_grad():
        lp = log_probs.detach()
        # exp(lp)·lp is 0·(−inf) = nan where a token has probability 0; its term is 0.
        ent = -torch.nan_to_num(lp.exp() * lp, nan=0.0).sum(dim=-1) * target_mask[:, 1:]
    return token_lp.sum(dim=1), token_lp, target_mask[:, 1:], ent
