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
    get,
    names,
    sample_weights,
    selection_probability,
    subset_weights,
)


class Toy:
    """A softmax policy over M outcomes, sampled at ``temperature``: π_T = softmax(θ/T)."""

    def __init__(self, logits, rewards, scores, temperature=1.0):
        self.theta = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        self.R = np.asarray(rewards, dtype=np.float64)
        self.s = np.asarray(scores, dtype=np.float64)
        self.M = len(logits)
        self.T = temperature

    @property
    def pi(self):
        return torch.softmax(self.theta / self.T, 0)

    def expected_update(self, n, weight_fn, score_temperature=None):
        """E over n i.i.d. samples from π_T of Σ_i w_i ∇_θ log π_T'(y_i), T' = score_temperature (default T):
        ∇_θ log softmax(θ/T')(y) = (e_y − π_T')/T'."""
        pi = self.pi.detach().numpy()
        t_score = self.T if score_temperature is None else score_temperature
        pi_score = torch.softmax(self.theta / t_score, 0).detach().numpy()
        total = np.zeros(self.M)
        for tup in itertools.product(range(self.M), repeat=n):
            idx = list(tup)
            w = weight_fn(self.R[idx], self.s[idx])
            grad_sum = np.zeros(self.M)
            for wi, y in zip(w, idx):
                grad_sum += wi * (np.eye(self.M)[y] - pi_score) / t_score
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


class TwoTokenToy:
    """A two-token policy sampled at temperature T: y = (a, b), π_T(a) = softmax(θ_1/T)[a], π_T(b | a) =
    softmax(θ_2[a]/T)[b]. With a second token the score of log π_1 is not a multiple of that of log π_T."""

    def __init__(self, temperature):
        self.theta = torch.tensor([[0.5, -0.5], [1.5, -1.0], [-1.0, 0.5]], dtype=torch.float64, requires_grad=True)
        self.T = temperature
        self.outcomes = [(a, b) for a in range(2) for b in range(2)]
        self.R = np.array([1.0, 0.0, 0.0, 1.0])
        self.s = np.array([0.2, 0.9, 0.1, 0.5])

    def log_probs(self, temperature):
        first = torch.log_softmax(self.theta[0] / temperature, 0)
        second = torch.log_softmax(self.theta[1:] / temperature, 1)
        return torch.stack([first[a] + second[a, b] for a, b in self.outcomes])

    def scores(self, temperature):
        """∇_θ log π_T'(y) for every outcome y, by autograd."""
        lp = self.log_probs(temperature)
        return np.stack([torch.autograd.grad(lp[y], self.theta, retain_graph=True)[0].numpy().ravel()
                         for y in range(len(self.outcomes))])

    def expected_update(self, n, weight_fn, score_temperature):
        pi = self.log_probs(self.T).exp().detach().numpy()
        g = self.scores(score_temperature)
        total = np.zeros(g.shape[1])
        for tup in itertools.product(range(len(pi)), repeat=n):
            idx = list(tup)
            total += np.prod(pi[idx]) * (weight_fn(self.R[idx], self.s[idx]) @ g[idx])
        return total

    def bon_gradient(self, k):
        pi = self.log_probs(self.T).exp()
        value = 0
        for tup in itertools.product(range(len(self.outcomes)), repeat=k):
            idx = list(tup)
            top = max(self.s[i] for i in idx)
            picks = [self.R[i] for i in idx if self.s[i] == top]
            value = value + torch.prod(pi[idx]) * (sum(picks) / len(picks))
        return torch.autograd.grad(value, self.theta)[0].numpy().ravel()


