"""TRL's GRPOTrainer with advantages from any ``infertune.objectives`` name.

A TRL user keeps their model, dataset, reward functions and GRPOConfig, and switches to inference-aware training by
one argument::

    from infertune.integrations.trl import InfertuneGRPOTrainer
    trainer = InfertuneGRPOTrainer(model=..., reward_funcs=[correct], args=GRPOConfig(num_generations=8, ...),
                                   train_dataset=..., objective="bon-exact", k=4, verifier_func=my_verifier)

TRL computes rewards and its own group-normalised advantages inside ``_generate_and_score_completions``; this
subclass lets TRL do everything else (generation, reference model, clipping, logging) and replaces the advantages
with A_i = n·w_i of the chosen objective (see ``infertune.integrations.advantages``).

Those advantages give an unbiased estimate of the objective's gradient only if TRL's loss sums each sequence's token
log-probabilities and divides by a constant, only for on-policy updates, and only if TRL samples from the tempered
distribution it scores. What each TRL loss type does:

- ``dr_grpo``: divides by (sequences × max_completion_length), a constant: unbiased, up to a fixed scale. Use it.
  ``luspo`` (token sums per sequence, averaged over the micro-batch's sequences) is also unbiased.
- ``dapo`` (TRL's default), ``cispo``, ``vespo``: divide by the total token count of the generation batch, one
  number for every sequence of a batch, so each update is the objective's estimate times a batch-level factor. That
  factor depends on the sampled lengths, which correlate with the estimate, so it is not exactly unbiased either (a
  bias that shrinks as batches grow); cispo and vespo also change the loss's form.
- ``bnpo``: divides by the token count of each micro-batch, so sequences in different micro-batches get different
  weights.
- ``grpo`` and ``sapo``: divide each sequence by its own length, which reweights samples by 1/length and changes the
  direction of the update.

On-policy means each generation batch drives one optimizer update of the policy that sampled it:
``num_iterations=1`` and ``steps_per_generation`` no larger than ``gradient_accumulation_steps``. Otherwise later
updates follow samples of an older policy through TRL's clipped importance ratio, which does not keep the estimate
unbiased. TRL scores tokens with the logits divided by its ``temperature``; that is the distribution it sampled
from only with ``top_p=1``, ``top_k=0``, no ``min_p``, ``repetition_penalty=1`` and no ``generation_kwargs`` that
change sampling. ``mask_truncated_completions=True`` drops truncated samples, which biases the estimate too.
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


LOSS_TYPE_NOTES = {
    "dapo": "divides by the generation batch's total token count: a batch-level factor that depends on the sampled "
            "lengths multiplies the estimate (not exactly unbiased; the bias shrinks with the batch size)",
    "cispo": "divides by the generation batch's total token count and clips importance weights: a batch-level factor "
             "that depends on the sampled lengths multiplies the estimate",
    "vespo": "divides by the generation batch's total token count and reweights by its own gamma weights",
    "bnpo": "divides by each micro-batch's token count: sequences in different micro-batches get different weights",
    "grpo": "divides each sequence by its own length: samples are reweighted by 1/length, which changes the direction",
    "sapo": "divides each sequence by its own length (and gates it softly): samples are reweighted by 1/length",
}


def loss_type_warning(loss_type: str, num_iterations: int, args=None) -> str | None:
    """What keeps TRL's update from being the objective's unbiased gradient estimate, in words; None when nothing.
    ``args`` (a GRPOConfig) adds the checks on reuse of generation batches and on how TRL samples."""
    problems = []
    if loss_type in LOSS_TYPE_NOTES:
        problems.append(f"loss_type={loss_type!r} {LOSS_TYPE_NOTES[loss_type]}; loss_type='dr_grpo' keeps the "
                        "objective's gradient estimate unbiased")
    if num_iterations > 1:
        problems.append(f"num_iterations={num_iterations} reuses each generation batch for several updates: those "
                        "after the first are off-policy, and TRL's clipped importance ratio does not keep the "
                        "estimate unbiased; use num_iterations=1")
    if args is not None:
        steps = getattr(args, "steps_per_generation", None)
        accumulation = getattr(args, "gradient_accumulation_steps", 1)
        if steps is not None and steps > accumulation:
            problems.append(f"steps_per_generation={steps} > gradient_accumulation_steps={accumulation}: one "
                            "generation batch drives several optimizer steps, the later ones off-policy")
        changed = [f"{name}={getattr(args, name)!r}" for name, plain in
                   (("top_p", 1.0), ("top_k", 0), ("min_p", None), ("repetition_penalty", 1.0))
                   if getattr(args, name, plain) not in (plain, None if plain == 0 else plain)]
        if getattr(args, "generation_kwargs", None):
            changed.append("generation_kwargs")
        if changed:
            problems.append(f"{', '.join(changed)} sample from another distribution than the tempered one TRL "
                            "scores, which biases the estimate")
        if getattr(args, "mask_truncated_completions", False):
            problems.append("mask_truncated_completions=True drops truncated samples, which biases the estimate")
    return "; ".join(problems) or None


class InfertuneGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose advantages are ``objective``'s (rloo, bon-exact, bon-rlb, passk-chen, ...).

    ``k`` is the N of the Best-of-N / pass@N the model is trained for (default: the group size, num_generations).
    ``verifier_func`` scores completions for the objectives that select by a verifier (bon-exact, bon-rl-v); it is
    called like a TRL reward function and defaults to the reward itself. The reward R is the weighted sum of TRL's
    reward functions, as TRL forms it.
    """

    def __init__(self, *args: Any, objective: str = "bon-exact", k: int | None = None,
                 verifier_func: Callable[..., list[float]] | None = None, **kwargs: Any) -> None:
        if k is not None and k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if get(objective).needs_more_samples_than_k and k is None:  # also fails on an unknown name, before TRL loads
            raise ValueError(f"{objective} needs k below the group size (its baseline is the mean reward of the "
                             "samples outside each k-subset); pass k=")
        super().__init__(*args, **kwargs)
        message = loss_type_warning(self.loss_type, int(getattr(self.args, "num_iterations", 1)), self.args)
        if message:
            warnings.warn(message, stacklevel=2)
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
