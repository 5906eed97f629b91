"""Every objective against the truth on a toy categorical policy, by enumerating all n-tuples of samples.

The policy is a softmax over M outcomes with fixed reward, verifier score and answer per outcome. For each
objective, E[Σ_i w_i ∇log π(y_i)] is computed exactly by weighting every one of the M^n sample tuples by its
probability, and compared with the gradient of the objective's closed form by autograd (float64): to 1e-10 for
the unbiased ones, and against their stated expectation for the biased ones (Lemma 2, Lemma 3).
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import brute
from infertune.objectives import (
    bon_lambda,
    bon_sft_weights,
    dco_factor,
    names,
    sample_weights,
    selection_probability,
    subset_weights,
)


class Toy:
    def __init__(self, logits, rewards, scores):
        self.theta = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        self.R = np.asarray(rewards, dtype=np.float64)
        self.s = np.asarray(scores, dtype=np.float64)
        self.M = len(logits)

    @property
    def pi(self):
        return torch.softmax(self.theta, 0)

    def expected_update(self, n, weight_fn):
        """E over n i.i.d. samples of Σ_i w_i ∇_θ log π(y_i), with ∇_θ log π(y) = e_y − π."""
        pi = self.pi.detach().numpy()
        total = np.zeros(self.M)
        for tup in itertools.product(range(self.M), repeat=n):
            idx = list(tup)
            w = weight_fn(self.R[idx], self.s[idx])
            grad_sum = np.zeros(self.M)
            for wi, y in zip(w, idx):
                grad_sum += wi * (np.eye(self.M)[y] - pi)
            total += np.prod(pi[idx]) * grad_sum
        return total

    def bon_value(self, k, scores=None):
        """BoN@k = E over k i.i.d. samples of the reward of the verifier's pick (ties uniform), as a torch scalar."""
        s = self.s if scores is None else scores
        pi = self.pi
        value = 0
        for tup in itertools.product(range(self.M), repeat=k):
            idx = list(tup)
            top = max(s[i] for i in idx)
            picks = [self.R[i] for i in idx if s[i] == top]
            value = value + torch.prod(pi[idx]) * (sum(picks) / len(picks))
        return value

    def grad(self, value):
        g, = torch.autograd.grad(value, self.theta)
        return g.numpy()


TOYS = [
    Toy([0.3, -0.5, 0.8], [1, 0, 0], [0.2, 0.9, 0.1]),  # the verifier prefers a wrong answer
    Toy([0.1, 0.4, -0.3, 0.0], [1, 0, 1, 0], [0.5, 0.5, 0.7, 0.2]),  # ties in the score across outcomes
    Toy([-0.2, 0.6, 0.3], [0.5, 1.0, 0.0], [0.3, 0.3, 0.3]),  # non-binary reward, all scores tied
]


@pytest.mark.parametrize("toy", TOYS)
@pytest.mark.parametrize("n, k", [(3, 1), (3, 2), (4, 2), (4, 3), (4, 4)])
def test_bon_exact_is_unbiased_for_the_bon_gradient(toy, n, k):
    expected = toy.expected_update(n, lambda r, s: sample_weights("bon-exact", r, s, k=k))
    np.testing.assert_allclose(expected, toy.grad(toy.bon_value(k)), atol=1e-10)


@pytest.mark.parametrize("toy", TOYS[:2])
@pytest.mark.parametrize("n, k", [(3, 2), (4, 2), (4, 4)])
def test_bon_exact_with_the_reward_as_verifier_is_pkpo(toy, n, k):
    expected = toy.expected_update(n, lambda r, s: sample_weights("bon-exact", r, None, k=k))
    np.testing.assert_allclose(expected, toy.grad(toy.bon_value(k, scores=toy.R)), atol=1e-10)


@pytest.mark.parametrize("toy", TOYS)
@pytest.mark.parametrize("name, factor", [("rloo", lambda n: 1.0), ("dr-grpo", lambda n: (n - 1) / n)])
def test_pass_at_one_baselines(toy, name, factor):
    n = 4
    expected = toy.expected_update(n, lambda r, s: sample_weights(name, r, k=1))
    target = toy.grad(torch.dot(toy.pi, torch.tensor(toy.R)))
    np.testing.assert_allclose(expected, factor(n) * target, atol=1e-10)


