"""Best-of-k objectives with any verifier: the exact unbiased gradient, Lemma 2 of Chow et al., Tang et al.

All share one piece of combinatorics with the BoN@k estimator: which k-subsets of the n samples contain sample i,
and which sample of a subset the verifier selects (ties broken uniformly at random). Averaging over all k-subsets
turns one Best-of-k draw into the lowest-variance estimate the n samples allow. Every count is a ratio of binomial
coefficients taken in log space (``combinatorics``), so n in the thousands neither overflows nor loses precision,
and all of it is per tie block with suffix sums: O(n log n) per prompt.
"""

from __future__ import annotations

import numpy as np

from infertune.objectives.combinatorics import cancelling_difference, log_binom
from infertune.objectives.registry import check_inputs, register


def _blocks(s: np.ndarray):
    """Tie blocks of the scores, ascending: block of each sample, sizes, number of samples below each block."""
    _, block, sizes = np.unique(s, return_inverse=True, return_counts=True)
    below = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return block.ravel(), sizes, below


def _top_block_terms(sizes: np.ndarray, below: np.ndarray, n: int, k: int):
    """For each tie block b (size m, L samples below it), over the k-subsets whose highest block is b with t of its
    members: Σ_t C(m,t)C(L,k−t)/C(n,k) · (1, t) — the moments the per-sample weights need. Pairs (b, t) are laid
    out flat, Σ_b min(m_b, k) of them, so the cost is O(n)."""
    t_max = np.minimum(sizes, k)
    block_of = np.repeat(np.arange(sizes.size), t_max)
    start = np.concatenate([[0], np.cumsum(t_max)[:-1]])
    t = np.arange(block_of.size) - start[block_of] + 1
    m, low = sizes[block_of], below[block_of]
    mass = np.exp(log_binom(m, t) + log_binom(low, k - t) - log_binom(n, k))
    count = np.bincount(block_of, weights=mass, minlength=sizes.size)
    t_moment = np.bincount(block_of, weights=mass * t, minlength=sizes.size)
    return count, t_moment


def selection_probability(scores, k: int) -> np.ndarray:
    """Probability that sample i is the verifier's pick from a uniformly random k-subset (ties split evenly)."""
    s = np.asarray(scores, dtype=np.float64)
    block, sizes, below = _blocks(s)
    count, _ = _top_block_terms(sizes, below, s.size, k)
    return (count / sizes)[block]


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
    sums = np.bincount(block, weights=r, minlength=sizes.size)
    count, t_moment = _top_block_terms(sizes, below, n, k)
    own_single = count / sizes
    pair = t_moment - count  # Σ_t (t − 1) C(m,t)C(L,k−t)/C(n,k)
    own_pair = np.divide(pair, sizes * (sizes - 1), out=np.zeros_like(pair), where=sizes > 1)
    # C(m+L−1, k−1) − C(L−1, k−1), over C(n, k): subsets with a member of block b' above i's block and i below.
    upper = log_binom(sizes + below - 1, k - 1) - log_binom(n, k)
    lower = log_binom(below - 1, k - 1) - log_binom(n, k)
    reachable = np.isfinite(upper)
    reach = np.exp(upper) * -np.expm1(np.where(reachable, lower - np.where(reachable, upper, 0.0), 0.0))
    above = (sums / sizes) * np.where(reachable, reach, 0.0)
    from_higher = np.concatenate([np.cumsum(above[::-1])[::-1][1:], [0.0]])
    own = own_single[block] * r + own_pair[block] * (sums[block] - r)
    return own + from_higher[block]


def leave_one_out_baseline(scores, rewards, k: int) -> np.ndarray:
    """b_i = (1/C(n,k)) Σ_{S∋i} f(S∖{i}) = (k/n)·BoN@(k−1) of the other n−1 samples, for k ≥ 2.

    It does not depend on sample i's own outcome, so subtracting it keeps the estimator unbiased. Removing i shifts
    the ranks of the blocks above it down by one and shrinks its own block, so with W(p) = C(p−1, k−2)/C(n−1, k−1),
    the chance that rank p of n−1 tops a random (k−1)-subset, each block's weight is a difference of the cumulative
    sums of W: lower blocks keep their ranks, higher ones move down one, and i's block keeps m−1 members whose
    mean reward excludes R_i.
    """
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    n = r.size
    block, sizes, below = _blocks(s)
    sums = np.bincount(block, weights=r, minlength=sizes.size)
    means = sums / sizes
    rank = np.arange(1, n)
    cumulative = np.concatenate([[0.0], np.cumsum(np.exp(log_binom(rank - 1, k - 2) - log_binom(n - 1, k - 1)))])
    cumulative = np.append(cumulative, cumulative[-1])  # the top block's own span reaches rank n; never used below
    tops = below + sizes
    kept = means * (cumulative[tops] - cumulative[below])  # blocks below i's block
    shifted = means * (cumulative[tops - 1] - cumulative[np.maximum(below - 1, 0)])  # blocks above it
    kept_below = np.concatenate([[0.0], np.cumsum(kept)[:-1]])
    shifted_above = np.concatenate([np.cumsum(shifted[::-1])[::-1][1:], [0.0]])
    m = sizes[block]
    own_mass = cumulative[tops[block] - 1] - cumulative[below[block]]
    own_mean = np.divide(sums[block] - r, m - 1, out=np.zeros(n), where=m > 1)
    return (k / n) * (kept_below[block] + own_mean * own_mass + shifted_above[block])


