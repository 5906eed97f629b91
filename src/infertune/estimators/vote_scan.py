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
    rows_per_chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo vote curves: mean and standard error over n_perm permutations, each of shape [prompts, n].

    ids: answer codes (-1 unparseable) [P, n]; weights: each sample's vote weight [P, n] (1 for plain majority);
    values: reward of each answer code [P, A]; aggregate: "sum" or "max" of the weights of an answer's samples.
    """
    if aggregate not in ("sum", "max"):
        raise ValueError(f"aggregate must be 'sum' or 'max', got {aggregate!r}")
    n_prompts, n = ids.shape
    mean = np.empty((n_prompts, n))
    se = np.empty((n_prompts, n))
    per_chunk = max(1, rows_per_chunk // n_perm)
    integral = aggregate == "sum" and bool(np.all(weights == np.round(weights)))
    for start in range(0, n_prompts, per_chunk):
        stop = min(n_prompts, start + per_chunk)
        draws = _scan_chunk(ids[start:stop], weights[start:stop], values[start:stop], aggregate, integral,
                            n_perm, rng)  # [n, n_perm, prompts]
        mean[start:stop] = draws.mean(axis=1).T
        se[start:stop] = (draws.std(axis=1, ddof=1).T / np.sqrt(n_perm)) if n_perm > 1 else np.nan
    return mean, se


def _scan_chunk(ids, weights, values, aggregate, integral, n_perm, rng) -> np.ndarray:
    pc, n = ids.shape
    width = values.shape[1] + 1  # the last column is a sink for unparseable samples: its weight stays -inf
    rows = pc * n_perm
    # Row m * pc + p is permutation m of prompt p. Arrays are laid out [step, row] so that step j reads one
    # contiguous row, and the draws of one prompt end up side by side after a reshape.
    prompt_of_row = np.tile(np.arange(pc), n_perm)
    perm = rng.permuted(np.broadcast_to(np.arange(n)[:, None], (n, rows)).copy(), axis=0)
    source = perm + (prompt_of_row * n)[None, :]
    del perm
    seq_ids = ids.ravel()[source]
    sink = seq_ids < 0
    seq_ids[sink] = width - 1
    seq_w = weights.ravel()[source]
    seq_w[sink] = -np.inf
    del source, sink
    vals = np.concatenate([values, np.zeros((pc, 1))], axis=1)
    seq_v = vals.ravel()[seq_ids + (prompt_of_row * width)[None, :]]
    # The accumulator is laid out [answer, row]: step j touches one entry per row, spread over few answer streams.
    flat = seq_ids * rows + np.arange(rows)[None, :]
    del seq_ids

    dtype = np.float32 if integral and n < 2**24 else np.float64  # vote counts are exact in float32
    acc = np.full(rows * width, -np.inf, dtype=dtype) if aggregate == "max" else np.zeros(rows * width, dtype=dtype)
    acc[(width - 1) * rows :] = -np.inf
    seq_w = seq_w.astype(dtype, copy=False)
    # When every sample strictly raises its answer's weight past the tie band, an answer that reaches the lead
    # cannot already be tied with it, and the membership bookkeeping can be skipped.
    finite_w = weights[np.isfinite(weights)]
    top = float(np.abs(finite_w).max(initial=1.0)) * n
    track_members = not (aggregate == "sum" and finite_w.size and finite_w.min() > 2 * TIE_RTOL * max(top, 1.0))
    member = np.full(rows * width, -1, dtype=np.int32) if track_members else None
    epoch = np.zeros(rows, dtype=np.int32)
    hi = np.full(rows, -np.inf, dtype=dtype)  # a weight above hi takes the lead alone
    lo = np.full(rows, np.inf, dtype=dtype)  # a weight at or above lo ties with the lead (none before a lead exists)
    tie_sum = np.zeros(rows)
    tie_count = np.zeros(rows)
    out = np.empty((n, rows))
    for j in range(n):
        idx = flat[j]
        if aggregate == "max":
            wa = np.maximum(acc[idx], seq_w[j])
        else:
            wa = acc[idx] + seq_w[j]
        acc[idx] = wa
        beats = wa > hi
        # Ties with the lead but does not beat it. (Not ``(wa >= lo) ^ beats``: before any lead lo is +inf, so the
        # first lead would also count as joining its own tie, twice in the average until another answer beats it.)
        joins = (wa >= lo) & ~beats
        if track_members:
            joins &= member[idx] != epoch
        va = seq_v[j]
        if beats.any():
            if track_members:
                epoch += beats
            if integral:
                np.copyto(hi, wa, where=beats)
                np.copyto(lo, wa, where=beats)
            else:
                tol = _tie_tol(np.where(beats, wa, 0.0))
                np.copyto(hi, wa + tol, where=beats)
                np.copyto(lo, wa - tol, where=beats)
            np.copyto(tie_sum, va, where=beats)
            np.copyto(tie_count, 1.0, where=beats)
        np.add(tie_sum, va, out=tie_sum, where=joins)
        tie_count += joins
        if track_members:
            changed = beats | joins
            member[idx[changed]] = epoch[changed]
        np.divide(tie_sum, np.maximum(tie_count, 1.0), out=out[j])
    return out.reshape(n, n_perm, pc)


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