@pytest.mark.parametrize("toy", TOYS)
def test_tang_loo_is_unbiased_for_the_expected_max(toy):
    n = 4
    expected = toy.expected_update(n, lambda r, s: sample_weights("tang-loo", r, k=n))
    np.testing.assert_allclose(expected, toy.grad(toy.bon_value(n, scores=toy.R)), atol=1e-10)


BINARY = [t for t in TOYS if set(t.R) <= {0.0, 1.0}]


def _p_fail(toy):
    return torch.sum(toy.pi[torch.tensor(toy.R == 0)])


def _p_value(toy):
    return float(_p_fail(toy).detach())


@pytest.mark.parametrize("toy", BINARY)
@pytest.mark.parametrize("n, k", [(3, 2), (4, 2), (4, 4)])
def test_bon_rlbp_with_the_true_p_is_unbiased_for_pass_at_k(toy, n, k):
    p = _p_value(toy)
    expected = toy.expected_update(n, lambda r, s: sample_weights("bon-rlbp", r, k=k, p=p))
    np.testing.assert_allclose(expected, toy.grad(1 - _p_fail(toy) ** k), atol=1e-10)


@pytest.mark.parametrize("toy", BINARY)
@pytest.mark.parametrize("n, k", [(3, 2), (4, 3), (4, 4)])
def test_bon_rlb_expectation_is_the_scaled_pass_at_k_gradient(toy, n, k):
    p = _p_value(toy)
    expected = toy.expected_update(n, lambda r, s: sample_weights("bon-rlb", r, k=k, p=p))
    np.testing.assert_allclose(expected, (1 + p) / (1 - p) * toy.grad(1 - _p_fail(toy) ** k), atol=1e-10)


def _pi_bon(toy, k, scores):
    """The Best-of-k policy by enumeration of k-tuples (ties uniform)."""
    pi = toy.pi.detach().numpy()
    law = np.zeros(toy.M)
    for tup in itertools.product(range(toy.M), repeat=k):
        idx = list(tup)
        top = max(scores[i] for i in idx)
        tied = [i for i in idx if scores[i] == top]
        for i in tied:
            law[i] += np.prod(pi[idx]) / len(tied)
    return law


@pytest.mark.parametrize("toy", TOYS)
def test_pi_bon_matches_the_closed_form_law(toy):
    k = 3
    pi = toy.pi.detach().numpy()
    law = _pi_bon(toy, k, toy.s)
    for y in range(toy.M):
        below = pi[toy.s < toy.s[y]].sum()
        at_most = pi[toy.s <= toy.s[y]].sum()
        closed = pi[y] * (at_most**k - below**k) / (at_most - below)
        assert law[y] == pytest.approx(closed, abs=1e-12)


@pytest.mark.parametrize("toy", TOYS)
@pytest.mark.parametrize("name", ["bon-rl-v", "bon-rl-s"])
@pytest.mark.parametrize("n, k", [(3, 2), (4, 2), (4, 4)])
def test_lemma2_matches_its_stated_expectation(toy, name, n, k):
    baseline = 0.3
    expected = toy.expected_update(n, lambda r, s: sample_weights(name, r, s, k=k, baseline=baseline))
    scores = toy.s if name == "bon-rl-v" else toy.R
    law = _pi_bon(toy, k, scores)
    pi = toy.pi.detach().numpy()
    stated = sum(law[y] * (toy.R[y] - baseline) * (np.eye(toy.M)[y] - pi) for y in range(toy.M))
    np.testing.assert_allclose(expected, stated, atol=1e-10)
    # ... and it is not the gradient of BoN@k (it drops the ∇log CDF term).
    if name == "bon-rl-v" and k > 1 and toy is TOYS[0]:
        assert not np.allclose(expected, toy.grad(toy.bon_value(k)), atol=1e-4)


@pytest.mark.parametrize("n, k", [(4, 1), (4, 2), (5, 3), (6, 2)])
def test_passk_chen_without_std_is_a_scaled_pass_at_k_gradient(n, k):
    toy = TOYS[0]
    expected = toy.expected_update(n, lambda r, s: sample_weights("passk-chen", r, k=k, normalize=False))
    np.testing.assert_allclose(expected, (n - k) / (n * k) * toy.grad(1 - _p_fail(toy) ** k), atol=1e-10)


@st.composite
def samples(draw):
    n = draw(st.integers(1, 7))
    k = draw(st.integers(1, n))
    r = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=n, max_size=n))
    s = draw(st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.7]), min_size=n, max_size=n))
    return np.array(r), np.array(s), k


