"""Objectives for binary rewards: Chow et al.'s BoN-RLB and BoN-RLB(P), and Pass@k Training (Chen et al. 2025).

BoN-RLB weighs the Best-of-N sample by functions of the failure probability p. With N = k < n, one Best-of-N
draw is averaged over all k-subsets of the n samples: a correct sample i is the subset's pick with probability
E[1/(correct samples in S)] over subsets S ∋ i; an incorrect one only in subsets with no correct sample, 1/k of
the time.
"""

from __future__ import annotations

import numpy as np

from infertune.objectives.combinatorics import binom_ratio, log_binom
from infertune.objectives.registry import check_inputs, register

P_CLIP = (0.01, 0.99)


def _failure_probability(r: np.ndarray, p: float | None) -> float:
    if p is not None:
        if not 0.0 < p < 1.0:
            raise ValueError(f"p must lie in (0, 1), got {p}")
        return float(p)
    return float(np.clip(1.0 - r.mean(), *P_CLIP))


def _pick_probabilities(r: np.ndarray, k: int) -> tuple[float, float]:
    """P(a given correct sample is the pick of a random k-subset containing it or not), and the same for an
    incorrect sample (picked only from all-incorrect subsets, uniformly)."""
    n, c = r.size, int(r.sum())
    total = log_binom(n, k)
    j = np.arange(k)
    correct = float(np.sum(np.exp(log_binom(c - 1, j) + log_binom(n - c, k - 1 - j) - total) / (j + 1))) if c else 0.0
    incorrect = float(np.exp(log_binom(n - c - 1, k - 1) - total)) / k if c < n else 0.0
    return correct, incorrect


@register("bon-rlb", unbiased_for="((1+p)/(1−p))·∇pass@k per prompt when p is the true failure probability",
          summary="BoN-RLB (Chow et al. Lemma 3): +N p^(N−1)/(1−p^N) on the correct Best-of-N sample, −N p/(1−p) on "
                  "the sample when none is correct; p from the samples, clipped to [0.01, 0.99].")
def bon_rlb(rewards, scores=None, answers=None, *, k: int = 1, p: float | None = None) -> np.ndarray:
    r, _ = check_inputs(rewards, None, k, binary=True)
    q = _failure_probability(r, p)
    g_plus = k * q ** (k - 1) / (1 - q**k)
    g_minus = k * q / (1 - q)
    correct, incorrect = _pick_probabilities(r, k)
    return np.where(r == 1, g_plus * correct, -g_minus * incorrect)


@register("bon-rlbp", unbiased_for="∇pass@k per prompt when p is the true failure probability",
          summary="BoN-RLB(P) (Chow et al. Corollary 4): positives only, N p^(N−1)(1−p)/(1−p^N) on the correct "
                  "Best-of-N sample.")
def bon_rlbp(rewards, scores=None, answers=None, *, k: int = 1, p: float | None = None) -> np.ndarray:
    r, _ = check_inputs(rewards, None, k, binary=True)
    q = _failure_probability(r, p)
    g = k * q ** (k - 1) * (1 - q) / (1 - q**k)
    correct, _ = _pick_probabilities(r, k)
    return np.where(r == 1, g * correct, 0.0)


@register("passk-chen", unbiased_for="nothing exactly: the advantages are divided by the group's std; without it "
                                      "(normalize=False) the expectation is ((n−k)/(n·k))·∇pass@k, zero at n = k",
          summary="Pass@k Training (Chen et al. 2025): analytic group advantages for pass@k, std-normalised, "
                  "averaged over the group.")
def passk_chen(rewards, scores=None, answers=None, *, k: int = 1, normalize: bool = True) -> np.ndarray:
    r, _ = check_inputs(rewards, None, k, binary=True)
    n = r.size
    n_neg = int(n - r.sum())
    mean = 1 - float(binom_ratio(n_neg, k, n, k))
    sigma = np.sqrt(mean * (1 - mean)) if normalize else 1.0
    if sigma == 0:
        return np.zeros(n)
    a_pos = (1 - mean) / sigma
    a_neg = (1 - mean - (float(binom_ratio(n_neg - 1, k - 1, n - 1, k - 1)) if n > 1 else 0.0)) / sigma
    return np.where(r == 1, a_pos, a_neg) / n
