"""Best-of-N and its stop rule when some candidates are already drawn: a plan's probe samples kept as candidates.

A plan that predicts difficulty draws m probe samples per prompt before it chooses a strategy. Throwing them away
charges m samples for nothing but the bin; keeping them as candidates makes Best-of-N over the m probes and k fresh
samples cost k, and lets an easy prompt answer with a probe at no extra cost. The value is conditional on the probes
actually drawn (they are fixed: the plan binned the prompt by them), and the k fresh samples are a uniformly random
k-subset of the prompt's other n stored samples, so the estimate is exact and unbiased for k fresh i.i.d. draws, as
the subset estimators of ``ranked`` are.

Ties are broken uniformly at random among every candidate with the top score (probes and fresh samples alike).
With a the probes' best score, c the probes at a and ρ their mean reward: a fresh sample above a is the answer
exactly when it is the top of the subset (``ranked``'s rank weights, tie blocks replaced by their mean reward); if
the subset's top is at most a, the answer is drawn among the c probes and the j fresh samples at exactly a, whose
count is hypergeometric, with expected reward (c·ρ + j·R̄_a)/(c + j) for R̄_a the mean reward of the pool's samples
at a.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from infertune.estimators.inputs import as_matrix, check_same_shape
from infertune.estimators.ranked import _rank_weights, sort_with_tie_means
from infertune.estimators.stop_rule import stop_curves


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    """log C(n, k), −inf where k < 0 or k > n."""
    n, k = np.broadcast_arrays(np.asarray(n, dtype=np.float64), np.asarray(k, dtype=np.float64))
    valid = (k >= 0) & (k <= n)
    safe_k = np.where(valid, k, 0.0)
    out = gammaln(n + 1) - gammaln(safe_k + 1) - gammaln(np.where(valid, n - safe_k, 0.0) + 1)
    return np.where(valid, out, -np.inf)


def _checked(scores, rewards, forced_scores, forced_rewards):
    s = as_matrix("scores", scores, allow_minus_inf=True)
    r = as_matrix("rewards", rewards)
    fs = as_matrix("forced_scores", forced_scores, allow_minus_inf=True)
    fr = as_matrix("forced_rewards", forced_rewards)
    check_same_shape(scores=s, rewards=r)
    check_same_shape(forced_scores=fs, forced_rewards=fr)
    if fs.shape[0] != s.shape[0]:
        raise ValueError(f"forced_scores: {fs.shape[0]} prompts, scores has {s.shape[0]}")
    return s, r, fs, fr


def _forced_best(fs: np.ndarray, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt: the forced candidates' best score a, how many reach it, and their mean reward."""
    a = fs.max(axis=1)
    at_a = fs == a[:, None]
    c = at_a.sum(axis=1)
    return a, c, (fr * at_a).sum(axis=1) / c


def bon_curve_forced(scores, rewards, forced_scores, forced_rewards) -> np.ndarray:
    """Best-of-(m + k) over the m ``forced`` candidates and a random k-subset of the n pool samples, for every
    k = 0..n. ``scores``, ``rewards``: [prompts, n]; ``forced_*``: [prompts, m], m ≥ 1. Returns [prompts, n + 1]
    (column k is k fresh samples). A score may be −inf (picked only when every candidate scores −inf)."""
    s, r, fs, fr = _checked(scores, rewards, forced_scores, forced_rewards)
    prompts, n = s.shape
    a, c, rho = _forced_best(fs, fr)
    out = np.empty((prompts, n + 1))
    out[:, 0] = rho
    order = np.argsort(s, axis=1, kind="stable")
    sorted_s = np.take_along_axis(s, order, axis=1)
    sorted_r = sort_with_tie_means(s, r)
    above = sorted_s > a[:, None]
    out[:, 1:] = (sorted_r * above) @ _rank_weights(n).T
    # The subset's top is at most a: b pool samples below a, e at a (mean reward r_a); j of the k drawn are at a.
    below = s < a[:, None]
    tied = s == a[:, None]
    b, e = below.sum(axis=1), tied.sum(axis=1)
    r_a = np.where(e > 0, (r * tied).sum(axis=1) / np.maximum(e, 1), 0.0)
    k = np.arange(1, n + 1)[None, :]
    log_all = _log_comb(n, k)
    for j in range(int(e.max()) + 1):
        weight = np.exp(_log_comb(e[:, None], j) + _log_comb(b[:, None], k - j) - log_all)
        out[:, 1:] += weight * ((c * rho + j * r_a) / (c + j))[:, None]
    return out


def stop_curves_forced(scores, rewards, tokens, forced_scores, forced_rewards,
                       threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stop rule at ``threshold`` with the m ``forced`` candidates drawn first: if one of them scores at least
    the threshold, stop at once and answer with the best of them; otherwise draw fresh samples one at a time until
    one reaches the threshold or ``cap`` are drawn, and answer with the best-scored candidate (forced or fresh).

    Returns value, expected fresh draws and expected fresh tokens, each [prompts, n + 1] (column = cap 0..n); the
    forced candidates cost nothing here (the caller has paid for them)."""
    s, r, fs, fr = _checked(scores, rewards, forced_scores, forced_rewards)
    t = as_matrix("tokens", tokens)
    check_same_shape(scores=s, tokens=t)
    prompts, n = s.shape
    stopped_early = fs.max(axis=1) >= threshold
    # Given no forced candidate reaches the threshold, a fresh sample that does is the answer, as in ``stop_curves``:
    # raising every such sample to one common top score lets Best-of-N's tie rule draw the first of them.
    top = max(s.max(), fs.max()) + 1.0
    raised = np.where(s >= threshold, top, s)
    values = bon_curve_forced(raised, r, fs, fr)
    draws = np.zeros((prompts, n + 1))
    spent = np.zeros((prompts, n + 1))
    _, draws[:, 1:], spent[:, 1:] = stop_curves(s, r, t, threshold)
    values = np.where(stopped_early[:, None], _forced_best(fs, fr)[2][:, None], values)
    draws[stopped_early] = 0.0
    spent[stopped_early] = 0.0
    return values, draws, spent