@pytest.mark.parametrize("temperature", [0.5, 1.5])
@pytest.mark.parametrize("name, k", [("bon-exact", 2), ("bon-exact", 3), ("rloo", 1)])
def test_weights_times_tempered_score_give_the_gradient_under_the_tempered_policy(temperature, name, k):
    """Samples drawn at T must be scored with log π_T: then E[Σ w_i ∇log π_T(y_i)] is the gradient of the objective
    under π_T, the distribution that is sampled and deployed. Scored with log π_1 (as the trainer once did), the
    expectation is not even proportional to it."""
    toy = TwoTokenToy(temperature)
    n = 4
    truth = toy.bon_gradient(k)  # BoN@1 is the expected reward, the target of rloo

    def weights(r, s):
        return sample_weights(name, r, s, k=k)

    np.testing.assert_allclose(toy.expected_update(n, weights, temperature), truth, atol=1e-10)
    ratios = toy.expected_update(n, weights, 1.0) / truth
    assert ratios.max() / ratios.min() > 1.03, ratios  # not a multiple of the true gradient: another direction


@pytest.mark.parametrize("toy", TOYS)
@pytest.mark.parametrize("n, k", [(3, 1), (3, 2), (4, 2), (4, 3)])
def test_lemma2_default_baseline_has_its_stated_expectation(toy, n, k):
    """The default baseline (mean reward outside each k-subset) gives E_{π_bon}[(R − V)∇log π], V = E_π[R]."""
    pi = toy.pi.detach().numpy()
    value = float(pi @ toy.R)
    for name, scores in (("bon-rl-v", toy.s), ("bon-rl-s", toy.R)):
        expected = toy.expected_update(n, lambda r, s: sample_weights(name, r, s, k=k))
        law = _pi_bon(toy, k, scores)
        stated = sum(law[y] * (toy.R[y] - value) * (np.eye(toy.M)[y] - pi) for y in range(toy.M))
        np.testing.assert_allclose(expected, stated, atol=1e-10)
    with pytest.raises(ValueError, match="n > k"):
        sample_weights("bon-rl-v", [1.0, 0.0], [0.3, 0.2], k=2)


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
        if (name == "tang-loo" and k != r.size) or (get(name).needs_more_samples_than_k and k == r.size):
            continue
        if get(name).needs_reference:
            w = sample_weights(name, binary, s, k=k, expert_score=0.5)
            assert w.shape == (r.size + 1,) and np.all(np.isfinite(w))
        else:
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
    w_expert, w = bon_sft_weights(0.5, np.array([0.1, 0.9, 0.9]), 3)
    assert w_expert == 1.0 and w[1] == pytest.approx(w[2]) and w[1] < 0


@settings(max_examples=300, deadline=None)
@given(samples())
def test_baselines_match_enumeration(case):
    """The O(n log n) leave-one-out baseline of bon-exact and the out-of-subset weights of Lemma 2 against a literal
    average over every k-subset."""
    from infertune.objectives.bon import leave_one_out_baseline, out_of_subset_weights

    r, s, k = case
    n = r.size
    subsets = list(itertools.combinations(range(n), k))
    loo = leave_one_out_baseline(s, r, k) if k >= 2 else None
    outside = out_of_subset_weights(s, r, k) if k < n else None
    for i in range(n):
        containing = [S for S in subsets if i in S]
        if loo is not None:
            rest = [[j for j in S if j != i] for S in containing]
            value = sum(brute.bon([s[j] for j in R], [r[j] for j in R], k - 1) for R in rest) / comb(n, k)
            assert loo[i] == pytest.approx(value, abs=1e-12)
        if outside is not None:
            total = 0.0
            for S in containing:
                top = max(s[j] for j in S)
                tied = [j for j in S if s[j] == top]
                if i in tied:
                    rest = [j for j in range(n) if j not in S]
                    total += (r[i] - np.mean(r[rest])) / len(tied)
            assert outside[i] == pytest.approx(total / comb(n, k), abs=1e-12)


@pytest.mark.parametrize("name", ["rloo", "grpo", "dr-grpo"])
@pytest.mark.parametrize("value", [0.0, 0.1, 0.3, 0.7, 1.0])
def test_group_baselines_give_exact_zeros_on_equal_rewards(name, value):
    """Equal fractional rewards (0.1 − the mean of 0.1s) used to leave a residue up to 4e-13: counted as a gradient."""
    for n in (2, 3, 7, 16):
        assert np.all(sample_weights(name, np.full(n, value)) == 0.0)


