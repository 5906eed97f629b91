"""Every infertune objective as a verl advantage estimator, and infertune's checkers as a verl reward function.

verl looks advantage estimators up by name in its own registry (``verl.trainer.ppo.core_algos``), inside the Ray
process that runs its trainer. ``register()`` adds, for each objective, ``infertune_<objective>`` (k = the group
size, ``actor_rollout_ref.rollout.n``; not for bon-rl-v/-s, whose baseline needs samples outside each k-subset) and
``infertune_<objective>_k<K>`` for K in 1, 2, 4, ..., 64. A verl user
has every Ray worker call it at start-up and picks one by name::

    +ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=infertune.integrations.verl.register
    algorithm.adv_estimator=infertune_bon-exact_k4
    reward.custom_reward_function.path=pkg://infertune.integrations.verl
    reward.custom_reward_function.name=compute_score
    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum

The last line makes verl's loss sum token log-probs per sequence and average over the batch's sequences, which is
what keeps A_i = n·w_i an unbiased estimator's weights (``token-sum`` and ``seq-mean-token-sum-norm`` divide by
constants too). verl's default ``token-mean`` divides by the batch's total token count instead: one number per batch,
but one that depends on the sampled lengths, which correlate with the estimate, so it is not exactly unbiased (a bias
that shrinks as batches grow); ``seq-mean-token-mean`` divides each sequence by its own length, which reweights
samples by 1/length.
Unbiasedness also needs on-policy updates: one PPO epoch (``actor_rollout_ref.actor.ppo_epochs=1``) and one
mini-batch per generation batch (``ppo_mini_batch_size`` equal to the data batch size); reused samples are
off-policy, and PPO's clipped ratio does not correct them exactly. verl hands an advantage estimator only
the rewards and the prompt ids, so objectives that select by a verifier (bon-exact, bon-rl-v) select by the reward
there: bon-exact then trains for pass@k. Use ``infertune train`` or the TRL integration to select by a separate
verifier. Requires verl (``pip install --no-deps verl``; see docs/scaling.md).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from infertune.integrations.advantages import group_advantages
from infertune.objectives import get, names

PREFIX = "infertune_"
REGISTERED_K = (1, 2, 4, 8, 16, 32, 64)


def estimator_name(objective: str, k: int | None = None) -> str:
    """The name verl knows ``objective`` by: k=None means k = the group size."""
    return f"{PREFIX}{objective}" + ("" if k is None else f"_k{k}")


def make_estimator(objective: str, k: int | None) -> Callable[..., tuple[Any, Any]]:
    """A function with verl's advantage-estimator signature computing ``objective``'s A_i = n·w_i per prompt."""

    def compute_advantage(token_level_rewards, response_mask, index=None, config=None, **_: Any):
        import torch

        rewards = token_level_rewards.sum(dim=-1).detach().double().cpu().numpy()
        groups = np.zeros(rewards.size, dtype=np.int64) if index is None else np.asarray(index)
        advantages = group_advantages(objective, rewards, groups, k=k)
        per_token = torch.as_tensor(advantages, dtype=token_level_rewards.dtype, device=token_level_rewards.device)
        per_token = per_token.unsqueeze(-1) * response_mask
        return per_token, per_token

    compute_advantage.__name__ = f"compute_{objective.replace('-', '_')}_advantage"
    compute_advantage.__doc__ = f"infertune objective {objective!r} (k={'group size' if k is None else k}) for verl."
    return compute_advantage


def register(ks: tuple[int, ...] = REGISTERED_K) -> list[str]:
    """Register every objective in verl's advantage-estimator registry; safe to call more than once."""
    try:
        from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est
    except ImportError as exc:
        raise ImportError("infertune.integrations.verl needs verl; see docs/scaling.md for how to install it") from exc
    added = []
    for objective in names(reference=False):
        # k = the group size leaves no sample outside a Best-of-k subset, which bon-rl-v/-s's baseline needs.
        group_size_ok = not get(objective).needs_more_samples_than_k
        for k in ((None,) if group_size_ok else ()) + tuple(ks):
            name = estimator_name(objective, k)
            if name not in ADV_ESTIMATOR_REGISTRY:
                register_adv_est(name)(make_estimator(objective, k))
                added.append(name)
    return added


@lru_cache(maxsize=8)
def _task(name: str, options: tuple[tuple[str, Any], ...]):
    from infertune.tasks import load

    task = load(name, **dict(options))
    return task, {p.id: p for p in task.problems()}


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  **_: Any) -> float:
    """verl's reward-function signature. With ``extra_info`` naming an infertune task and problem (as
    ``verl_rows`` writes them), the task's own checker judges (unit tests in the sandbox, math-verify, ...);
    otherwise the completion's final answer is compared with ``ground_truth``."""
    from infertune.tasks.grading.answers import equivalent, extract_answer

    info = extra_info or {}
    if "infertune_task" in info and "problem_id" in info:
        options = tuple(sorted(json.loads(info.get("task_options") or "{}").items()))
        task, problems = _task(info["infertune_task"], options)
        if info["problem_id"] not in problems:
            raise ValueError(f"task {info['infertune_task']} has no problem {info['problem_id']!r}")
        return float(task.reward(problems[info["problem_id"]], solution_str))
    return float(equivalent(extract_answer(solution_str), str(ground_truth)))


def verl_rows(task_name: str, *, split: str = "train", **options: Any) -> list[dict]:
    """An infertune task as rows of verl's RL dataset format (data_source, prompt as chat, reward_model,
    extra_info), ready for ``pyarrow.Table.from_pylist(rows)`` and ``pyarrow.parquet.write_table``."""
    task, _ = _task(task_name, tuple(sorted(options.items())))
    return [{"data_source": task.name, "prompt": p.chat(), "ability": "infertune",
             "reward_model": {"style": "rule", "ground_truth": p.reference or ""},
             "extra_info": {"infertune_task": task_name, "task_options": json.dumps(options), "problem_id": p.id,
                            "split": split, "index": i}}
            for i, p in enumerate(task.problems())]
