"""The planner's side of Best-of-N with a verifier stop rule: which thresholds to try. Its value and cost are an
estimator (``infertune.estimators.stop_rule``), like every other curve."""

from __future__ import annotations

import numpy as np


def score_thresholds(scores: np.ndarray, quantiles: list[float]) -> list[float]:
    """Thresholds at quantiles of a run's verifier scores (all prompts and samples, no labels read), duplicates
    dropped. Not rounded: a verifier's scores can crowd near 1 (a sigmoid), where rounding would merge thresholds or
    lift one above every score; a plan file keeps the float exactly."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    if not len(flat):
        return []
    return sorted({float(v) for v in np.quantile(flat, quantiles)})
