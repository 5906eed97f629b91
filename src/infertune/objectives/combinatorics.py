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