def _rational_weights(name, r, s, k):
    """bon-exact's and Lemma 2's weights by exact rational arithmetic over every k-subset (small n only)."""
    from fractions import Fraction

    n = r.size
    rewards = [Fraction(float(x)) for x in r]

    def pick(subset):
        top = max(s[j] for j in subset)
        tied = [j for j in subset if s[j] == top]
        return tied, sum(rewards[j] for j in tied) / len(tied)

    weights = []
    for i in range(n):
        containing = [S for S in itertools.combinations(range(n), k) if i in S]
        if name == "bon-exact":
            value = sum(pick(S)[1] for S in containing)
            if k == 1:
                base = (sum(rewards) - rewards[i]) / (n - 1)
            else:
                base = sum(pick([j for j in S if j != i])[1] for S in containing)
            weights.append((value - base) / comb(n, k))
        else:
            total = Fraction(0)
            for S in containing:
                tied, _ = pick(S)
                if i in tied:
                    rest = [rewards[j] for j in range(n) if j not in S]
                    total += (rewards[i] - sum(rest) / len(rest)) / len(tied)
            weights.append(total / comb(n, k))
    return weights


@settings(max_examples=300, deadline=None)
@given(samples())
def test_weights_that_cancel_exactly_are_exactly_zero(case):
    """Where a weight is exactly 0 in rational arithmetic (bon-exact once more than n − k + 1 samples are right, a
    Lemma 2 sample whose reward equals every outside mean), the float weight is 0 too, not a 1e-15 residue: the
    telemetry's non-zero share, the update's idle list and the rollout allocation's value test for exact zeros.
    Elsewhere the float weights equal the rational ones."""
    r, s, k = case
    n = r.size
    for name in ("bon-exact", "bon-rl-v"):
        if name == "bon-rl-v" and k == n or name == "bon-exact" and n == 1:
            continue
        exact = _rational_weights(name, r, s, k)
        got = sample_weights(name, r, s, k=k)
        for g, e in zip(got, exact):
            if e == 0:
                assert g == 0.0
            else:
                assert g == pytest.approx(float(e), abs=1e-12)


def _exact_rank_weights(n, k):
    """C(i−1, k−1)/C(n, k) and the no-tie subset weights from exact integers (small n only)."""
    from fractions import Fraction

    return [Fraction(comb(i - 1, k - 1), comb(n, k)) for i in range(1, n + 1)]


@pytest.mark.parametrize("n, k", [(4096, 1), (4096, 64), (4096, 2048), (4096, 4096), (1100, 550)])
def test_bon_exact_does_not_overflow_at_large_n(n, k):
    """Exact binomials overflowed a float from n = 1100, k = 550; log-space ratios stay finite and keep the sum
    rules: selection probabilities sum to 1, subset weights to k·BoN@k, bon-exact's to k·(BoN@k − BoN@(k−1))."""
    from infertune.estimators import bon_at_k

    rng = np.random.default_rng(n + k)
    r = rng.integers(0, 2, n).astype(float)
    s = np.round(rng.normal(size=n), 1)  # many ties
    w = sample_weights("bon-exact", r, s, k=k)
    assert np.all(np.isfinite(w))
    assert selection_probability(s, k).sum() == pytest.approx(1.0, abs=1e-9)
    bon_k = float(bon_at_k(s, r, k)[0])
    assert subset_weights(s, r, k).sum() == pytest.approx(k * bon_k, rel=1e-9)
    previous = float(bon_at_k(s, r, k - 1)[0]) if k > 1 else float(np.mean(r))
    assert w.sum() == pytest.approx(k * (bon_k - previous) if k > 1 else 0.0, abs=1e-8 * k)
    for name in ("bon-rlb", "bon-rlbp", "passk-chen", "bon-rl-s"):
        if k < n or name != "bon-rl-s":
            assert np.all(np.isfinite(sample_weights(name, r, s, k=k)))