@register("bon-exact", needs_scores=True, unbiased_for="∇BoN@k with the given verifier (∇pass@k when scores=None)",
          summary="Exact unbiased gradient of Best-of-k with a leave-one-out baseline; PKPO when the verifier is the "
                  "reward.")
def bon_exact(rewards, scores=None, answers=None, *, k: int = 1) -> np.ndarray:
    r, s = check_inputs(rewards, scores, k)
    n = r.size
    w = subset_weights(s, r, k)
    if n == 1:
        return w - w  # no other sample to form a baseline from: nothing to learn from one sample's value alone
    if k == 1:
        baseline = (r.sum() - r) / (n - 1) / n  # RLOO: the (k−1)-subset is empty
    else:
        baseline = leave_one_out_baseline(s, r, k)
    return cancelling_difference(w, baseline)


def out_of_subset_weights(scores, rewards, k: int) -> np.ndarray:
    """w_i = (1/C(n,k)) Σ_{S∋i} P(i is S's pick) · (R_i − mean reward of the n−k samples outside S); needs n > k.

    The samples outside a subset are independent of those inside it, so their mean is an unbiased, independent
    estimate of V(x) = E_π[R]: E[Σ_i w_i ∇log π(y_i)] = E_{y~π_bon}[(R(y) − V(x)) ∇log π(y)], Lemma 2 with the
    prompt's value as its baseline. Given that i's subset holds t members of i's tie block (i picked with
    probability 1/t) and k−t lower samples, the others' expected reward sum is linear in t, so only Σ_t and
    Σ_t t of the subset counts are needed.
    """
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    n = r.size
    block, sizes, below = _blocks(s)
    sums = np.bincount(block, weights=r, minlength=sizes.size)
    lower_sums = np.concatenate([[0.0], np.cumsum(sums)[:-1]])
    count, t_moment = _top_block_terms(sizes, below, n, k)
    m, low = sizes[block], below[block]
    c, ct = count[block] / m, t_moment[block] / m  # Σ_t α_t and Σ_t α_t t, α_t = C(m,t)C(L,k−t)/(m C(n,k))
    same_block_other = np.divide(sums[block] - r, m - 1, out=np.zeros(n), where=m > 1)  # per member taken
    lower_mean = np.divide(lower_sums[block], low, out=np.zeros(n), where=low > 0)
    inside_others = (ct - c) * same_block_other + (k * c - ct) * lower_mean  # Σ_t α_t E[others in S | t]
    outside = cancelling_difference(c * (r.sum() - r), inside_others) / (n - k)
    return cancelling_difference(c * r, outside)


def _lemma2(rewards, scores, k: int, baseline) -> np.ndarray:
    r, s = check_inputs(rewards, scores, k)
    if baseline is not None:
        return selection_probability(s, k) * (r - float(baseline))
    if r.size == k:
        raise ValueError(f"Lemma 2's default baseline is the mean reward of the samples outside each k-subset, so it "
                         f"needs n > k (got n = k = {k}); draw more samples than k, or pass a constant baseline=")
    return out_of_subset_weights(s, r, k)


_LEMMA2_NOTE = ("not ∇BoN@k: E_{y~π_bon}[(R(y) − V(x)) ∇log π(y)], V(x) = E_π[R], with the default baseline (the "
                "mean reward of the samples outside each k-subset; needs n > k); with a constant baseline b, "
                "E_{π_bon}[(R − b) ∇log π]. Lemma 2 drops the ∇log CDF term of the exact gradient")


@register("bon-rl-v", needs_scores=True, needs_more_samples_than_k=True, unbiased_for=_LEMMA2_NOTE,
          summary="BoN-RL-V (Chow et al. Lemma 2): REINFORCE on the verifier's Best-of-k pick, averaged over all "
                  "k-subsets; baseline the mean reward of the samples outside the subset.")
def bon_rl_v(rewards, scores=None, answers=None, *, k: int = 1, baseline: float | None = None) -> np.ndarray:
    return _lemma2(rewards, scores, k, baseline)


@register("bon-rl-s", needs_more_samples_than_k=True,
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
