"""maj@k and weighted maj@k: the answer with the most votes (or the most verifier weight) wins.

Exact where that is affordable and Monte-Carlo with a reported standard error where it is not; never "the first k
samples". An unparseable answer (None) never wins; a subset of only unparseable samples returns no answer, reward 0.
Ties between answers are broken uniformly at random and averaged exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from infertune.estimators.inputs import EncodedAnswers, answer_values, as_matrix, check_k, encode_answers
from infertune.estimators.ranked import bon_curve
from infertune.estimators.vote_exact import MAX_EXACT_N, exact_cost, maj_curve_one
from infertune.estimators.vote_scan import enumerate_curves, scan_curves

Method = Literal["auto", "exact", "mc"]
Aggregate = Literal["sum", "max"]

# Largest n whose 2^n subsets are enumerated for exact weighted votes.
MAX_ENUMERATE_N = 12
# Estimated seconds that "auto" may spend on exact maj@k before it uses Monte-Carlo instead.
EXACT_BUDGET_S = 2.0
# Monte-Carlo permutations: enough in total for a tight mean, never fewer than this per prompt.
MC_TOTAL_DRAWS = 20_000
MC_MIN_PER_PROMPT = 2


@dataclass(frozen=True)
class Estimate:
    """Per-prompt estimates with their Monte-Carlo standard error (0 where computed exactly).

    ``values`` and ``stderr`` have the shape of the request ([prompts] for one k, [prompts, n] for a curve);
    ``exact`` says per prompt which method was used. ``np.asarray(estimate)`` gives the values.
    """

    values: np.ndarray
    stderr: np.ndarray
    exact: np.ndarray

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def mean(self) -> np.ndarray:
        """Mean over prompts."""
        return self.values.mean(axis=0)

    def mean_stderr(self) -> np.ndarray:
        """Monte-Carlo standard error of the mean over prompts (prompts are estimated independently)."""
        return np.sqrt((self.stderr**2).sum(axis=0)) / self.values.shape[0]

    def at_k(self, k: int) -> "Estimate":
        k = check_k(k, self.values.shape[1])
        return Estimate(self.values[:, k - 1], self.stderr[:, k - 1], self.exact)


def _prepare(answers: Any, rewards: Any) -> tuple[EncodedAnswers, np.ndarray, np.ndarray]:
    r = as_matrix("rewards", rewards)
    enc = encode_answers(answers)
    if enc.ids.shape != r.shape:
        raise ValueError(f"mismatched shapes: answers {enc.ids.shape}, rewards {r.shape}")
    return enc, r, answer_values(enc, r)


def _n_perm(n_prompts: int, mc_samples: int | None) -> int:
    if mc_samples is not None:
        if mc_samples < 2:
            raise ValueError("mc_samples must be at least 2 to estimate a standard error")
        return int(mc_samples)
    return int(np.clip(np.ceil(MC_TOTAL_DRAWS / max(n_prompts, 1)), MC_MIN_PER_PROMPT, 1024))


def maj_curve(
    answers: Any,
    rewards: Any,
    *,
    method: Method = "auto",
    mc_samples: int | None = None,
    seed: int = 0,
) -> Estimate:
    """maj@k for every k = 1..n, shape [prompts, n].

    method: "exact" (generating-function programme, n <= 512), "mc" (random permutations), or "auto" (exact when
    the whole batch is estimated to take at most EXACT_BUDGET_S seconds, else Monte-Carlo).
    """
    enc, r, values = _prepare(answers, rewards)
    n_prompts, n = r.shape
    counts = _answer_counts(enc, values.shape[1])
    n_none = (enc.ids < 0).sum(axis=1)
    use_exact = _choose_exact(counts, n, method)

    out = np.zeros((n_prompts, n))
    se = np.zeros((n_prompts, n))
    memo: dict[tuple, np.ndarray] = {}
    for p in np.flatnonzero(use_exact):
        key = (tuple(sorted(zip(counts[p].tolist(), values[p].tolist()))), int(n_none[p]))
        if key not in memo:
            memo[key] = maj_curve_one(counts[p], values[p], int(n_none[p]))
        out[p] = memo[key]
    mc = ~use_exact
    if mc.any():
        rng = np.random.default_rng(seed)
        mean, err = scan_curves(enc.ids[mc], np.ones((int(mc.sum()), n)), values[mc], "sum",
                                _n_perm(int(mc.sum()), mc_samples), rng)
        out[mc], se[mc] = mean, err
    return Estimate(out, se, use_exact)


def maj_at_k(answers: Any, rewards: Any, k: int, **options: Any) -> Estimate:
    """maj@k for one k; per-prompt ``Estimate`` of shape [prompts]."""
    curve = maj_curve(answers, rewards, **options)
    return curve.at_k(k)


def weighted_maj_curve(
    answers: Any,
    scores: Any,
    rewards: Any,
    *,
    aggregate: Aggregate = "sum",
    method: Method = "auto",
    mc_samples: int | None = None,
    seed: int = 0,
) -> Estimate:
    """Weighted maj@k for every k: each answer's weight is the sum (or max) of its samples' verifier scores.

    With aggregate="sum" scores must be non-negative (a vote cannot count against its answer). Exact by enumerating
    every subset when n <= 12; with aggregate="max" and no score tie between different answers, exact for any n as
    Best-of-k over answer rewards; otherwise Monte-Carlo.
    """
    if aggregate not in ("sum", "max"):
        raise ValueError(f"aggregate must be 'sum' or 'max', got {aggregate!r}")
    enc, r, values = _prepare(answers, rewards)
    s = as_matrix("scores", scores, allow_minus_inf=True)
    if s.shape != r.shape:
        raise ValueError(f"mismatched shapes: answers {enc.ids.shape}, scores {s.shape}, rewards {r.shape}")
    # A sample without an answer casts no vote, so its score is never read: −inf there (an empty completion's
    # confidence) is allowed and set aside; a vote needs a finite weight.
    voting = enc.ids >= 0
    if np.any(voting & np.isneginf(s)):
        p, i = np.argwhere(voting & np.isneginf(s))[0]
        raise ValueError(f"scores: weighted majority needs a finite score for every sample with an answer; got -inf "
                         f"at prompt {p}, sample {i}")
    s = np.where(voting, s, 0.0)
    if aggregate == "sum" and np.any(s < 0):
        p, i = np.argwhere(s < 0)[0]
        raise ValueError(f"scores: weighted majority with aggregate='sum' needs non-negative scores; got {s[p, i]} "
                         f"at prompt {p}, sample {i} (rescale, e.g. to probabilities, or use aggregate='max')")
    n_prompts, n = r.shape
    if method == "exact" and n > MAX_ENUMERATE_N and aggregate == "sum":
        raise ValueError(f"exact weighted maj@k with aggregate='sum' enumerates subsets and needs n <= "
                         f"{MAX_ENUMERATE_N}, got n={n}; use method='mc'")

    out = np.zeros((n_prompts, n))
    se = np.zeros((n_prompts, n))
    exact = np.zeros(n_prompts, dtype=bool)
    if method != "mc" and n <= MAX_ENUMERATE_N:
        exact[:] = True
        chunk = max(1, 200_000 // (2**n))
        for start in range(0, n_prompts, chunk):
            sl = slice(start, start + chunk)
            out[sl] = enumerate_curves(enc.ids[sl], s[sl], values[sl], aggregate)
        return Estimate(out, se, exact)
    if method != "mc" and aggregate == "max":
        exact = ~_cross_answer_score_ties(enc.ids, s)
        if method == "exact" and not exact.all():
            raise ValueError("exact weighted maj@k with aggregate='max' needs no score ties between different "
                             "answers when n > 12; use method='mc'")
        if exact.any():
            # The answer holding the top-scored sample wins: Best-of-k with every sample carrying its answer's reward.
            ids = enc.ids[exact]
            sample_value = np.where(ids >= 0, np.take_along_axis(values[exact], np.maximum(ids, 0), axis=1), 0.0)
            ranked_scores = np.where(ids >= 0, s[exact], -np.inf)
            out[exact] = bon_curve(ranked_scores, sample_value)
    mc = ~exact
    if mc.any():
        rng = np.random.default_rng(seed)
        mean, err = scan_curves(enc.ids[mc], s[mc], values[mc], aggregate, _n_perm(int(mc.sum()), mc_samples), rng)
        out[mc], se[mc] = mean, err
    return Estimate(out, se, exact)


def weighted_maj_at_k(answers: Any, scores: Any, rewards: Any, k: int, **options: Any) -> Estimate:
    """Weighted maj@k for one k; per-prompt ``Estimate`` of shape [prompts]."""
    return weighted_maj_curve(answers, scores, rewards, **options).at_k(k)


def _cross_answer_score_ties(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per prompt: do two samples with different valid answers share a score?"""
    order = np.lexsort((ids, scores), axis=-1)
    s = np.take_along_axis(scores, order, axis=1)
    a = np.take_along_axis(ids, order, axis=1)
    clash = (s[:, 1:] == s[:, :-1]) & (a[:, 1:] != a[:, :-1]) & (a[:, 1:] >= 0) & (a[:, :-1] >= 0)
    # Within an equal-score block sorted by id, different valid ids that are adjacent reveal the clash, except
    # when a None (-1) sits between them; -1 sorts first in a block, so adjacency of valid ids is enough.
    return clash.any(axis=1)