@settings(max_examples=300, deadline=None)
@given(samples())
def test_subset_weights_and_selection_match_enumeration(case):
    r, s, k = case
    n = r.size
    subsets = list(itertools.combinations(range(n), k))
    for i in range(n):
        containing = [S for S in subsets if i in S]
        value = sum(brute.bon([s[j] for j in S], [r[j] for j in S], k) for S in containing) / comb(n, k)
        picked = 0.0
        for S in containing:
            top = max(s[j] for j in S)
            tied = [j for j in S if s[j] == top]
            picked += (i in tied) / len(tied)
        assert subset_weights(s, r, k)[i] == pytest.approx(value, abs=1e-12)
        assert selection_probability(s, k)[i] == pytest.approx(picked / comb(n, k), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(samples())
def test_every_objective_returns_n_finite_weights(case):
    r, s, k = case
    binary = (r >= 0.5).astype(float)
    for name in names():
        if name == "tang-loo" and k != r.size:
            continue
        w = sample_weights(name, binary, s, k=k)
        assert w.shape == r.shape and np.all(np.isfinite(w))


def test_objective_inputs_are_checked():
    with pytest.raises(ValueError, match="unknown objective"):
        sample_weights("ppo-magic", [1.0])
    with pytest.raises(ValueError, match="k=5"):
        sample_weights("bon-exact", [1.0, 0.0], k=5)
    with pytest.raises(ValueError, match="binary"):
        sample_weights("bon-rlb", [0.5, 1.0], k=1)
    with pytest.raises(ValueError, match="mismatched"):
        sample_weights("bon-exact", [1.0, 0.0], [0.1], k=1)
    with pytest.raises(ValueError, match="k = n"):
        sample_weights("tang-loo", [1.0, 0.0, 1.0], k=2)


def test_bon_lambda_solves_its_equation_and_matches_the_paper():
    for n, lam in [(2, 2.29), (4, 4.92), (8, 9.06), (16, 17.0), (32, 33.0)]:
        got = bon_lambda(n)
        assert got == pytest.approx(lam, rel=5e-3)  # the paper gives three significant figures
        lhs = ((got - 1) * np.exp(got) + 1) / np.expm1(got) - np.log(np.expm1(got) / got)
        assert lhs == pytest.approx(np.log(n) - (n - 1) / n, abs=1e-10)


def test_dco_factor_is_the_derivative_of_its_loss():
    n_best = 8
    lp = torch.tensor([-12.0, -5.0, -1.0, -0.2, -0.01], dtype=torch.float64, requires_grad=True)
    loss = -torch.log(1 - (1 - torch.exp(lp)) ** n_best)
    grad, = torch.autograd.grad(loss.sum(), lp)
    # d(-loss)/d(log p̂) = F: the weight on ∇log π(y) when ascending −loss.
    np.testing.assert_allclose(dco_factor(lp.detach().numpy(), n_best), -grad.numpy(), rtol=1e-9)
    assert dco_factor(np.array([-80.0]), n_best)[0] == pytest.approx(1.0)


def test_bon_sft_weights_follow_lemma_1():
    toy = TOYS[0]
    n, n_best = 4, 4
    lam = bon_lambda(n_best)
    expert = 2  # the expert answer is outcome 2, score s[2]
    # The expert part of the update: ∇log π(y*) + λ E[∇log π(y') σ(r* − r(y'))].
    pi = toy.pi.detach().numpy()
    sig = 1 / (1 + np.exp(-(toy.s[expert] - toy.s)))
    closed = (np.eye(toy.M)[expert] - pi) + lam * sum(pi[y] * sig[y] * (np.eye(toy.M)[y] - pi) for y in range(toy.M))

    def expert_part(r, s):
        _, w = bon_sft_weights(toy.s[expert], s, n_best)
        best = np.flatnonzero(s == s.max())
        w = w.copy()
        w[best] += 1.0 / best.size  # remove −∇log π(y_bon)
        w += lam / s.size * (1 / (1 + np.exp(-(s.max() - s))))  # and the y_bon comparison term
        return w

    got = toy.expected_update(n, expert_part) + (np.eye(toy.M)[expert] - pi)
    np.testing.assert_allclose(got, closed, atol=1e-10)
    w_expert, w = bon_sft_weights(0.5, np.array([0.1, 0.9, 0.9]), n_best)
    assert w_expert == 1.0 and w[1] == pytest.approx(w[2]) and w[1] < 0
