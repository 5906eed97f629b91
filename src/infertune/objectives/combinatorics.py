"""Binomial coefficients for the objectives, in log space.

The weights of the Best-of-k objectives are ratios such as C(i−1, k−1)/C(n, k). Formed from exact integers and then
divided, they overflow a float long before the ratio itself does (n = 1100, k = 550 already does), so every ratio is
taken as exp(log C(a, b) − log C(n, k)) instead. ``log_binom`` follows math.md's convention: C(a, b) = 0 (log −inf)
when b < 0 or b > a, also for a < 0.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln


def log_binom(a, b) -> np.ndarray:
    """log C(a, b), elementwise over broadcast arrays; −inf where the coefficient is 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    valid = (b >= 0) & (b <= a)
    a_ok, b_ok = np.where(valid, a, 0.0), np.where(valid, b, 0.0)
    value = gammaln(a_ok + 1) - gammaln(b_ok + 1) - gammaln(a_ok - b_ok + 1)
    return np.where(valid, value, -np.inf)


def binom_ratio(a, b, n, k) -> np.ndarray:
    """C(a, b)/C(n, k) without forming either coefficient; 0 where C(a, b) is 0."""
    return np.exp(log_binom(a, b) - log_binom(n, k))


# Relative agreement below which two operands of a weight are taken as cancelling exactly (module ``bon``).
CANCELLATION_RTOL = 1e-10


def cancelling_difference(a, b, rtol: float = CANCELLATION_RTOL) -> np.ndarray:
    """a − b, set to exactly 0 where a and b agree to ``rtol`` of the larger of |a|, |b|.

    The Best-of-k weights are differences of sums of exp(log C) terms. Where the exact weight is 0 (bon-exact once
    more than n − k + 1 samples are correct, so that every k-subset's pick is right with or without the sample, or a
    Lemma 2 sample whose reward equals its subsets' outside mean), the floats leave a residue of about 1e-15, and a
    prompt with no gradient would count as having one: in the telemetry's non-zero share, in the update (its
    sequences kept instead of left idle) and in the rollout allocation's value. The group baselines (rloo, grpo,
    dr-grpo) have the same residue on equal fractional rewards (0.1 − mean of 0.1s). Treating a difference smaller
    than 1e-10 of its operands as 0 changes a weight by less than that fraction of its parts. The threshold sits about
    1000 times above the float residue, so it also zeroes some weights that are not 0 in exact arithmetic and were
    computed correctly, all too small to move anything (bon-exact at n = 39, k = 16 with 24 correct samples:
    2.7e-11; at n = 64, k = 16 with 49 correct: 2e-15, below the residue itself).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a - b
    return np.where(np.abs(d) <= rtol * np.maximum(np.abs(a), np.abs(b)), 0.0, d)
