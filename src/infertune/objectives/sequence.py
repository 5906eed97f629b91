"""Objectives on a reference (expert) answer: BoN-SFT (Chow et al. Lemma 1) and DCO (Chen, Raventós et al. 2025).

Both fine-tune on supervised data while accounting for Best-of-N at inference: BoN-SFT pushes up the expert answer
and pushes down the current Best-of-N answer, each with a term that compares it with the policy's own samples; DCO
scales the usual cross-entropy gradient of a reference answer by how much one more sample of it would still matter.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.optimize import brentq

from infertune.objectives.registry import register


@lru_cache(maxsize=256)
def bon_lambda(n: int) -> float:
    """λ_N of the variational Best-of-N policy π ∝ π·exp(λ_N Q): the root of
    ((λ−1)e^λ + 1)/(e^λ − 1) − log((e^λ − 1)/λ) = log N − (N−1)/N (about 2.29, 4.92, 9.06, 17.0, 33.0 for N = 2..32).
    """
    if n < 1:
        raise ValueError(f"λ_N needs N >= 1, got {n}")
    if n == 1:
        return 0.0  # Best-of-1 is the policy itself: the equation's right side is 0, and so is its root
    target = np.log(n) - (n - 1) / n

    def gap(lam: float) -> float:
        em1 = np.expm1(lam)
        return ((lam - 1) * np.exp(lam) + 1) / em1 - np.log(em1 / lam) - target

    return float(brentq(gap, 1e-6, 10.0 * n + 50.0, xtol=1e-12))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def bon_sft_weights(expert_score: float, scores, n_best: int, lam: float | None = None) -> tuple[float, np.ndarray]:
    """Weights (on the expert answer, on each of the n samples) of ∇f(x, y*) − ∇f(x, y_bon) (Lemma 1), where
    ∇f(x, y) = ∇log π(y|x) + λ_N E_{y'~π}[∇log π(y'|x) σ(r(x,y) − r(x,y'))], N = ``n_best``.

    y_bon is the verifier's pick from N samples. From n ≥ N samples the pick of a random N-subset is averaged out
    exactly (Rao-Blackwellised): sample b is the pick with probability p_b (``selection_probability``, ties split
    evenly), so −∇f(x, y_bon) becomes −Σ_b p_b [∇log π(y_b) + λ_N (1/n) Σ_j ∇log π(y_j) σ(r_b − r_j)]. With N = n
    this is the argmax of the n samples. The inner expectation is estimated with the same n samples (math.md)."""
    from infertune.objectives.bon import selection_probability

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError("scores: expected a non-empty 1-D array of finite verifier scores")
    if not 1 <= n_best <= s.size:
        raise ValueError(f"BoN-SFT picks from N = {n_best} samples; it needs 1 <= N <= n = {s.size}")
    lam = bon_lambda(n_best) if lam is None else lam
    pick = selection_probability(s, n_best)
    compared = pick @ _sigmoid(s[:, None] - s[None, :])  # Σ_b p_b σ(r_b − r_j), for every j
    w = lam / s.size * (_sigmoid(expert_score - s) - compared) - pick
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


def _with_reference(expert: float, samples) -> np.ndarray:
    return np.concatenate([[float(expert)], np.asarray(samples, dtype=np.float64)])


@register("sft", needs_reference=True, draws_samples=False,
          unbiased_for="∇log π(y*|x): maximum likelihood of the reference answer",
          summary="Supervised fine-tuning on the task's reference answers (nothing is sampled).")
def sft(rewards, scores=None, answers=None, *, k: int = 1, expert_score: float | None = None) -> np.ndarray:
    return _with_reference(1.0, np.zeros(np.size(rewards)))


@register("dco", needs_reference=True, scales_reference_by_dco=True,
          unbiased_for="∇ of −log(1 − (1 − π(y*|x))^N): DCO's Best-of-N-aware likelihood of the reference",
          summary="DCO (Chen, Raventós et al. 2025): the reference's cross-entropy gradient scaled by "
                  "N(1−p̂)^(N−1) p̂ / (1 − (1−p̂)^N), p̂ = π(y*|x).")
def dco(rewards, scores=None, answers=None, *, k: int = 1, expert_score: float | None = None) -> np.ndarray:
    return _with_reference(1.0, np.zeros(np.size(rewards)))


@register("bon-sft", needs_scores=True, needs_reference=True,
          unbiased_for="Lemma 1 of Chow et al.: ∇f(x, y*) − ∇f(x, y_bon), the expectation in f estimated with the n "
                       "samples (y_bon among them)",
          summary="BoN-SFT (Chow et al. Lemma 1): push up the expert answer and push down the verifier's Best-of-N "
                  "pick, each compared with the samples through σ of verifier-score gaps, scaled by λ_N.")
def bon_sft(rewards, scores=None, answers=None, *, k: int = 1, expert_score: float | None = None) -> np.ndarray:
    s = np.asarray(rewards if scores is None else scores, dtype=np.float64)
    if expert_score is None:
        raise ValueError("bon-sft needs expert_score, the verifier's score of the reference answer")
    w_expert, w = bon_sft_weights(float(expert_score), s, k)
    return _with_reference(w_expert, w)
