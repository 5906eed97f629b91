"""Objectives on a reference (expert) answer: BoN-SFT (Chow et al. Lemma 1) and DCO (Chen, Raventós et al. 2025).

Both fine-tune on supervised data while accounting for Best-of-N at inference: BoN-SFT pushes up the expert answer
and pushes down the current Best-of-N answer, each with a term that compares it with the policy's own samples; DCO
scales the usual cross-entropy gradient of a reference answer by how much one more sample of it would still matter.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.optimize import brentq


@lru_cache(maxsize=256)
def bon_lambda(n: int) -> float:
    """λ_N of the variational Best-of-N policy π ∝ π·exp(λ_N Q): the root of
    ((λ−1)e^λ + 1)/(e^λ − 1) − log((e^λ − 1)/λ) = log N − (N−1)/N (about 2.29, 4.92, 9.06, 17.0, 33.0 for N = 2..32).
    """
    if n < 2:
        raise ValueError("λ_N needs N >= 2 (Best-of-1 is the policy itself)")
    target = np.log(n) - (n - 1) / n

    def gap(lam: float) -> float:
        em1 = np.expm1(lam)
        return ((lam - 1) * np.exp(lam) + 1) / em1 - np.log(em1 / lam) - target

    return float(brentq(gap, 1e-6, 10.0 * n + 50.0, xtol=1e-12))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def bon_sft_weights(expert_score: float, scores, n_best: int, lam: float | None = None) -> tuple[float, np.ndarray]:
    """Weights (on the expert answer, on each of the n samples) of ∇f(x, y*) − ∇f(x, y_bon) (Lemma 1), where
    ∇f(x, y) = ∇log π(y|x) + λ_N E_{y'~π}[∇log π(y'|x) σ(r(x,y) − r(x,y'))] and y_bon is the verifier's pick."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError("scores: expected a non-empty 1-D array of finite verifier scores")
    lam = bon_lambda(n_best) if lam is None else lam
    best = np.flatnonzero(s == s.max())
    s_bon = s[best[0]]
    w = lam / s.size * (_sigmoid(expert_score - s) - _sigmoid(s_bon - s))
    w[best] -= 1.0 / best.size  # ties: the pick is uniform among the top-scored samples
    return 1.0, w


def dco_factor(sequence_logprob, n_best: int) -> np.ndarray:
    """DCO's gradient scale F = N(1−p̂)^(N−1) p̂ / (1 − (1−p̂)^N) on ∇log π(y|x), p̂ = π(y|x) = exp(sequence_logprob):
    the derivative of −log(1 − (1 − p̂)^N). F is 1 as p̂ → 0 (plain cross-entropy) and falls to 0 as p̂ → 1."""
    lp = np.asarray(sequence_logprob, dtype=np.float64)
    if np.any(lp > 0):
        raise ValueError("sequence log-probabilities must be <= 0")
    p = np.exp(lp)
    q = -np.expm1(lp)  # 1 − p̂ without cancellation
    denom = -np.expm1(n_best * np.log1p(-np.minimum(p, 1 - 1e-300)))
    with np.errstate(invalid="ignore", divide="ignore"):
        f = n_best * q ** (n_best - 1) * p / denom
    return np.where(p < 1e-12, 1.0, np.nan_to_num(f, nan=0.0))
