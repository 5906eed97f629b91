"""Confidence intervals by resampling prompts.

The prompts of a benchmark are the unit of sampling: a run's n samples of one prompt are not independent draws of
the benchmark score, so the bootstrap resamples whole prompts (rows), never samples within a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """Mean over prompts with a percentile-bootstrap interval; arrays share the trailing shape of the input."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    confidence: float
    resamples: int


def bootstrap_mean(per_prompt, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                   chunk: int = 200) -> Interval:
    """Percentile-bootstrap interval of the mean over prompts (axis 0) of ``per_prompt`` [prompts, ...]."""
    x = np.asarray(per_prompt, dtype=np.float64)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError("bootstrap_mean: need at least one prompt")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    n_prompts = x.shape[0]
    flat = x.reshape(n_prompts, -1)
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, flat.shape[1]))
    uniform = np.full(n_prompts, 1.0 / n_prompts)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        # Multinomial counts are the bootstrap resample; a matrix product averages all columns at once.
        counts = rng.multinomial(n_prompts, uniform, size=stop - start)
        means[start:stop] = counts @ flat / n_prompts
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    shape = x.shape[1:]
    return Interval(flat.mean(axis=0).reshape(shape), low.reshape(shape), high.reshape(shape), confidence, resamples)
