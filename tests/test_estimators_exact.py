"""Every estimator against brute-force enumeration of all k-subsets (math.md section 1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import brute
from infertune.estimators import (
    bon_at_k,
    bon_curve,
    maj_at_k,
    maj_curve,
    pass_at_k,
    pass_curve,
    weighted_maj_at_k,
    weighted_maj_curve,
)

ANSWERS = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]))
SCORES = st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0])  # few values, so ties are frequent


@st.composite
def prompt(draw, max_n=7, binary=True):
    n = draw(st.integers(1, max_n))
    answers = draw(st.lists(ANSWERS, min_size=n, max_size=n))
    reward_values = [0.0, 1.0] if binary else [0.0, 0.25, 1.0]
    # Rewards are usually a function of the answer; sometimes not (a reward that reads more than the answer).
    if draw(st.booleans()):
        table = {a: draw(st.sampled_from(reward_values)) for a in "abcd"}
        rewards = [table[a] if a is not None else 0.0 for a in answers]
    else:
        rewards = draw(st.lists(st.sampled_from(reward_values), min_size=n, max_size=n))
    scores = draw(st.lists(SCORES, min_size=n, max_size=n))
    return answers, rewards, scores


def _obj(answers):
    arr = np.empty((1, len(answers)), dtype=object)
    arr[0, :] = answers
    return arr


@settings(max_examples=300, deadline=None)
@given(prompt())
def test_pass_curve_matches_enumeration_and_product_form(case):
    _, rewards, _ = case
    n = len(rewards)
    curve = pass_curve([rewards])[0]
    c = int(sum(rewards))
    for k in range(1, n + 1):
        assert curve[k - 1] == pytest.approx(brute.passk(rewards, k), abs=1e-9)
        product = 1.0 - np.prod([1.0 - k / i for i in range(n - c + 1, n + 1)])
        assert pass_at_k(n, c, k) == pytest.approx(product, abs=1e-9)
        assert pass_at_k(n, c, k) == pytest.approx(curve[k - 1], abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(prompt(binary=False))
def test_bon_matches_enumeration_with_ties(case):
    _, rewards, scores = case
    n = len(rewards)
    curve = bon_curve([scores], [rewards])[0]
    for k in range(1, n + 1):
        expected = brute.bon(scores, rewards, k)
        assert curve[k - 1] == pytest.approx(expected, abs=1e-9)
        assert bon_at_k([scores], [rewards], k)[0] == pytest.approx(expected, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(prompt(binary=False), st.data())
def test_bon_with_minus_inf_scores_matches_enumeration(case, data):
    """−inf (the confidence of an empty completion) is a score like any other to ranking: below every number."""
    _, rewards, scores = case
    n = len(rewards)
    scores = [-np.inf if data.draw(st.booleans()) else s for s in scores]
    curve = bon_curve([scores], [rewards])[0]
    for k in range(1, n + 1):
        expected = brute.bon(scores, rewards, k)
        assert curve[k - 1] == pytest.approx(expected, abs=1e-9)
        assert bon_at_k([scores], [rewards], k)[0] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("aggregate", ["sum", "max"])
@settings(max_examples=100, deadline=None)
@given(case=prompt(max_n=7, binary=False))
def test_weighted_maj_ignores_minus_inf_on_samples_without_an_answer(aggregate, case):
    answers, rewards, scores = case
    n = len(answers)
    blanked = [-np.inf if a is None else s for a, s in zip(answers, scores)]
    exact = weighted_maj_curve(_obj(answers), [blanked], [rewards], aggregate=aggregate, method="exact")
    sampled = weighted_maj_curve(_obj(answers), [blanked], [rewards], aggregate=aggregate, method="mc",
                                 mc_samples=400)
    for k in range(1, n + 1):
        expected = brute.weighted_maj(answers, scores, rewards, k, aggregate)
        assert exact.values[0, k - 1] == pytest.approx(expected, abs=1e-9)
        assert sampled.values[0, k - 1] == pytest.approx(expected, abs=5 * sampled.stderr[0, k - 1] + 0.02)


def test_weighted_maj_refuses_minus_inf_on_a_vote():
    with pytest.raises(ValueError, match="finite score for every sample with an answer.*prompt 0, sample 1"):
        weighted_maj_curve(_obj(["a", "b", None]), [[0.5, -np.inf, -np.inf]], [[1.0, 0.0, 0.0]], aggregate="max")
    with pytest.raises(ValueError, match="non-finite value nan at prompt 0, sample 0"):
        bon_curve([[np.nan, 1.0]], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="non-finite value inf"):
        bon_curve([[np.inf, 1.0]], [[1.0, 0.0]])


@settings(max_examples=300, deadline=None)
@given(prompt(binary=False))
def test_pass_is_bon_with_the_reward_as_verifier(case):
    _, rewards, _ = case
    binary = [float(r == 1.0) for r in rewards]
    np.testing.assert_allclose(bon_curve([binary], [binary]), pass_curve([binary]), atol=1e-12)


@settings(max_examples=300, deadline=None)
@given(prompt(max_n=8, binary=False))
def test_maj_exact_matches_enumeration(case):
    answers, rewards, _ = case
    n = len(answers)
    est = maj_curve(_obj(answers), [rewards], method="exact")
    assert est.exact.all() and np.all(est.stderr == 0)
    for k in range(1, n + 1):
        assert est.values[0, k - 1] == pytest.approx(brute.maj(answers, rewards, k), abs=1e-9)
    assert maj_at_k(_obj(answers), [rewards], n, method="exact").values[0] == pytest.approx(
        brute.maj(answers, rewards, n), abs=1e-9)


@pytest.mark.parametrize("aggregate", ["sum", "max"])
@settings(max_examples=150, deadline=None)
@given(case=prompt(max_n=7, binary=False))
def test_weighted_maj_exact_matches_enumeration(aggregate, case):
    answers, rewards, scores = case
    n = len(answers)
    est = weighted_maj_curve(_obj(answers), [scores], [rewards], aggregate=aggregate, method="exact")
    for k in range(1, n + 1):
        expected = brute.weighted_maj(answers, scores, rewards, k, aggregate)
        assert est.values[0, k - 1] == pytest.approx(expected, abs=1e-9)
    one = weighted_maj_at_k(_obj(answers), [scores], [rewards], 1, aggregate=aggregate, method="exact")
    assert one.values[0] == pytest.approx(brute.weighted_maj(answers, scores, rewards, 1, aggregate), abs=1e-9)


@settings(max_examples=12, deadline=None)
@given(st.integers(17, 24), st.integers(0, 10_000))
def test_weighted_max_is_exact_beyond_enumeration_without_cross_answer_ties(n, seed):
    rng = np.random.default_rng(seed)
    answers = rng.choice(np.array(["a", "b", "c", None], dtype=object), size=n)
    rewards = np.array([1.0 if a == "a" else 0.0 for a in answers])
    scores = rng.random(n)  # continuous: no ties
    est = weighted_maj_curve(_obj(list(answers)), [scores], [rewards], aggregate="max")
    assert est.exact.all()
    for k in (1, 2, n):  # few enough subsets to enumerate
        assert est.values[0, k - 1] == pytest.approx(
            brute.weighted_maj(list(answers), list(scores), list(rewards), k, "max"), abs=1e-9)
    # Between, C(24, 12) subsets are too many: a seeded Monte-Carlo over random k-subsets, within 5 standard errors.
    ks = sorted({3, n // 2, n - 1} | {int(k) for k in rng.integers(2, n, size=2)})
    for k in ks:
        mean, stderr = brute.monte_carlo_subsets(
            lambda subset: brute.weighted_max_outcome(list(answers), list(scores), list(rewards), subset),
            n, k, draws=1000, seed=seed + k)
        # A probability below ~3/draws can go unseen in every draw (stderr 0): that much slack is allowed.
        assert abs(est.values[0, k - 1] - mean) <= 5 * stderr + 3 / 1000, (k, est.values[0, k - 1], mean, stderr)


def test_edge_cases_all_correct_none_correct_all_unparseable():
    n = 6
    all_ok = np.ones((1, n))
    none_ok = np.zeros((1, n))
    np.testing.assert_allclose(pass_curve(all_ok), 1.0)
    np.testing.assert_allclose(pass_curve(none_ok), 0.0)
    unparsed = _obj([None] * n)
    assert np.all(maj_curve(unparsed, none_ok, method="exact").values == 0.0)
    assert np.all(weighted_maj_curve(unparsed, all_ok, none_ok).values == 0.0)
    same = _obj(["x"] * n)
    np.testing.assert_allclose(maj_curve(same, all_ok, method="exact").values, 1.0)


def test_maj_exact_large_n_matches_monte_carlo():
    rng = np.random.default_rng(3)
    n = 48
    answers = rng.choice(np.array(["r", "w1", "w2", "w3", None], dtype=object), size=(6, n),
                         p=[0.3, 0.3, 0.2, 0.1, 0.1])
    rewards = (answers == "r").astype(float)
    exact = maj_curve(answers, rewards, method="exact")
    mc = maj_curve(answers, rewards, method="mc", mc_samples=4000, seed=1)
    # Within 5 standard errors; the slack covers outcomes so rare that no permutation drew them (stderr 0).
    assert np.all(np.abs(mc.values - exact.values) < 5 * mc.stderr + 1e-3)
    # Full-set votes are deterministic: both must give the same number.
    np.testing.assert_allclose(mc.values[:, -1], exact.values[:, -1], atol=1e-12)


def test_weighted_sum_monte_carlo_agrees_with_enumeration():
    rng = np.random.default_rng(5)
    n = 10
    answers = rng.choice(np.array(["a", "b", "c", None], dtype=object), size=(5, n))
    rewards = (answers == "a").astype(float)
    scores = rng.random((5, n)).round(2)
    exact = weighted_maj_curve(answers, scores, rewards, method="exact")
    mc = weighted_maj_curve(answers, scores, rewards, method="mc", mc_samples=3000, seed=2)
    assert np.all(np.abs(mc.values - exact.values) < 5 * mc.stderr + 1e-3)
    # The prompt-mean standard error is reported and small.
    assert np.all(mc.mean_stderr() < 0.01)


def test_vectorised_over_prompts_equals_row_by_row():
    rng = np.random.default_rng(0)
    scores = rng.random((20, 9)).round(1)
    rewards = (rng.random((20, 9)) < 0.4).astype(float)
    whole = bon_curve(scores, rewards)
    for p in range(20):
        np.testing.assert_allclose(whole[p], bon_curve(scores[p], rewards[p])[0], atol=1e-12)


class _FixedOrder:
    """Stands in for a numpy Generator: every Monte-Carlo draw visits the samples in one given order."""

    def __init__(self, order):
        self.order = np.asarray(order)

    def permuted(self, a, axis=0):
        return np.broadcast_to(self.order[:, None], a.shape).copy()


@pytest.mark.parametrize("rule", ["maj", "sum", "max"])
@settings(max_examples=150, deadline=None)
@given(case=prompt(max_n=6, binary=False), data=st.data())
def test_each_monte_carlo_draw_averages_the_tie_of_its_own_prefix_exactly(rule, case, data):
    """A vote curve's draw is one order of the samples; its value at k must be the reward of the vote among the first
    k, ties between answers averaged: the Monte-Carlo mean is unbiased only if every draw is. (The first lead once
    counted twice in its own tie, which biased draws whose first sample stayed tied.)"""
    from infertune.estimators.vote_scan import scan_curves

    answers, rewards, scores = case
    n = len(answers)
    order = data.draw(st.permutations(range(n)))
    codes = {a: i for i, a in enumerate(dict.fromkeys(a for a in answers if a is not None))}
    ids = np.array([[codes[a] if a is not None else -1 for a in answers]])
    value = brute.answer_value(answers, rewards)
    values = np.array([[value[a] for a in codes] or [0.0]])
    weights = np.ones((1, n)) if rule == "maj" else np.array([scores], dtype=np.float64)
    mean, _ = scan_curves(ids, weights, values, "max" if rule == "max" else "sum", 2, _FixedOrder(order))
    for k in range(1, n + 1):
        prefix = order[:k]
        if rule == "max":
            expected = brute.weighted_max_outcome(answers, scores, rewards, prefix)
        else:
            votes: dict = {}
            for i in prefix:
                if answers[i] is not None:
                    votes[answers[i]] = votes.get(answers[i], 0.0) + (scores[i] if rule == "sum" else 1.0)
            top = max(votes.values(), default=0.0)
            tied = [a for a, w in votes.items() if w >= top - brute.TOL * max(abs(top), 1.0)]
            expected = float(np.mean([value[a] for a in tied])) if tied else 0.0
        assert mean[0, k - 1] == pytest.approx(expected, abs=1e-9), (k, order)