def _answer_counts(enc: EncodedAnswers, width: int) -> np.ndarray:
    n_prompts = enc.ids.shape[0]
    valid = enc.ids >= 0
    flat = (np.arange(n_prompts)[:, None] * width + enc.ids)[valid]
    return np.bincount(flat, minlength=n_prompts * width).reshape(n_prompts, width)


def _choose_exact(counts: np.ndarray, n: int, method: Method) -> np.ndarray:
    n_prompts = counts.shape[0]
    if method not in ("auto", "exact", "mc"):
        raise ValueError(f"method must be 'auto', 'exact' or 'mc', got {method!r}")
    if method == "mc":
        return np.zeros(n_prompts, dtype=bool)
    if n > MAX_EXACT_N:
        if method == "exact":
            raise ValueError(f"exact maj@k supports n <= {MAX_EXACT_N}, got n={n}; use method='mc'")
        return np.zeros(n_prompts, dtype=bool)
    if method == "exact":
        return np.ones(n_prompts, dtype=bool)
    # Exact for the whole batch when its estimated time fits the budget; a cheap lower bound (the per-count
    # overhead alone) rules out large batches before the full estimate is computed.
    lower_bound = float((5e-5 + 2e-5 * counts.max(axis=1)).sum())
    affordable = lower_bound <= EXACT_BUDGET_S and float(exact_cost(counts).sum()) <= EXACT_BUDGET_S
    return np.full(n_prompts, affordable)