@pytest.mark.parametrize("n, k", [(12, 1), (12, 5), (30, 7), (30, 30), (60, 31)])
def test_log_space_weights_equal_the_exact_formula_without_ties(n, k):
    """Without ties, subset weights are [C(i−1,k−1) R_(i) + Σ_{j>i} C(j−2,k−2) R_(j)] / C(n,k) in exact arithmetic."""
    from fractions import Fraction

    rng = np.random.default_rng(n * k)
    r = rng.integers(0, 2, n).astype(float)
    s = rng.permutation(n).astype(float)  # distinct scores: rank i is the sample with score i − 1
    order = np.argsort(s)
    ranked = r[order]
    top = _exact_rank_weights(n, k)
    exact = [top[i] * int(ranked[i]) + sum(Fraction(comb(j - 1, k - 2) if k >= 2 else 0, comb(n, k)) * int(ranked[j])
                                           for j in range(i + 1, n)) for i in range(n)]
    got = subset_weights(s, r, k)[order]
    np.testing.assert_allclose(got, [float(x) for x in exact], rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(selection_probability(s, k)[order], [float(x) for x in top], rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("toy", TOYS)
@pytest.mark.parametrize("n, n_best", [(3, 3), (4, 2), (4, 4)])
def test_bon_sft_best_of_n_half_against_enumeration(toy, n, n_best):
    """The −∇f(x, y_bon) half of Lemma 1, derived independently: for every n-tuple of samples, average over every
    N-subset of the tuple the term −[∇log π(y_b) + λ_N (1/n) Σ_i ∇log π(y_i) σ(r(y_b) − r(y_i))] of the subset's
    pick b (the top score, ties averaged over the tied picks), and compare with what the weights give; in
    expectation its first term is −E_{π_bon}[∇log π], π_bon the closed-form law of Best-of-N."""
    lam = bon_lambda(n_best)
    pi = toy.pi.detach().numpy()
    eye = np.eye(toy.M)
    expert_score = 0.55
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    total_pick = np.zeros(toy.M)
    for tup in itertools.product(range(toy.M), repeat=n):
        idx = list(tup)
        s = toy.s[idx]
        _, w = bon_sft_weights(expert_score, s, n_best)
        bon_half = w - lam / n * sig(expert_score - s)  # remove the expert's comparison term
        from_weights = sum(bon_half[i] * (eye[y] - pi) for i, y in enumerate(idx))
        direct, pick_term = np.zeros(toy.M), np.zeros(toy.M)
        subsets = list(itertools.combinations(range(n), n_best))
        for subset in subsets:
            top = max(s[j] for j in subset)
            tied = [j for j in subset if s[j] == top]
            for b in tied:
                term = (eye[idx[b]] - pi) + lam / n * sum((eye[y] - pi) * sig(s[b] - s[i]) for i, y in enumerate(idx))
                direct -= term / len(tied) / len(subsets)
                pick_term += (eye[idx[b]] - pi) / len(tied) / len(subsets)
        np.testing.assert_allclose(from_weights, direct, atol=1e-12)
        total_pick += np.prod(pi[idx]) * pick_term
    law = _pi_bon(toy, n_best, toy.s)
    np.testing.assert_allclose(total_pick, sum(law[y] * (eye[y] - pi) for y in range(toy.M)), atol=1e-12)


def test_bon_sft_keeps_the_lambda_term_when_the_expert_outscores_the_samples():
    """The issue's counterexample: scores (0.1, 0.7, 0.3, 0.7), expert score 0.9."""
    _, w = bon_sft_weights(0.9, np.array([0.1, 0.7, 0.3, 0.7]), 4)
    np.testing.assert_allclose(w, [0.0545, -0.4388, 0.0577, -0.4388], atol=5e-4)
