"""Verifiers score batches; each is checked against an independent computation on tiny models built here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tiny_models
from infertune import tasks
from infertune.tasks.base import Problem
from infertune.verify.verifiers import MajorityAgreement, OracleVerifier, RewardModelVerifier, SelfConfidence


def _problems(k=2):
    return [Problem(id=f"p{i}", prompt=f"Calculate 3 + {i}.", reference=str(3 + i), target=None) for i in range(k)]


def test_oracle_is_the_task_reward():
    task = tasks.load("arith", size=3)
    ps = task.problems()
    completions = [ps[0].reference, "1+1", ps[2].reference]
    np.testing.assert_array_equal(OracleVerifier(task)(ps, completions), [1.0, 0.0, 1.0])


def test_majority_agreement_is_leave_one_out_share_per_problem():
    task = tasks.load("reasoning-gym:basic_arithmetic", size=2)
    a, b = task.problems()
    probs = [a, a, a, a, b, b]
    comps = ["<answer>1</answer>", "<answer>1</answer>", "<answer>2</answer>", "nothing", "<answer>5</answer>",
             "<answer>5</answer>"]
    scores = MajorityAgreement(task)(probs, comps)
    np.testing.assert_allclose(scores, [1 / 3, 1 / 3, 0.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("num_labels", [1, 2])
def test_reward_model_scores_are_batch_independent(num_labels, tmp_path):
    tok = tiny_models.tokenizer()
    model = tiny_models.classifier(num_labels)
    verifier = RewardModelVerifier(model, tok, batch_size=3)
    ps = _problems(2) * 2
    comps = ["\\boxed{3}", "The answer is 4 because 3 + 1 = 4.", "x", "True"]
    batched = verifier(ps, comps)
    single = RewardModelVerifier(model, tok, batch_size=1)(ps, comps)
    assert batched.shape == (4,) and np.all(np.isfinite(batched))
    np.testing.assert_allclose(batched, single, atol=1e-4)
    # Independent computation for one pair: the logit at the last token.
    with torch.no_grad():
        logits = model(**tok(ps[1].prompt + comps[1], return_tensors="pt")).logits[0]
    expected = logits[0] if num_labels == 1 else logits[1] - logits[0]
    assert batched[1] == pytest.approx(float(expected), abs=1e-4)
    # Round trip through a saved model directory, as a user would load their own reward model.
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = RewardModelVerifier.from_pretrained(str(tmp_path))
    np.testing.assert_allclose(loaded(ps, comps), batched, atol=1e-4)


def test_self_confidence_mean_logprob_matches_a_direct_computation():
    tok = tiny_models.tokenizer()
    model = tiny_models.causal_lm()
    p = _problems(1)[0]
    completion = " The answer is 3."
    score = SelfConfidence(model, tok)([p], [completion])[0]
    prompt_ids = tok(p.prompt, add_special_tokens=False)["input_ids"]
    comp_ids = tok(completion, add_special_tokens=False)["input_ids"]
    total = 0.0
    with torch.no_grad():
        for j, token in enumerate(comp_ids):
            ctx = torch.tensor([prompt_ids + comp_ids[:j]])
            total += float(torch.log_softmax(model(ctx).logits[0, -1], -1)[token])
    assert score == pytest.approx(total / len(comp_ids), abs=1e-4)


def test_an_empty_completion_has_confidence_minus_inf_and_every_curve_ranks_it_last():
    """An empty completion (a model that stops at once) has no tokens to average: −inf, so Best-of-N never picks it
    over a real answer; the curves accept it (they refused it before, and a report on such a run failed)."""
    from infertune.evaluation import evaluate
    from infertune.store import scored_from_arrays

    tok, model = tiny_models.tokenizer(), tiny_models.causal_lm()
    p = _problems(1)[0]
    completions = ["", " The answer is 3.", " 4", ""]
    scores = SelfConfidence(model, tok)([p] * 4, completions)
    assert np.isneginf(scores[[0, 3]]).all() and np.isfinite(scores[[1, 2]]).all()
    samples = scored_from_arrays(["p0"], [[0.0, 1.0, 0.0, 0.0]], [[None, "3", "4", None]],
                                 scores={"confidence": scores}, tokens=[[0, 6, 2, 0]])
    curves = {c.label: c for c in evaluate(samples, rules=["bon:confidence", "wmaj:confidence"])}
    # Best-of-2 picks the right answer when it is drawn with anything but the wrong one it outscores (or when it
    # outscores that one): the pair of empty completions gives nothing.
    right_wins = float(scores[1] > scores[2])
    assert curves["bon:confidence"].mean[1] == pytest.approx((2 + right_wins) / 6)
    # All four drawn: the empty completions cast no vote; the answer with the larger weight (log-probs are
    # negative, so the max) wins.
    assert curves["wmaj:confidence"].mean[3] == pytest.approx(right_wins)


def test_p_true_is_a_probability_and_modes_are_checked():
    tok = tiny_models.tokenizer()
    scores = SelfConfidence(tiny_models.causal_lm(), tok, mode="p_true")(_problems(2), ["\\boxed{3}", "5"])
    assert np.all((scores > 0) & (scores < 1))
    with pytest.raises(ValueError, match="mode"):
        SelfConfidence(tiny_models.causal_lm(), tok, mode="vibes")
