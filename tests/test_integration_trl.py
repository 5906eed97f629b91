"""The TRL integration trains for a few steps on CPU, and the advantages TRL's loss receives are infertune's."""

from __future__ import annotations

import numpy as np
import pytest

from infertune.integrations.advantages import group_advantages
from infertune.objectives import sample_weights

pytest.importorskip("trl", reason="the TRL integration is tested where infertune[trl] is installed (CI installs it)")


def test_group_advantages_are_n_times_the_objective_weights():
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 2, size=12).astype(float)
    scores = rng.normal(size=12)
    groups = np.repeat(["b", "a", "c"], 4)  # ids need not be sorted
    adv = group_advantages("bon-exact", rewards, groups, k=2, scores=scores)
    for g in "abc":
        rows = groups == g
        np.testing.assert_allclose(adv[rows], 4 * sample_weights("bon-exact", rewards[rows], scores[rows], k=2))
    rloo = group_advantages("rloo", rewards, groups)
    for g in "abc":
        r = rewards[groups == g]
        np.testing.assert_allclose(rloo[groups == g], r - (r.sum() - r) / 3)


def test_group_advantages_drop_unscored_samples_and_check_k():
    rewards = np.array([1.0, np.nan, 0.0, 0.0])
    adv = group_advantages("rloo", rewards, [0, 0, 0, 0])
    assert adv[1] == 0.0
    np.testing.assert_allclose(adv[[0, 2, 3]], [1.0, -0.5, -0.5])
    with pytest.raises(ValueError, match="k=4 is larger than the 3 scored samples"):
        group_advantages("bon-exact", rewards, [0, 0, 0, 0], k=4)


def _reward_has_digit(completions, **kwargs):
    return [float(any(ch.isdigit() for ch in c)) for c in completions]


def _verifier_length(completions, **kwargs):
    return [float(len(c)) for c in completions]


@pytest.mark.parametrize("objective", ["bon-exact", "rloo"])
def test_trl_trainer_uses_infertune_advantages(tmp_path, objective):
    import torch
    from datasets import Dataset
    from trl import GRPOConfig

    from infertune.integrations.trl import InfertuneGRPOTrainer
    from tiny_models import causal_lm, tokenizer

    torch.manual_seed(0)
    tok = tokenizer()
    model = causal_lm()
    model.train()
    data = Dataset.from_dict({"prompt": ["Calculate 3 + 4.", "The answer is", "def f(x):", "Is the answer"]})
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=6, max_steps=2, learning_rate=1e-3, use_cpu=True, report_to=[],
                      logging_steps=1, save_strategy="no", loss_type="dr_grpo", beta=0.0, seed=0,
                      temperature=1.0, disable_dropout=True)
    trainer = InfertuneGRPOTrainer(model=model, reward_funcs=[_reward_has_digit], args=args, train_dataset=data,
                                   processing_class=tok, objective=objective, k=2,
                                   verifier_func=_verifier_length)
    seen = []  # (completions, advantages) of every batch TRL's loss gets
    compute_loss = trainer.compute_loss

    def spy(model, inputs, *a, **kw):
        texts = tok.batch_decode(inputs["completion_ids"], skip_special_tokens=True)
        prompts = tok.batch_decode(inputs["prompt_ids"], skip_special_tokens=True)
        seen.append((prompts, texts, inputs["advantages"].detach().clone()))
        return compute_loss(model, inputs, *a, **kw)

    trainer.compute_loss = spy
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    assert len(seen) >= 2
    differs_without_verifier = []
    for prompts, texts, advantages in seen:  # TRL shuffles a generation batch: group rows by their prompt
        assert sorted(np.unique(prompts, return_counts=True)[1]) == [4, 4]
        rewards = np.array(_reward_has_digit(texts))
        scores = np.array(_verifier_length(texts))
        expected = group_advantages(objective, rewards, np.array(prompts), k=2, scores=scores)
        np.testing.assert_allclose(advantages.numpy(), expected, atol=1e-6)
        differs_without_verifier.append(not np.allclose(
            expected, group_advantages(objective, rewards, np.array(prompts), k=2)))
    if objective == "bon-exact":  # the verifier's scores changed what TRL trained on
        assert any(differs_without_verifier)
    assert any(a.abs().sum() > 0 for *_, a in seen), "every batch had zero advantages; the test checks nothing"
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "the model did not train"
    logged = np.sort(np.array(list(trainer._logs["advantages"]))[-8:])
    np.testing.assert_allclose(logged, np.sort(seen[-1][2].numpy()), atol=1e-6)


def test_the_warning_says_what_each_loss_type_does():
    """Only grpo and sapo divide each sequence by its own length; dapo (TRL's default) divides by one token count
    per generation batch, bnpo per micro-batch; dr_grpo is a constant; more than one iteration is off-policy."""
    from infertune.integrations.trl import loss_type_warning

    assert loss_type_warning("dr_grpo", 1) is None
    assert "1/length" in loss_type_warning("grpo", 1) and "1/length" in loss_type_warning("sapo", 1)
    dapo = loss_type_warning("dapo", 1)
    assert "batch-level factor" in dapo and "1/length" not in dapo
    assert loss_type_warning("luspo", 1) is None
    assert "micro-batch" in loss_type_warning("bnpo", 1) and "1/length" not in loss_type_warning("bnpo", 1)
    assert "off-policy" in loss_type_warning("dr_grpo", 2)


def test_the_warning_names_reuse_and_sampling_that_bias_the_estimate():
    from types import SimpleNamespace

    from infertune.integrations.trl import loss_type_warning

    plain = SimpleNamespace(steps_per_generation=None, gradient_accumulation_steps=1, top_p=1.0, top_k=0, min_p=None,
                            repetition_penalty=1.0, generation_kwargs=None, mask_truncated_completions=False)
    assert loss_type_warning("dr_grpo", 1, plain) is None
    reuse = SimpleNamespace(**{**vars(plain), "steps_per_generation": 4})
    assert "off-policy" in loss_type_warning("dr_grpo", 1, reuse)
    nucleus = SimpleNamespace(**{**vars(plain), "top_p": 0.9})
    assert "top_p=0.9" in loss_type_warning("dr_grpo", 1, nucleus)
    masked = SimpleNamespace(**{**vars(plain), "mask_truncated_completions": True})
    assert "truncated" in loss_type_warning("dr_grpo", 1, masked)
