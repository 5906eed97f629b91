"""The registry of training objectives: pure functions from one prompt's n samples to weights on ∇log π(y_i|x).

Convention: for an unbiased objective J, E[Σ_i w_i ∇log π(y_i|x)] = ∇J (per prompt), so e.g. RLOO's weights are
(R_i − mean_{j≠i} R_j)/n. One training loop serves every objective: it ascends Σ_i w_i log π(y_i|x).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Callable

import numpy as np

WeightFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Objective:
    name: str
    fn: WeightFn
    needs_scores: bool  # selects by a verifier score (falls back to the reward when none is given)
    unbiased_for: str  # what its expectation is, in words
    summary: str


_OBJECTIVES: dict[str, Objective] = {}


def register(name: str, *, needs_scores: bool = False, unbiased_for: str, summary: str):
    def decorate(fn: WeightFn) -> WeightFn:
        _OBJECTIVES[name] = Objective(name, fn, needs_scores, unbiased_for, summary)
        return fn

    return decorate


def get(name: str) -> Objective:
    if name not in _OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(sorted(_OBJECTIVES))}")
    return _OBJECTIVES[name]


def names() -> list[str]:
    return sorted(_OBJECTIVES)


def binom(a: int, b: int) -> int:
    """C(a, b), zero when b < 0 or b > a (also for a < 0), as in math.md."""
    return comb(a, b) if 0 <= b <= a else 0


def check_inputs(rewards, scores=None, k: int | None = None, *, binary: bool = False):
    """Validate one prompt's inputs; returns float arrays (scores default to the rewards)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rewards: expected a non-empty 1-D array of one prompt's n samples, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards: non-finite value")
    if binary and not np.all((r == 0) | (r == 1)):
        raise ValueError("rewards: this objective needs binary rewards in {0, 1}")
    s = r if scores is None else np.asarray(scores, dtype=np.float64)
    if s.shape != r.shape:
        raise ValueError(f"mismatched shapes: rewards {r.shape}, scores {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores: non-finite value")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= r.size:
            raise ValueError(f"k={k!r} must be an integer in 1..n with n={r.size}")
    return r, s


def sample_weights(name: str, rewards, scores=None, answers=None, *, k: int = 1, **options) -> np.ndarray:
    """Per-sample weights of objective ``name`` for one prompt's n samples; shape (n,)."""
    objective = get(name)
    return objective.fn(rewards, scores, answers, k=k, **options)
