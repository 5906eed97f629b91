"""The verl integration: our objectives in verl's own advantage registry, run through verl's compute_advantage.

verl imports on this CPU machine (CI installs verl with --no-deps plus the modules its trainer imports), so these
tests drive verl's real code, not a mock of its interface.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("verl", reason="the verl integration is tested where verl is installed (CI installs it)")


def _batch(rewards, lengths, uids, width=6):
    import torch
    from verl import DataProto

    mask = torch.zeros(len(rewards), width)
    token_rewards = torch.zeros(len(rewards), width)
    for i, (r, n) in enumerate(zip(rewards, lengths)):
        mask[i, :n] = 1
        token_rewards[i, n - 1] = r  # verl puts an outcome reward on the last response token
    return DataProto.from_dict(tensors={"token_level_rewards": token_rewards, "response_mask": mask},
                               non_tensors={"uid": np.array(uids, dtype=object)})


def test_every_objective_is_registered_with_verl():
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    from infertune.integrations.verl import REGISTERED_K, estimator_name, register
    from infertune.objectives import get, names

    register()
    assert register() == []  # idempotent: the second call adds nothing and does not raise
    for objective in names(reference=False):
        for k in REGISTERED_K:
            assert callable(get_adv_estimator_fn(estimator_name(objective, k)))
        if get(objective).needs_more_samples_than_k:  # k = group size leaves nothing outside the subset
            with pytest.raises(ValueError):
                get_adv_estimator_fn(estimator_name(objective))
        else:
            assert callable(get_adv_estimator_fn(estimator_name(objective)))


@pytest.mark.parametrize("objective,k", [("bon-exact", 2), ("rloo", None), ("bon-rlb", 4), ("passk-chen", 2)])
def test_verl_compute_advantage_uses_our_weights(objective, k):
    from verl.trainer.config import AlgoConfig
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from infertune.integrations.advantages import group_advantages
    from infertune.integrations.verl import estimator_name, register

    register()
    rng = np.random.default_rng(1)
    rewards = rng.integers(0, 2, size=12).astype(float)
    rewards[:4] = [1, 0, 0, 0]
    lengths = rng.integers(1, 7, size=12)
    uids = np.repeat(["p2", "p0", "p1"], 4)
    name = estimator_name(objective, k)
    data = compute_advantage(_batch(rewards, lengths, uids), adv_estimator=name,
                             config=AlgoConfig(adv_estimator=name))
    advantages = data.batch["advantages"].numpy()
    expected = group_advantages(objective, rewards, uids, k=k)
    assert np.abs(expected).sum() > 0
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(advantages[i, :n], expected[i], atol=1e-6)
        assert np.all(advantages[i, n:] == 0)
    np.testing.assert_allclose(data.batch["returns"].numpy(), advantages)


def test_compute_score_uses_the_task_checker_and_falls_back_to_the_answer():
    from infertune.integrations.verl import compute_score, verl_rows
    from infertune.tasks import load

    rows = verl_rows("arith", size=5, seed=3)
    assert len(rows) == 5 and rows[0]["prompt"][-1]["role"] == "user"
    import pyarrow as pa

    pa.Table.from_pylist(rows)  # writable as verl's parquet dataset
    task = load("arith", size=5, seed=3)
    problem = task.problems()[0]
    info = rows[0]["extra_info"]
    assert json.loads(info["task_options"]) == {"size": 5, "seed": 3}
    good = next(c for c in _candidates(problem) if task.reward(problem, c) == 1.0)
    assert compute_score(rows[0]["data_source"], good, rows[0]["reward_model"]["ground_truth"], info) == 1.0
    assert compute_score(rows[0]["data_source"], "no idea", "", info) == 0.0
    assert compute_score("gsm8k", "so the answer is \\boxed{12}", "12") == 1.0
    assert compute_score("gsm8k", "#### 13", "12") == 0.0


def _candidates(problem):
    """Completions that solve an arith problem: the task's reference expression, written as the task expects."""
    return [f"{problem.reference} = {problem.target['target']}", f"\\boxed{{{problem.reference}}}",
            str(problem.reference)]


def _advantages_in_worker(name: str, rewards, lengths, uids):
    """Runs inside a Ray worker, as verl's trainer does: our names must already be in verl's registry there."""
    from verl.trainer.config import AlgoConfig
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY
    from verl.trainer.ppo.ray_trainer import compute_advantage

    assert name in ADV_ESTIMATOR_REGISTRY, "the setup hook did not register infertune's estimators"
    data = compute_advantage(_batch(rewards, lengths, uids), adv_estimator=name, config=AlgoConfig(adv_estimator=name))
    return data.batch["advantages"].numpy()


def test_the_documented_setup_hook_registers_in_every_ray_worker():
    """The config line docs/scaling.md gives a verl user (a Ray worker_process_setup_hook), on a real Ray cluster."""
    ray = pytest.importorskip("ray")
    from infertune.integrations.advantages import group_advantages

    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    assert not ray.is_initialized()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "infertune.integrations.verl.register"})
    try:
        rewards, lengths, uids = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], [3, 2, 5, 1, 4, 6], ["a"] * 3 + ["b"] * 3
        advantages = ray.get(ray.remote(_advantages_in_worker).remote("infertune_bon-exact_k2", rewards, lengths,
                                                                        uids))
    finally:
        ray.shutdown()
    expected = group_advantages("bon-exact", np.array(rewards), np.array(uids), k=2)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(advantages[i, :n], expected[i], atol=1e-6)
