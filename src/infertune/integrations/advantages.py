"""Advantages for other engines' trainers, computed by ``infertune.objectives``.

Engines (TRL, verl) multiply a per-sequence advantage A_i into the policy-gradient loss of every token of sample i.
Our objectives give per-prompt weights w_i with E[Σ_i w_i ∇log π(y_i|x)] = ∇J, so A_i = n·w_i makes the engine's
loss a constant multiple of our unbiased estimator whenever it sums token log-probs per sequence (and averages over
sequences). At this scale RLOO's A_i is the familiar R_i − mean_{j≠i} R_j.
"""

from __future__ import annotations

import numpy as np

from infertune.objectives import get, sample_weights


def group_advantages(objective: str, rewards, groups, *, k: int | None = None, scores=None,
                     answers=None) -> np.ndarray:
    """A_i = n·w_i for every sample, where the group of sample i is ``groups[i]`` (the prompt it answers).

    ``k`` defaults to the group size n (Best-of-n of the samples drawn). A NaN reward marks a sample the engine could
    not score: it is left out of its group and gets advantage 0. ``scores`` are verifier scores, used by the
    objectives that select by a verifier (the reward stands in when they are None).
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"rewards: expected one reward per sample (1-D), got shape {r.shape}")
    g = np.asarray(groups)
    if g.shape != r.shape:
        raise ValueError(f"groups: expected one group id per sample ({r.size}), got shape {g.shape}")
    s = None if scores is None else np.asarray(scores, dtype=np.float64)
    if s is not None and s.shape != r.shape:
        raise ValueError(f"scores: expected one score per sample ({r.size}), got shape {s.shape}")
    needs_scores = get(objective).needs_scores
    advantages = np.zeros_like(r)
    _, first, inverse = np.unique(g, return_index=True, return_inverse=True)
    for group in np.argsort(first):  # groups in order of appearance
        rows = np.flatnonzero((inverse == group) & np.isfinite(r))
        if rows.size == 0:
            continue
        n = rows.size
        k_used = n if k is None else k
        if k_used > n:
            raise ValueError(f"k={k_used} is larger than the {n} scored samples of group {g[rows[0]]!r}; "
                             "draw more samples per prompt or lower k")
        w = sample_weights(objective, r[rows], s[rows] if (s is not None and needs_scores) else None,
                           None if answers is None else [answers[i] for i in rows], k=k_used)
        advantages[rows] = n * w
    return advantages
