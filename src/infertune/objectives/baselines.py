"""Inference-unaware baselines: they train for one sample (pass@1) or imitate correct samples."""

from __future__ import annotations

import numpy as np

from infertune.objectives.combinatorics import cancelling_difference
from infertune.objectives.registry import check_inputs, register


@register("rloo", unbiased_for="∇pass@1 (expected reward)",
          summary="REINFORCE with the leave-one-out mean as baseline (Ahmadian et al. 2024).")
def rloo(rewards, scores=None, answers=None, *, k: int = 1) -> np.ndarray:
    r, _ = check_inputs(rewards)
    n = r.size
    if n == 1:
        return np.zeros(1)
    return cancelling_difference(r, (r.sum() - r) / (n - 1)) / n


@register("grpo", unbiased_for="nothing exactly: dividing by the group's std biases it",
          summary="GRPO's group-normalised advantage (R_i − mean R)/(std R + eps), averaged over the group.")
def grpo(rewards, scores=None, answers=None, *, k: int = 1, eps: float = 1e-4) -> np.ndarray:
    r, _ = check_inputs(rewards)
    return cancelling_difference(r, r.mean()) / (r.std() + eps) / r.size


@register("dr-grpo", unbiased_for="∇pass@1 up to a factor (n-1)/n (the mean includes the sample itself)",
          summary="Dr. GRPO: GRPO without the std normalisation.")
def dr_grpo(rewards, scores=None, answers=None, *, k: int = 1) -> np.ndarray:
    r, _ = check_inputs(rewards)
    return cancelling_difference(r, r.mean()) / r.size


@register("star", unbiased_for="nothing: supervised learning on the correct samples (rejection-sampling FT)",
          summary="STaR / rejection-sampling fine-tuning: weight 1/(number correct) on each correct sample.")
def star(rewards, scores=None, answers=None, *, k: int = 1) -> np.ndarray:
    r, _ = check_inputs(rewards, binary=True)
    correct = r.sum()
    return r / correct if correct else np.zeros_like(r)
