"""TRL's GRPOTrainer with advantages from any ``infertune.objectives`` name.

A TRL user keeps their model, dataset, reward functions and GRPOConfig, and switches to inference-aware training by
one argument::

    from infertune.integrations.trl import InfertuneGRPOTrainer
    trainer = InfertuneGRPOTrainer(model=..., reward_funcs=[correct], args=GRPOConfig(num_generations=8, ...),
                                   train_dataset=..., objective="bon-exact", k=4, verifier_func=my_verifier)

TRL computes rewards and its own group-normalised advantages inside ``_generate_and_score_completions``; this
subclass lets TRL do everything else (generation, reference model, clipping, logging) and replaces the advantages
with A_i = n·w_i of the chosen objective (see ``infertune.integrations.advantages``). Those are an unbiased
estimator's weights only when TRL's loss sums token log-probs per sequence with a constant normaliser: use
``loss_type="dr_grpo"``; TRL's per-token averaging losses (``dapo``, ``grpo``, ``bnpo``) reweight samples by length.
Requires the optional extra ``infertune[trl]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from infertune.integrations.advantages import group_advantages
from infertune.objectives import get

try:
    from trl import GRPOTrainer
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("infertune.integrations.trl needs TRL: pip install 'infertune[trl]'") from exc


class InfertuneGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose advantages are ``objective``'s (rloo, bon-exact, bon-rlb, passk-chen, ...).

    ``k`` is the N of the Best-of-N / pass@N the model is trained for (default: the group size, num_generations).
    ``verifier_func`` scores completions for the objectives that select by a verifier (bon-exact, bon-rl-v); it is
    called like a TRL reward function and defaults to the reward itself. The reward R is the weighted sum of TRL's
    reward functions, as TRL forms it.
    """

    def __init__(self, *args: Any, objective: str = "bon-exact", k: int | None = None,
                 verifier_func: Callable[..., list[float]] | None = None, **kwargs: Any) -> None:
        get(objective)  # fail on an unknown name before TRL loads anything
        if k is not None and k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        super().__init__(*args, **kwargs)
        if self.loss_type != "dr_grpo":
            warnings.warn(f"loss_type={self.loss_type!r} averages over tokens, which weights samples by length; "
                          "loss_type='dr_grpo' keeps the objective's gradient estimator unbiased", stacklevel=2)
        self.objective = objective
        self.objective_k = k
        self.verifier_func = verifier_func
        self._last_rewards: torch.Tensor | None = None
        self._last_scores: torch.Tensor | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards = rewards_per_func
        self._last_scores = None
        if self.verifier_func is not None and get(self.objective).needs_scores:
            keys = [key for key in inputs[0] if key not in ("prompt", "completion", "completion_ids")]
            extra = {key: [example[key] for example in inputs] for key in keys}
            scores = self.verifier_func(prompts=prompts, completions=completions,
                                        completion_ids=completion_ids_list, **extra)
            local = torch.tensor([np.nan if s is None else float(s) for s in scores], dtype=torch.float64,
                                 device=self.accelerator.device)
            self._last_scores = self.accelerator.gather(local)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func = self._last_rewards
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        groups = np.arange(rewards.numel()) // group_size
        scores = None if self._last_scores is None else self._last_scores.cpu().numpy()
        if scores is not None and np.isnan(scores).any():
            raise ValueError("verifier_func returned None or NaN for a completion; every completion needs a score")
        advantages = group_advantages(self.objective, rewards.double().cpu().numpy(), groups,
                                      k=self.objective_k, scores=scores)
        all_advantages = torch.tensor(advantages, dtype=torch.float32, device=output["advantages"].device)
        local = output["advantages"].numel()
        start = self.accelerator.process_index * local
        output["advantages"] = all_advantages[start : start + local]
        logged = self._logs["advantages"]  # TRL logged its own advantages; log ours in their place
        for _ in range(min(len(logged), all_advantages.numel())):
            logged.pop()
        logged.extend(all_advantages.tolist())
        return output
