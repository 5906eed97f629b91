"""The registry of training objectives: pure functions from one prompt's n samples to weights on ∇log π(y_i|x).

Convention: for an unbiased objective J, E[Σ_i w_i ∇log π(y_i|x)] = ∇J (per prompt), so e.g. RLOO's weights are
(R_i − mean_{j≠i} R_j)/n. One training loop serves every objective: it ascends Σ_i w_i log π(y_i|x).

Objectives that also learn from a reference (expert) answer (sft, dco, bon-sft) are registered here too, with
``needs_reference``: their weight function takes the verifier's score of the reference as ``expert_score`` and
returns n + 1 weights, the reference's first. ``draws_samples`` is False for plain SFT, which samples nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from infertune.registry import Registry

WeightFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Objective:
    name: str
    fn: WeightFn
    needs_scores: bool  # selects by a verifier score (falls back to the reward when none is given)
    unbiased_for: str  # what its expectation is, in words
    summary: str
    needs_more_samples_than_k: bool = False  # its default baseline uses samples outside each k-subset
    needs_reference: bool = False  # learns from the problem's reference answer too (weights: reference first)
    draws_samples: bool = True  # False: nothing is sampled (plain SFT)
    scales_reference_by_dco: bool = False  # the reference's weight is multiplied by DCO's factor at update time


OBJECTIVES: Registry[Objective] = Registry("objective")


def register(name: str, *, needs_scores: bool = False, unbiased_for: str, summary: str,
             needs_more_samples_than_k: bool = False, needs_reference: bool = False, draws_samples: bool = True,
             scales_reference_by_dco: bool = False):
    def decorate(fn: WeightFn) -> WeightFn:
        OBJECTIVES.register(name, Objective(name, fn, needs_scores, unbiased_for, summary, needs_more_samples_than_k,
                                            needs_reference, draws_samples, scales_reference_by_dco))
        return fn

    return decorate


def get(name: str) -> Objective:
    return OBJECTIVES.get(name)


def names(*, reference: bool | None = None) -> list[str]:
    """Every objective's name; ``reference=False`` only those that learn from samples alone (what other engines'
    advantage estimators can use), ``True`` only those that also need a reference answer."""
    return [n for n, o in OBJECTIVES.items() if reference is None or o.needs_reference == reference]


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
    """Per-sample weights of objective ``name`` for one prompt's n samples; shape (n,), or (n + 1,) with the
    reference's weight first for objectives that need a reference (pass ``expert_score=``)."""
    objective = get(name)
    if objective.needs_reference and "expert_score" not in options:
        raise ValueError(f"objective {name!r} learns from a reference answer: pass expert_score= (the verifier's "
                         "score of the reference)")
    return objective.fn(rewards, scores, answers, k=k, **options)
