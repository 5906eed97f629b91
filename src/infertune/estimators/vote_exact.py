"""Exact maj@k for every k by a generating-function dynamic programme over answers.

A random k-subset of n samples picks answer counts from a multivariate hypergeometric law. Answer a wins with
count t when every other answer has at most t votes; with j others tied at t it wins with probability 1/(j+1).
Writing 1/(j+1) = ∫_0^1 u^j du turns the tie rule into a polynomial in u, so

    #wins(a, t, k) = C(m_a, t) ∫_0^1 [z^(k-t)] (1+z)^s_t  Π_{b≠a, m_b≥t} (Σ_{x<t} C(m_b,x) z^x + u C(m_b,t) z^t) du

where s_t counts the samples whose answer cannot reach t votes (plus unparseable ones). The u-integral is done
exactly by Gauss-Legendre quadrature, and the product leaving out a by prefix and suffix products. Everything is
a sum of positive terms, so it is accurate to a few ulps for every k at once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import comb

# Binomial coefficients stay inside float64 up to here; larger n goes to the Monte-Carlo estimator.
MAX_EXACT_N = 512


@lru_cache(maxsize=1024)
def _binom_row(m: int) -> np.ndarray:
    row = comb(m, np.arange(m + 1), exact=False)
    row.setflags(write=False)
    return row


@lru_cache(maxsize=64)
def _unit_quadrature(q: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(q)
    return (x + 1) / 2, w / 2


def _polymul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise product of polynomials held as [nodes, degree+1] arrays."""
    if a.shape[1] < b.shape[1]:
        a, b = b, a
    out = np.zeros((a.shape[0], a.shape[1] + b.shape[1] - 1))
    for j in range(b.shape[1]):
        out[:, j : j + a.shape[1]] += b[:, j : j + 1] * a
    return out


def exact_cost(counts: np.ndarray) -> np.ndarray:
    """Estimated seconds of the exact programme per prompt, from answer counts [P, A].

    Calibrated on a 2-core machine: each vote count t costs a fixed Python overhead, plus work that grows with the
    number of answers still in contention at t.
    """
    counts = np.atleast_2d(counts)
    n_prompts = counts.shape[0]
    top = int(counts.max(initial=0))
    # contenders[p, t-1] = number of answers with at least t votes, from a reversed cumulative histogram.
    flat = (np.arange(n_prompts)[:, None] * (top + 2) + counts).ravel()
    hist = np.bincount(flat, minlength=n_prompts * (top + 2)).reshape(n_prompts, top + 2)
    contenders = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1 : top + 1]
    t = np.arange(1, top + 1)
    several = contenders > 1
    work = np.where(several, 2 * contenders * (t + 1) + contenders**2 * t / 2, 0.0)
    return ((contenders > 0) * 2e-5 + several * 4e-5 * contenders + work * 2e-6).sum(axis=1) + 5e-5


def maj_curve_one(counts: np.ndarray, values: np.ndarray, n_none: int) -> np.ndarray:
    """Exact maj@k for k = 1..n of one prompt, from its answer counts, answer rewards and unparseable count."""
    counts = np.asarray(counts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    keep = counts > 0
    counts, values = counts[keep], values[keep]
    n = int(counts.sum()) + int(n_none)
    if n > MAX_EXACT_N:
        raise ValueError(f"exact maj@k supports n <= {MAX_EXACT_N}, got n={n}")
    numer = np.zeros(n + 1)
    if counts.size == 0:
        return numer[1:]
    for t in range(1, int(counts.max()) + 1):
        contender = counts >= t
        idx = np.flatnonzero(contender)
        s_t = int(n_none + counts[~contender].sum())
        if idx.size == 1:
            a = idx[0]
            combined = np.array([values[a] * _binom_row(int(counts[a]))[t]])
        else:
            nodes, weights = _unit_quadrature(idx.size // 2 + 1)
            polys = []
            for b in idx:
                row = _binom_row(int(counts[b]))
                p = np.tile(row[: t + 1], (nodes.size, 1))
                p[:, t] *= nodes
                polys.append(p)
            prefix = [np.ones((nodes.size, 1))]
            for p in polys[:-1]:
                prefix.append(_polymul(prefix[-1], p))
            suffix = [np.ones((nodes.size, 1))]
            for p in reversed(polys[1:]):
                suffix.append(_polymul(suffix[-1], p))
            suffix.reverse()
            width = (idx.size - 1) * t + 1
            combined = np.zeros(width)
            for pos, a in enumerate(idx):
                coef = values[a] * _binom_row(int(counts[a]))[t]
                if coef == 0.0:
                    continue
                others = _polymul(prefix[pos], suffix[pos])
                combined[: others.shape[1]] += coef * (weights @ others)
        full = np.convolve(combined, _binom_row(s_t))
        stop = min(n + 1, t + full.size)
        numer[t:stop] += full[: stop - t]
    k = np.arange(1, n + 1)
    return numer[1:] / comb(n, k, exact=False)
