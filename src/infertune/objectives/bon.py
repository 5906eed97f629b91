"""Best-of-k objectives with any verifier: the exact unbiased gradient, Lemma 2 of Chow et al., Tang et al.

All share one piece of combinatorics with the BoN@k estimator: which k-subsets of the n samples contain sample i,
and which sample of a subset the verifier selects (ties broken uniformly at random). Averaging over all k-subsets
turns one Best-of-k draw into the lowest-variance estimate the n samples allow.
"""

from __future__ import annotations

from infertune.objectives.registry import binom as comb

import numpy as np

from infertune.estimators import bon_at_k
from infertune.objectives.registry import check_inputs, register


def _blocks(s: np.ndarray):
    """Tie blocks of the scores, ascending: block of each sample, sizes, number of samples below each block."""
    values, block, sizes = np.unique(s, return_inverse=True, return_counts=True)
    below = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return block.ravel(), sizes, below


def subset_weights(scores, rewards, k: int) -> np.ndarray:
    """w_i = (1/C(n,k)) Σ_{k-subsets S ∋ i} f(S), f(S) = reward of the verifier's pick from S (ties averaged).

    Exact with ties: for i in block b (size m, L samples below), the subsets whose top block is b contribute
    R_i/m Σ_t C(m,t)C(L,k−t) + (Σ_{j∈b, j≠i} R_j)/(m(m−1)) Σ_t (t−1)C(m,t)C(L,k−t); a higher block b' (size m',
    L' below it) contributes its mean reward times C(m'+L'−1, k−1) − C(L'−1, k−1). Without ties this is
    [C(i−1,k−1) R_(i) + Σ_{j>i} C(j−2,k−2) R_(j)] / C(n,k) (math.md section 3).
    """
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    n = r.size
    block, sizes, below = _blocks(s)
    n_blocks = sizes.size
    sums = np.bincount(block, weights=r, minlength=n_blocks)
    own_single = np.zeros(n_blocks)
    own_pair = np.zeros(n_blocks)
    above = np.zeros(n_blocks)
    for b in range(n_blocks):
        m, low = int(sizes[b]), int(below[b])
        a = sum(comb(m, t) * comb(low, k - t) for t in range(1, min(m, k) + 1))
        own_single[b] = a / m
        if m > 1:
            pair = sum((t - 1) * comb(m, t) * comb(low, k - t) for t in range(2, min(m, k) + 1))
            own_pair[b] = pair / (m * (m - 1))
        above[b] = (sums[b] / m) * (comb(m + low - 1, k - 1) - comb(low - 1, k - 1))
    # Each block also collects what every higher block contributes to it.
    from_higher = np.concatenate([np.cumsum(above[::-1])[::-1][1:], [0.0]])
    own = own_single[block] * r + own_pair[block] * (sums[block] - r)
    return (own + from_higher[block]) / comb(n, k)


def selection_probability(scores, k: int) -> np.ndarray:
    """Probability that sample i is the verifier's pick from a uniformly random k-subset (ties split evenly)."""
    s = np.asarray(scores, dtype=np.float64)
    n = s.size
    block, sizes, below = _blocks(s)
    per_block = np.array([sum(comb(int(m), t) * comb(int(low), k - t) for t in range(1, min(int(m), k) + 1)) / m
                          for m, low in zip(sizes, below)])
    return per_block[block] / comb(n, k)


@register("bon-exact", needs_scores=True, unbiased_for="∇BoN@k with the given verifier (∇pass@k when scores=None)",
          summary="Exact unbiased gradient of Best-of-k with a leave-one-out baseline; PKPO when the verifier is the "
                  "reward.")
def bon_exact(rewards, scores=None, answers=None, *, k: int = 1) -> np.ndarray:
    r, s = check_inputs(rewards, scores, k)
    n = r.size
    w = subset_weights(s, r, k)
    if n == 1:
        return w - w  # no other sample to form a baseline from: nothing to learn from one sample's value alone
    others = np.array([np.delete(np.arange(n), i) for i in range(n)])
    if k == 1:
        baseline = r[others].mean(axis=1) / n
    else:
        # (1/C(n,k)) Σ_{S∋i} f(S∖{i}) = (k/n)·BoN@(k−1) of the other samples; it does not depend on sample i.
        baseline = (k / n) * bon_at_k(s[others], r[others], k - 1)
    return w - baseline


def _lemma2(rewards, scores, k: int, baseline) -> np.ndarray:
    r, s = check_inputs(rewards, scores, k)
    b = r.mean() if baseline is None else float(baseline)
    return selection_probability(s, k) * (r - b)


@register("bon-rl-v", needs_scores=True,
          unbiased_for="not ∇BoN@k: with a constant baseline b, E_{y~π_bon}[(R(y) − b) ∇log π(y)] (Lemma 2 drops the "
                       "∇log CDF term)",
          summary="BoN-RL-V (Chow et al. Lemma 2): REINFORCE on the verifier's Best-of-k pick, averaged over all "
                  "k-subsets; baseline the prompt's mean reward.")
def bon_rl_v(rewards, scores=None, answers=None, *, k: int = 1, baseline: float | None = None) -> np.ndarray:
    return _lemma2(rewards, scores, k, baseline)


@register("bon-rl-s",
          unbiased_for="as bon-rl-v, with the reward itself selecting the Best-of-k sample",
          summary="BoN-RL-S (Chow et al. Lemma 2): REINFORCE on the reward's Best-of-k pick.")
def bon_rl_s(rewards, scores=None, answers=None, *, k: int = 1, baseline: float | None = None) -> np.ndarray:
    return _lemma2(rewards, None, k, baseline)


@register("tang-loo", unbiased_for="∇E[max reward of n samples] (k = n)",
          summary="Tang et al. 2025 at n = k: only the best sample moves, by r_max − r_second.")
def tang_loo(rewards, scores=None, answers=None, *, k: int = 1) -> np.ndarray:
    r, _ = check_inputs(rewards, None, k)
    if k != r.size:
        raise ValueError(f"tang-loo is defined at k = n; got k={k}, n={r.size} (use bon-exact for k < n)")
    if r.size == 1:
        return np.zeros(1)
    top = np.sort(r)[::-1]
    w = np.zeros_like(r)
    best = np.flatnonzero(r == top[0])
    if best.size == 1:
        w[best[0]] = top[0] - top[1]
    return w
