"""Log-probabilities of sampled sequences under the distribution they were sampled from.

A sample drawn at temperature T came from π_T = softmax(logits / T); every score-function estimator and the KL
term need log π_T of it, not log π_1 (which biases the gradient, not only its scale). This is the one function the
trainer (policy and anchor) uses to re-score samples.
"""

from __future__ import annotations


def sequence_logprobs(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int,
                      temperature: float = 1.0):
    """Σ_t log π_T(y_t | x, y_<t), π_T = softmax(logits / T), for each (prompt, completion) pair, with gradients;
    also the per-token values and the mask of completion tokens."""
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
    token_lp = torch.log_softmax(logits, dim=-1).gather(2, ids[:, 1:, None])[..., 0]
    token_lp = token_lp * target_mask[:, 1:]
    return token_lp.sum(dim=1), token_lp, target_mask[:, 1:]
