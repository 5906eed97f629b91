"""Vote outcomes along random orderings of the samples: Monte-Carlo maj@k and weighted maj@k for every k at once.

The first k samples of a uniformly random permutation are a uniformly random k-subset, so one pass along a
permutation gives an unbiased draw of the vote outcome for every k. Within a subset the tie-break is averaged
exactly (the mean reward of the tied answers), which removes that part of the noise. Each answer's weight only grows
as samples arrive (a count, a sum of non-negative scores, or a running max), so the set of leaders can be updated in
constant time per sample. The spread across permutations gives the standard error.

The same module also enumerates every subset for small n, which is exact for weighted votes whose outcome depends on
real-valued score sums and so has no polynomial-time formula.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

# Two weights within this relative distance are a tie, so that 0.1 + 0.2 and 0.3 compare equal whatever the order
# in which a subset's scores were added up.
TIE_RTOL = 1e-9


def _tie_tol(x: np.ndarray) -> np.ndarray:
    return TIE_RTOL * np.maximum(np.abs(x), 1.0)


def scan_curves(
    ids: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray,
    aggregate: str,
    n_perm: int,
    rng: np.random.Generator,
    rows_per_chunk: int = 32768,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo vote curves: mean and standard error over n_perm permutations, each of shape [prompts, n].

    ids: answer codes (-1 unparseable) [P, n]; weights: each sample's vote weight [P, n] (1 for plain majority);
    values: reward of each answer code [P, A]; aggregate: "sum" or "max" of the weights of an answer's samples.
    """
    n_prompts, n = ids.shape
    width = values.shape[1] + 1  # last column absorbs unparseable samples
    mean = np.empty((n_prompts, n))
    se = np.empty((n_prompts, n))
    per_chunk = max(1, rows_per_chunk // n_perm)
    for start in range(0, n_prompts, per_chunk):
        stop = min(n_prompts, start + per_chunk)
        draws = _scan_chunk(ids[start:stop], weights[start:stop], values[start:stop], width, aggregate, n_perm, rng)
        mean[start:stop] = draws.mean(axis=1)
        if n_perm > 1:
            se[start:stop] = draws.std(axis=1, ddof=1) / np.sqrt(n_perm)
        else:
            se[start:stop] = np.nan
    return mean, se


def _scan_chunk(ids, weights, values, width, aggregate, n_perm, rng) -> np.ndarray:
    pc, n = ids.shape
    rows = pc * n_perm
    prompt_of_row = np.repeat(np.arange(pc), n_perm)
    perm = rng.permuted(np.tile(np.arange(n, dtype=np.int32), (rows, 1)), axis=1)
    seq_ids = np.take_along_axis(ids[prompt_of_row], perm, axis=1)
    seq_w = np.take_along_axis(weights[prompt_of_row], perm, axis=1)
    seq_ids = np.where(seq_ids < 0, width - 1, seq_ids)
    vals = np.concatenate([values, np.zeros((pc, 1))], axis=1)[prompt_of_row]

    r = np.arange(rows)
    acc = np.full((rows, width), -np.inf if aggregate == "max" else 0.0)
    member = np.full((rows, width), -1, dtype=np.int64)
    epoch = np.zeros(rows, dtype=np.int64)
    lead = np.full(rows, -np.inf)
    tie_sum = np.zeros(rows)
    tie_count = np.zeros(rows)
    out = np.empty((rows, n))
    for j in range(n):
        a = seq_ids[:, j]
        valid = a != width - 1
        if aggregate == "max":
            acc[r, a] = np.maximum(acc[r, a], seq_w[:, j])
        else:
            acc[r, a] += seq_w[:, j]
        wa = acc[r, a]
        tol = _tie_tol(np.where(np.isfinite(lead), lead, 0.0))
        beats = valid & (wa > lead + tol)
        joins = valid & ~beats & (wa >= lead - tol) & (member[r, a] != epoch)
        va = vals[r, a]
        epoch = epoch + beats
        lead = np.where(beats, wa, lead)
        tie_sum = np.where(beats, va, tie_sum + np.where(joins, va, 0.0))
        tie_count = np.where(beats, 1.0, tie_count + joins)
        changed = beats | joins
        member[r[changed], a[changed]] = epoch[changed]
        out[:, j] = np.where(tie_count > 0, tie_sum / np.maximum(tie_count, 1.0), 0.0)
    return out.reshape(pc, n_perm, n)


def enumerate_curves(ids: np.ndarray, weights: np.ndarray, values: np.ndarray, aggregate: str) -> np.ndarray:
    """Exact vote curves by visiting every k-subset, for small n; [prompts, n]."""
    n_prompts, n = ids.shape
    width = values.shape[1] + 1
    onehot = np.zeros((n_prompts, n, width))
    safe_ids = np.where(ids < 0, width - 1, ids)
    onehot[np.arange(n_prompts)[:, None], np.arange(n)[None, :], safe_ids] = 1.0
    onehot = onehot[:, :, : width - 1]
    present_any = onehot  # [P, n, A]
    out = np.zeros((n_prompts, n))
    for k in range(1, n + 1):
        subsets = np.array(list(combinations(range(n), k)))  # [S, k]
        member = present_any[:, subsets, :]  # [P, S, k, A]
        present = member.any(axis=2)  # [P, S, A]
        w = weights[:, subsets][..., None] * member  # [P, S, k, A]
        if aggregate == "max":
            agg = np.where(member > 0, w, -np.inf).max(axis=2)
        else:
            agg = w.sum(axis=2)
        agg = np.where(present, agg, -np.inf)
        best = agg.max(axis=2, keepdims=True)
        finite = np.isfinite(best)
        tied = present & finite & (agg >= best - _tie_tol(np.where(finite, best, 0.0)))
        n_tied = tied.sum(axis=2)
        val = (tied * values[:, None, :]).sum(axis=2) / np.maximum(n_tied, 1)
        out[:, k - 1] = np.where(n_tied > 0, val, 0.0).mean(axis=1)
    return out
