"""Training objectives as per-sample weights on ∇log π(y_i|x) (math.md section 3).

``sample_weights(name, rewards, scores=None, answers=None, *, k)`` for every registered objective (``names()``):
the sampled ones (rloo, grpo, dr-grpo, star, bon-exact, bon-rl-v, bon-rl-s, bon-rlb, bon-rlbp, passk-chen,
tang-loo) and those that also learn from a reference answer (sft, dco, bon-sft; pass ``expert_score=``).
"""

from infertune.objectives import baselines, binary, bon, sequence  # noqa: F401 - registration
from infertune.objectives.bon import selection_probability, subset_weights
from infertune.objectives.registry import OBJECTIVES, Objective, get, names, sample_weights
from infertune.objectives.sequence import bon_lambda, bon_sft_weights, dco_factor

__all__ = ["OBJECTIVES", "Objective", "bon_lambda", "bon_sft_weights", "dco_factor", "get", "names",
           "sample_weights", "selection_probability", "subset_weights"]
