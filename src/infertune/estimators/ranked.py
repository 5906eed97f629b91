"""pass@k and Best-of-k: metrics decided by the top-ranked sample of a random k-subset.

Both reduce to one linear map. Sort a prompt's n samples by the selection score; the sample at rank i (1-based,
ascending) is the best of a uniformly random k-subset with probability C(i-1, k-1)/C(n, k). Ties in the score are
broken uniformly at random at inference, and the exact expectation replaces the rewards inside each tie block by the
block mean. So every k at once is one matrix product, and the same weights later give exact gradients (math.md 1, 3).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import gammaln

from infertune.estimators.inputs import as_matrix, check_k, check_same_shape


def pass_at_k(n, c, k):
    """Unbiased pass@k = 1 - C(n-c, k)/C(n, k) for c correct of n samples; broadcasts over arrays.

    Computed as 1 - prod_{j<k} (n-c-j)/(n-j), which never forms a binomial coefficient and so cannot overflow.
    """
    n_arr, c_arr, k_arr = np.broadcast_arrays(np.asarray(n), np.asarray(c), np.asarray(k))
    if n_arr.size == 0:
        raise ValueError("pass_at_k: empty input")
    for name, arr in (("n", n_arr), ("c", c_arr), ("k", k_arr)):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"pass_at_k: {name} must hold whole numbers, got {arr!r}")
    n_arr, c_arr, k_arr = (a.astype(np.int64) for a in (n_arr, c_arr, k_arr))
    if np.any(n_arr < 1):
        raise ValueError("pass_at_k: n must be at least 1")
    if np.any((c_arr < 0) | (c_arr > n_arr)):
        raise ValueError("pass_at_k: c must lie in 0..n")
    if np.any((k_arr < 1) | (k_arr > n_arr)):
        raise ValueError("pass_at_k: k must lie in 1..n")
    kmax = int(k_arr.max())
    j = np.arange(kmax)
    shape = n_arr.shape + (kmax,)
    num = (n_arr - c_arr)[..., None] - j
    den = n_arr[..., None] - j
    active = j < k_arr[..., None]
    ratio = np.where(active, np.clip(num, 0, None) / np.where(active, den, 1), 1.0)
    result = 1.0 - np.prod(np.broadcast_to(ratio, shape), axis=-1)
    return result if result.ndim else float(result)


def pass_curve(rewards) -> np.ndarray:
    """pass@k for every k = 1..n from binary rewards [prompts, n]; returns [prompts, n] (column k-1 is k)."""
    r = as_matrix("rewards", rewards)
    if not np.all((r == 0) | (r == 1)):
        raise ValueError("rewards: pass@k needs binary rewards in {0, 1}; use bon_curve(rewards, rewards) for "
                         "the expected best reward of k samples")
    n = r.shape[1]
    c = r.sum(axis=1)
    # Ratio C(n-c, k)/C(n, k) for all k by a running product along k.
    j = np.arange(n)
    factors = np.clip((n - c)[:, None] - j, 0, None) / (n - j)
    return 1.0 - np.cumprod(factors, axis=1)


@lru_cache(maxsize=16)
def _rank_weights(n: int) -> np.ndarray:
    """W[k-1, i-1] = C(i-1, k-1)/C(n, k): probability that rank i is the top of a random k-subset."""
    k = np.arange(1, n + 1)[:, None].astype(np.float64)
    i = np.arange(1, n + 1)[None, :].astype(np.float64)
    valid = i >= k
    log_top = gammaln(i) - gammaln(k) - gammaln(np.where(valid, i - k + 1, 1))
    log_all = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    w = np.where(valid, np.exp(np.where(valid, log_top - log_all, 0.0)), 0.0)
    # Each row is a probability distribution over ranks; renormalising removes the last ulp of gammaln error.
    w /= w.sum(axis=1, keepdims=True)
    w.setflags(write=False)
    return w


def rank_weights(n: int) -> np.ndarray:
    """Public read-only view of the rank weights, shape [n (k), n (rank)]; shared with the training objectives."""
    return _rank_weights(int(n))


def sort_with_tie_means(scores: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Rewards sorted by ascending score, each replaced by the mean reward of its tie block."""
    order = np.argsort(scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    r = np.take_along_axis(rewards, order, axis=1)
    n_prompts, n = s.shape
    new_block = np.ones_like(s, dtype=bool)
    new_block[:, 1:] = s[:, 1:] != s[:, :-1]
    if new_block.all():
        return r
    block = np.cumsum(new_block, axis=1) - 1 + (np.arange(n_prompts) * n)[:, None]
    sums = np.bincount(block.ravel(), weights=r.ravel(), minlength=n_prompts * n)
    counts = np.bincount(block.ravel(), minlength=n_prompts * n)
    return (sums / np.maximum(counts, 1))[block]


def bon_curve(scores, rewards) -> np.ndarray:
    """Best-of-k by the verifier score, judged by the reward, for every k = 1..n; returns [prompts, n].

    A score may be −inf: that sample is picked only when every sample drawn with it scores −inf too."""
    s = as_matrix("scores", scores, allow_minus_inf=True)
    r = as_matrix("rewards", rewards)
    check_same_shape(scores=s, rewards=r)
    sorted_r = sort_with_tie_means(s, r)
    return sorted_r @ _rank_weights(s.shape[1]).T


def bon_at_k(scores, rewards, k: int) -> np.ndarray:
    """Best-of-k for one k; per-prompt values of shape [prompts]."""
    s = as_matrix("scores", scores, allow_minus_inf=True)
    r = as_matrix("rewards", rewards)
    check_same_shape(scores=s, rewards=r)
    k = check_k(k, s.shape[1])
    return sort_with_tie_means(s, r) @ _rank_weights(s.shape[1])[k - 1]
