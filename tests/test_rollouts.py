"""Rollout allocation (Knapsack RL), the training telemetry and B-STaR's temperature rule, as pure functions.

The allocation is checked against brute force over every allocation of small instances; its values against an
independent Beta-binomial; per-prompt n against exact enumeration of the samples of two prompts sharing parameters;
the balance score against a literal transcription of its definition; and the temperature rule on synthetic runs.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import betaln

from infertune.objectives import get, names, sample_weights
from infertune.train.allocation import (
    FITTED_MEAN_BOUNDS,
    KEEPS_EXPECTATION_AT_ANY_N,
    PRIOR_STRENGTH_BOUNDS,
    SuccessHistory,
    allocate,
    expected_values,
    fit_beta_prior,
    outcome_values,
    solve,
)
from infertune.train.loop import prompt_weights
from infertune.train.telemetry import (
    balance_score,
    distinct_correct,
    nonzero_gradient,
    progress_line,
    step_telemetry,
)
from infertune.train.temperature import bstar_step, candidate_temperatures, choose

# -- the knapsack ---------------------------------------------------------------------------------------------------


def brute_force(values: np.ndarray, budget: int, min_n: int):
    """The best total value over every allocation (each prompt 0 or min_n..max_n) spending exactly the budget."""
    max_n = values.shape[1] - 1
    options = [0] + list(range(min_n, max_n + 1))
    best = None
    for alloc in itertools.product(options, repeat=values.shape[0]):
        if sum(alloc) == budget:
            total = sum(values[i, n] for i, n in enumerate(alloc))
            best = total if best is None else max(best, total)
    return best


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.data())
def test_the_allocation_is_the_brute_force_optimum(prompts, max_n, data):
    min_n = data.draw(st.integers(1, max_n))
    budget = data.draw(st.integers(0, prompts * max_n + 1))
    values = np.array(data.draw(st.lists(st.lists(st.floats(-1, 5, allow_nan=False), min_size=max_n + 1,
                                                  max_size=max_n + 1), min_size=prompts, max_size=prompts)))
    values[:, 0] = 0.0  # a skipped prompt is worth nothing
    best = brute_force(values, budget, min_n)
    if best is None:
        with pytest.raises(ValueError, match="spends exactly"):
            solve(values, budget, min_n)
        return
    alloc = solve(values, budget, min_n)
    assert alloc.sum() == budget
    assert all(n == 0 or min_n <= n <= max_n for n in alloc)
    assert sum(values[i, n] for i, n in enumerate(alloc)) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("objective, k", [("rloo", 1), ("grpo", 1), ("bon-exact", 2), ("bon-rlb", 3), ("star", 1),
                                          ("bon-rl-s", 2), ("passk-chen", 2)])
def test_values_are_the_expectation_under_the_beta_binomial(objective, k):
    table = outcome_values(objective, k, 8)
    alpha, beta = np.array([0.7, 3.0, 12.0]), np.array([1.3, 0.5, 4.0])
    values = expected_values(table, alpha, beta)
    for i in range(3):
        for n in range(9):
            pmf = stats.betabinom.pmf(np.arange(n + 1), n, alpha[i], beta[i])
            assert values[i, n] == pytest.approx(pmf @ table[n, : n + 1], abs=1e-12)


def test_group_value_is_the_chance_the_group_is_not_all_equal():
    """With a near-certain success rate p the Beta-binomial is the binomial: 1 − p^n − (1 − p)^n (Knapsack RL)."""
    p, strength = 0.3, 1e9
    values = expected_values(outcome_values("grpo", 1, 6), [p * strength], [(1 - p) * strength])[0]
    n = np.arange(7)
    np.testing.assert_allclose(values, np.where(n > 0, 1 - p**n - (1 - p) ** n, 0.0), atol=1e-6)


@pytest.mark.parametrize("objective, k", [("rloo", 1), ("grpo", 1), ("dr-grpo", 1), ("bon-exact", 1), ("bon-exact", 3),
                                          ("bon-rl-v", 2), ("bon-rl-s", 3), ("passk-chen", 3), ("star", 1),
                                          ("bon-rlbp", 2)])
def test_the_value_of_an_outcome_is_whether_the_weights_are_not_all_zero(objective, k):
    """M[n, c] = 1 exactly when the objective's weights on any ordering of c correct and n − c wrong samples are not
    all zero; each objective's rule is also pinned in closed form (the group objectives and Lemma 2: 0 < c < n;
    bon-exact: 0 < c <= min(n − 1, n − k + 1); star and bon-rlbp: c > 0; passk-chen: c > 0 and n − c >= k)."""
    rng = np.random.default_rng(0)
    table = outcome_values(objective, k, 9)
    least = k + 1 if get(objective).needs_more_samples_than_k else k
    for n in range(max(least, 2), 10):
        for c in range(n + 1):
            r = rng.permutation(np.r_[np.ones(c), np.zeros(n - c)])
            assert table[n, c] == float(np.any(sample_weights(objective, r, k=k) != 0))
            if objective in ("rloo", "grpo", "dr-grpo"):
                assert table[n, c] == float(0 < c < n)
            if objective == "bon-exact":
                assert table[n, c] == float(0 < c <= min(n - 1, n - k + 1))
            if objective in ("bon-rl-v", "bon-rl-s"):
                assert table[n, c] == float(0 < c < n)
            if objective in ("star", "bon-rlbp"):
                assert table[n, c] == float(c > 0)
            if objective == "passk-chen":
                assert table[n, c] == float(c > 0 and n - c >= k)
    assert not table[:least].any()


@pytest.mark.parametrize("objective, k", [("bon-exact", 1), ("bon-exact", 4), ("rloo", 1), ("bon-rl-s", 4)])
def test_the_weights_expected_magnitude_could_not_choose_n(objective, k):
    """Why the value is not E[Σ|w_i|] (what the issue asked for the Best-of-k objectives): for an objective whose
    weights keep their expectation at every n it is the same at every n, so it cannot tell the knapsack how many
    samples a prompt should get. The chance of a non-zero gradient grows with n."""
    for p in (0.05, 0.4, 0.9):
        magnitude, value = [], []
        for n in range(k + 1, 17):
            pmf = stats.binom.pmf(np.arange(n + 1), n, p)
            magnitude.append(pmf @ [np.abs(sample_weights(objective, np.r_[np.ones(c), np.zeros(n - c)], k=k)).sum()
                                    for c in range(n + 1)])
        strength = 1e9
        value = expected_values(outcome_values(objective, k, 16), [p * strength], [(1 - p) * strength])[0, k + 1:]
        np.testing.assert_allclose(magnitude, magnitude[0], rtol=1e-9)
        assert np.all(np.diff(value) >= -1e-9) and value[-1] > value[0]


def test_bon_exact_under_knapsack_gives_no_prompt_samples_it_cannot_use():
    """The old magnitude value, flat in n, left bon-exact's spare samples wherever rounding put them. Now prompts
    alike get n within one of each other, and a prompt that is all-correct so far gets no more than any of them (where
    bon-exact has no gradient is pinned by the table's own test)."""
    history = SuccessHistory()
    ids = [f"p{i}" for i in range(12)]
    history.record(ids, [np.r_[np.ones(3), np.zeros(13)]] * 11 + [np.ones(16)])
    n = allocate(ids, history, objective="bon-exact", k=4, budget=96, min_n=4, max_n=40, prior_strength=0.0)
    assert n.sum() == 96
    alike = n[:11][n[:11] > 0]
    assert alike.max() - alike.min() <= 1
    assert n[11] <= alike.min()


def test_knapsack_refuses_an_objective_whose_weights_are_never_all_zero(tmp_path):
    from infertune.train import TrainConfig

    with pytest.raises(ValueError, match="not all zero at every outcome"):
        TrainConfig(task="arith", model="tiny", objective="bon-rlb", k=2, allocation="knapsack",
                    out=str(tmp_path / "r"))


def test_knapsack_moves_samples_from_settled_prompts_to_uncertain_ones():
    history = SuccessHistory()
    history.record(["easy", "hard", "mixed", "mixed2"], [np.ones(16), np.zeros(16), np.r_[np.ones(8), np.zeros(8)],
                                                         np.r_[np.ones(5), np.zeros(11)]])
    ids = ["easy", "hard", "mixed", "mixed2", "unseen"]
    n = allocate(ids, history, objective="rloo", k=1, budget=24, min_n=2, max_n=16, prior_strength=2.0)
    assert n.sum() == 24
    # All-correct and all-wrong last time: each gets fewer samples than any prompt likely to disagree, and fewer than
    # the 24/5 of a uniform split (with a prior of 2 pseudo-samples they are not written off entirely).
    assert n[:2].max() < n[2:].min() and n[:2].max() < 24 / 5
    assert n[3] >= n[2]  # p ≈ 0.3 needs more samples than p ≈ 0.5 to see both outcomes
    n = allocate(ids, history, objective="rloo", k=1, budget=6, min_n=2, max_n=16, prior_strength=2.0)
    assert n[0] == n[1] == 0 and n.sum() == 6  # a tight budget skips the settled prompts


def test_success_history_keeps_the_latest_visit_and_survives_a_checkpoint():
    history = SuccessHistory(decay=0.0)
    history.record(["a", "b"], [np.array([1.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0])])
    history.record(["a"], [np.array([1.0, 1.0, 1.0])])
    assert history.latest == {"a": (3.0, 3), "b": (1.0, 4)}
    assert history.prior_mean() == pytest.approx(4 / 7)
    alpha, beta = history.posterior(["a", "new"], prior_strength=2.0)
    np.testing.assert_allclose(alpha, [8 / 7 + 3, 8 / 7])
    np.testing.assert_allclose(beta, [6 / 7, 6 / 7])
    assert SuccessHistory.from_state(history.state(), 0.0) == history


def test_the_default_history_counts_every_visit_alike():
    history = SuccessHistory()
    history.record(["a"], [np.array([1.0, 0.0])])
    history.record(["a"], [np.array([0.0, 0.0, 0.0])])
    assert history.latest == {"a": (1.0, 5.0)}
    assert SuccessHistory.from_state(history.state()) == history


@pytest.mark.parametrize("decay", [0.0, 0.3, 1.0])
def test_success_history_with_decay_weighs_each_earlier_visit_by_decay_per_later_visit(decay):
    visits = [("a", [1.0, 0.0, 0.0, 0.0]), ("b", [1.0, 1.0]), ("a", [1.0, 1.0]), ("a", [0.0, 0.0, 0.0]),
              ("b", [0.0] * 5)]
    history = SuccessHistory(decay=decay)
    for pid, rewards in visits:
        history.record([pid], [np.array(rewards)])
    # By hand: a's visits, oldest first, are 1/4, 2/2 and 0/3; b's 2/2 and 0/5.
    expected = {"a": (1 * decay**2 + 2 * decay + 0, 4 * decay**2 + 2 * decay + 3), "b": (2 * decay, 2 * decay + 5)}
    assert history.latest.keys() == expected.keys()
    for pid, (successes, trials) in expected.items():
        assert history.latest[pid] == pytest.approx((successes, trials), abs=1e-12)
    alpha, beta = history.posterior(["a", "b"], prior_strength=2.0)
    pooled = (expected["a"][0] + expected["b"][0]) / (expected["a"][1] + expected["b"][1])  # over decayed counts
    mu = min(max(pooled, 0.01), 0.99)
    assert history.prior_mean() == pytest.approx(mu)
    np.testing.assert_allclose(alpha, [2 * mu + expected["a"][0], 2 * mu + expected["b"][0]])
    np.testing.assert_allclose(beta, [2 * (1 - mu) + expected["a"][1] - expected["a"][0],
                                      2 * (1 - mu) + expected["b"][1] - expected["b"][0]])
    # The empirical-Bayes prior is fitted to the decayed (fractional) counts themselves.
    many = SuccessHistory(decay=decay)
    rng = np.random.default_rng(5)
    for visit in range(3):
        many.record([f"p{i}" for i in range(12)], [(rng.random(4 + i % 3) < 0.2 + 0.05 * i).astype(float)
                                                   for i in range(12)])
    successes, trials = np.array(list(many.latest.values())).T
    np.testing.assert_allclose(many.prior(0.0), fit_beta_prior(successes, trials))
    if decay not in (0.0, 1.0):
        assert np.any(trials != np.round(trials))
    resumed = SuccessHistory.from_state(history.state(), decay)
    assert resumed == history
    resumed.record(["a"], [np.array([1.0])])
    history.record(["a"], [np.array([1.0])])
    assert resumed.latest == history.latest  # a resumed run goes on accumulating as the uninterrupted one does


@pytest.mark.parametrize("decay", [-0.1, 1.5, float("nan")])
def test_history_decay_outside_0_1_is_refused(decay, tmp_path):
    from infertune.train import TrainConfig

    with pytest.raises(ValueError, match="decay"):
        SuccessHistory(decay=decay)
    with pytest.raises(ValueError, match="history_decay"):
        TrainConfig(allocation="knapsack", history_decay=decay, out=str(tmp_path))
    with pytest.raises(ValueError, match="knapsack only"):
        TrainConfig(history_decay=0.5, out=str(tmp_path))


def test_empirical_prior_is_the_beta_binomial_maximum_likelihood():
    rng = np.random.default_rng(3)
    rates = rng.beta(2.0, 6.0, size=3000)
    trials = rng.integers(4, 12, size=rates.size)
    successes = rng.binomial(trials, rates)
    alpha0, beta0 = fit_beta_prior(successes, trials)
    assert alpha0 / (alpha0 + beta0) == pytest.approx(0.25, abs=0.02)
    assert alpha0 + beta0 == pytest.approx(8.0, rel=0.25)

    def log_likelihood(a, b):
        return (betaln(successes + a, trials - successes + b) - betaln(a, b)).sum()

    grid = [(a, b) for a in np.linspace(0.5, 6, 45) for b in np.linspace(2, 20, 45)]
    assert log_likelihood(alpha0, beta0) >= max(log_likelihood(a, b) for a, b in grid) - 1e-6
    # Every prompt failed: the likelihood rises as the prior collapses onto 0; the fit stops at the bounds.
    alpha0, beta0 = fit_beta_prior(np.zeros(20), np.full(20, 8))
    assert alpha0 / (alpha0 + beta0) == pytest.approx(FITTED_MEAN_BOUNDS[0], rel=1e-3) and np.isfinite(beta0)
    with pytest.raises(ValueError, match="successes <= trials"):
        fit_beta_prior([3], [2])


def test_posterior_uses_the_fitted_prior_once_enough_prompts_were_seen():
    history = SuccessHistory()
    history.record(["a", "b"], [np.array([1.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0])])
    alpha, beta = history.posterior(["new"], prior_strength=0.0)  # too few prompts to fit: two pseudo-samples
    np.testing.assert_allclose([alpha[0], beta[0]], [4 / 6, 8 / 6])
    np.testing.assert_allclose(SuccessHistory().prior(0.0), [1.0, 1.0])  # nothing seen yet: Beta(1, 1)
    history.record([f"p{i}" for i in range(10)], [np.r_[np.ones(i % 3), np.zeros(8 - i % 3)] for i in range(10)])
    successes, trials = np.array(list(history.latest.values())).T
    alpha, beta = history.posterior(["new", "a"], prior_strength=0.0)
    np.testing.assert_allclose([alpha[0], beta[0]], fit_beta_prior(successes, trials))
    np.testing.assert_allclose([alpha[1] - alpha[0], beta[1] - beta[0]], [1.0, 1.0])


def test_empirical_prior_does_not_write_off_prompts_seen_failing_once():
    # 40 prompts that all succeed 4% of the time, each seen once with 8 samples (about as Binomial(8, 0.04) falls):
    # 30 saw no success. With all rates equal, P(0 < C < n) is concave in n, so uniform allocation is optimal for the
    # expected number of prompts with a gradient; a U-shaped fixed prior (pooled mean with 1 pseudo-sample) writes
    # the 0-of-8 prompts off and loses prompts, the fitted prior keeps every prompt.
    history = SuccessHistory()
    ids = [f"q{i}" for i in range(40)]
    history.record(ids, [np.r_[np.ones(int(i < 10)), np.zeros(8 - int(i < 10))] for i in range(40)])
    chosen = ids[5:13]  # five seen with a success, three without; the budget of 8 prompts x 8 samples
    truth = 0.04

    def expected_informative(sizes):
        sizes = np.asarray(sizes)
        return float((1 - (1 - truth) ** sizes - truth ** sizes)[sizes > 0].sum())

    uniform = expected_informative(np.full(8, 8))
    # These visits vary less than binomial sampling would: the fit stops at its strength bound, so every prompt is
    # treated alike (the next test has rates that differ, where the fit tells prompts apart).
    successes, trials = np.array(list(history.latest.values())).T
    assert sum(fit_beta_prior(successes, trials)) == pytest.approx(PRIOR_STRENGTH_BOUNDS[1])
    fitted = allocate(chosen, history, objective="grpo", k=1, budget=64, min_n=2, max_n=32, prior_strength=0.0)
    fixed = allocate(chosen, history, objective="grpo", k=1, budget=64, min_n=2, max_n=32, prior_strength=1.0)
    assert fitted.sum() == fixed.sum() == 64
    assert (fitted > 0).all() and expected_informative(fitted) >= 0.98 * uniform
    assert expected_informative(fixed) < 0.95 * uniform


def test_empirical_prior_tells_prompts_apart_when_their_rates_differ():
    # Half the prompts were never solved at their last visit, half were solved 3 times in 8: the fitted prior is
    # wide (well inside its strength bounds), and prompts seen with mixed outcomes get more samples than those seen
    # all-wrong, which are not written off (each still gets samples, the fitted prior keeping p > 0 plausible).
    history = SuccessHistory()
    ids = [f"q{i}" for i in range(40)]
    history.record(ids, [np.r_[np.ones(3 * (i % 2)), np.zeros(8 - 3 * (i % 2))] for i in range(40)])
    successes, trials = np.array(list(history.latest.values())).T
    alpha0, beta0 = fit_beta_prior(successes, trials)
    assert PRIOR_STRENGTH_BOUNDS[0] < alpha0 + beta0 < PRIOR_STRENGTH_BOUNDS[1] / 10
    chosen = ids[:8]  # q0, q2, q4, q6 seen 0 of 8; q1, q3, q5, q7 seen 3 of 8
    sizes = allocate(chosen, history, objective="grpo", k=1, budget=48, min_n=2, max_n=32, prior_strength=0.0)
    assert sizes.sum() == 48
    assert sizes[1::2].min() > sizes[0::2].max() and sizes[0::2].min() > 0


# -- unbiasedness with a different n per prompt, by enumeration ------------------------------------------------------

THETA = [0.3, -0.5, 0.8]
PROMPTS = [  # (offset of the prompt's logits, reward of each outcome, verifier score of each outcome)
    (np.array([0.0, 0.4, -0.2]), np.array([1.0, 0.0, 0.0]), np.array([0.2, 0.9, 0.1])),  # prefers a wrong answer
    (np.array([-0.3, 0.1, 0.5]), np.array([0.0, 1.0, 1.0]), np.array([0.5, 0.5, 0.7])),  # a tie across outcomes
]


def _policy(theta, offset, temperature):
    return torch.softmax((theta + torch.tensor(offset)) / temperature, 0)


def _bon_at_k(theta, offset, rewards, scores, k, temperature):
    """BoN@k of one prompt: the expected reward of the top-scored of k samples (ties uniform), by enumerating the
    k-tuples; with ``scores`` None the reward selects, which is pass@k for a 0/1 reward (pass@1 at k = 1)."""
    pi = _policy(theta, offset, temperature)
    s = rewards if scores is None else scores
    value = 0
    for tup in itertools.product(range(len(rewards)), repeat=k):
        top = max(s[i] for i in tup)
        picks = [rewards[i] for i in tup if s[i] == top]
        value = value + torch.prod(pi[list(tup)]) * (sum(picks) / len(picks))
    return value


@pytest.mark.parametrize("objective, k, sizes, verifier", [("rloo", 1, (2, 4), False), ("bon-exact", 2, (2, 5), False),
                                                           ("bon-exact", 3, (4, 3), False),
                                                           ("bon-exact", 2, (3, 5), True),
                                                           ("bon-exact", 3, (5, 3), True)])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_per_prompt_n_keeps_the_batch_unbiased(objective, k, sizes, verifier, temperature):
    """Two prompts share the parameters θ and are sampled n_1 and n_2 times (an allocation fixed before sampling).
    Summing every joint outcome of their samples, weighted by its probability, the trainer's update direction
    (1/m) Σ_x Σ_i w_{x,i} ∇log π_T(y_{x,i}|x), each prompt's weights from its own n (``prompt_weights``, then a
    division by the m = 2 chosen prompts, as the trainer divides), equals (1/m) Σ_x ∇J_x: pass@1 for rloo, pass@k for
    bon-exact selecting by the reward, BoN@k for bon-exact selecting by a verifier (the demo's bon-exact/verifier arm).
    Which other objectives keep their (biased) expectation at any n is the next test's business."""
    theta = torch.tensor(THETA, dtype=torch.float64, requires_grad=True)
    target = sum(_bon_at_k(theta, off, r, s if verifier else None, k, temperature)
                 for off, r, s in PROMPTS) / len(PROMPTS)
    want, = torch.autograd.grad(target, theta)
    pis = [_policy(theta, off, temperature).detach().numpy() for off, _, _ in PROMPTS]
    expected = np.zeros(3)
    for outcomes in itertools.product(*[itertools.product(range(3), repeat=n) for n in sizes]):
        prob = np.prod([np.prod(pi[list(o)]) for pi, o in zip(pis, outcomes)])
        targets = [r[list(o)] for (_, r, _), o in zip(PROMPTS, outcomes)]
        scores = [s[list(o)] for (_, _, s), o in zip(PROMPTS, outcomes)] if verifier else None
        weights = prompt_weights(objective, targets, scores, k)
        direction = np.zeros(3)
        for pi, o, w in zip(pis, outcomes, weights):
            for y, wi in zip(o, w):
                direction += wi * (np.eye(3)[y] - pi) / temperature  # ∇_θ log softmax((θ + b)/T)[y]
        expected += prob * direction / len(PROMPTS)
    np.testing.assert_allclose(expected, want.numpy(), atol=1e-12)


# -- telemetry ------------------------------------------------------------------------------------------------------


def literal_balance(rewards_rows, scores_rows, texts_rows, target, threshold):
    """B-STaR's balance score at one threshold, as its definition reads (duplicates dropped, per query
    min(n'/n*, 1)·n'/n, 0 for a query with nothing selected, mean over queries)."""
    per_query = []
    for rewards, scores, texts in zip(rewards_rows, scores_rows, texts_rows):
        kept = {t: r for r, s, t in zip(rewards, scores, texts) if s >= threshold}
        n_sel = len(kept)
        n_good = sum(1 for r in kept.values() if r == 1)
        per_query.append(min(n_good / target, 1) * n_good / n_sel if n_sel else 0.0)
    return float(np.mean(per_query))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=8), min_size=1, max_size=4), st.floats(0.5, 4))
def test_balance_score_is_the_best_threshold_of_the_literal_definition(rows, target):
    # Sample j of a prompt is answer t; a text determines its reward and score (the same completion gets the same
    # reward and, from a per-sample verifier, the same score), as in a real batch.
    texts = [[f"answer{t}" for t in row] for row in rows]
    rewards = [[float(t % 2) for t in row] for row in rows]
    scores = [[float((t * 3) % 5) for t in row] for row in rows]
    best, threshold = balance_score(rewards, scores, texts, target)
    candidates = sorted({s for row in scores for s in row})
    brute = max(literal_balance(rewards, scores, texts, target, c) for c in candidates)
    assert best == pytest.approx(brute, abs=1e-12)
    assert literal_balance(rewards, scores, texts, target, threshold) == pytest.approx(best, abs=1e-12)


def test_step_telemetry_of_a_hand_made_batch():
    rewards = [np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.0, 0.0]), np.array([1.0, 1.0, 1.0])]
    scores = [np.array([0.9, 0.2, 0.5, 0.1]), np.array([0.3, 0.4]), np.array([0.5, 0.5, 0.5])]
    answers = [["1+2", "2+1", "3", None], ["4", "4"], ["5", "5", "2+3"]]
    weights = [np.array([0.1, 0.1, -0.1, -0.1]), np.zeros(2), np.zeros(3)]
    t = step_telemetry(rewards, scores, answers, answers, weights, k=2, balance_target=2)
    assert t["prompts"] == 3 and t["samples"] == 9
    assert t["nonzero_prompts"] == pytest.approx(1 / 3) and t["nonzero_samples"] == pytest.approx(4 / 9)
    assert t["reward"] == pytest.approx((1 / 2 + 0 + 1) / 3)  # each prompt once
    assert t["pass_at_k"] == pytest.approx((1 - 1 / 6 + 0 + 1) / 3)  # pass@2 of 2-of-4 correct is 5/6
    assert t["distinct_correct"] == pytest.approx((2 + 0 + 2) / 3)
    # Prompt 1: the verifier's top pick (0.9) is right; prompt 3: all tied and all right; prompt 2 has nothing.
    assert t["selection_accuracy"] == pytest.approx(1.0)
    np.testing.assert_array_equal(nonzero_gradient(weights), [True, False, False])
    np.testing.assert_array_equal(distinct_correct(rewards, answers), [2, 0, 2])
    # n* = 2. Threshold 0.2 keeps prompt 1's "1+2", "2+1" (right) and "3" (wrong): min(2/2, 1)·2/3; prompt 2 keeps
    # nothing right: 0; prompt 3 keeps its 2 distinct right answers: 1. The other thresholds score less:
    # 0.1 → (2/4 + 0 + 1)/3, 0.4 and 0.5 → (1/2·1/2 + 0 + 1)/3, 0.9 → (1/2 + 0 + 0)/3.
    assert t["balance"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert balance_score(rewards, scores, answers, 2) == pytest.approx(((2 / 3 + 1) / 3, 0.2))
    line = progress_line({**t, "entropy": 0.5, "temperature": 1.0, "loss": 0.25}, 2)
    assert "select 1.00" in line and "nonzero 0.33" in line and "pass@2" in line


def test_a_bon_exact_group_with_too_many_correct_samples_has_no_gradient():
    """bon-exact at n = 16, k = 8 with 10 or more correct samples: every weight is exactly 0 (not a rounding
    residue), so the step's telemetry counts the prompt as having no gradient."""
    rows = [np.r_[np.ones(c), np.zeros(16 - c)] for c in (9, 10, 16)]
    weights = prompt_weights("bon-exact", rows, None, 8)
    np.testing.assert_array_equal(nonzero_gradient(weights), [True, False, False])


# -- B-STaR's temperature rule on synthetic runs ----------------------------------------------------------------


class SyntheticPolicy:
    """Answers to a prompt: a favourite correct answer, four rarer correct ones and ten wrong ones that the verifier
    rates above every correct answer (a reward model's blind spot, so no threshold keeps them out). ``sharpness``
    scales the logits, as a policy trained on its own samples sharpens. The balance score is low at low T (one
    distinct correct answer) and at high T (many wrong ones selected) and peaks between."""

    LOGITS = np.array([3.0, 1.0, 1.0, 0.8, 0.8] + [0.0] * 10)
    CORRECT = np.array([1.0] * 5 + [0.0] * 10)
    SCORE = np.array([0.6] * 5 + [0.9] * 10)

    def __init__(self, sharpness: float = 1.0, prompts: int = 1024, n: int = 16, seed: int = 0):
        self.sharpness, self.prompts, self.n, self.seed = sharpness, prompts, n, seed

    def balance_at(self, temperature: float) -> float:
        logits = self.sharpness * self.LOGITS / temperature
        p = np.exp(logits - logits.max())
        p /= p.sum()
        u = np.random.default_rng(self.seed).random((self.prompts, self.n))  # the same uniforms at every T
        draws = np.minimum(np.searchsorted(np.cumsum(p), u), p.size - 1)
        rewards = [self.CORRECT[row] for row in draws]
        scores = [self.SCORE[row] for row in draws]
        texts = [[str(a) for a in row] for row in draws]
        return balance_score(rewards, scores, texts, target=4)[0]


def _run(policy, start, steps, sharpen=0.0):
    temperature, path = start, [start]
    for _ in range(steps):
        temperature = bstar_step(temperature, policy.balance_at, step=0.1, low=0.3, high=2.0).temperature
        policy.sharpness += sharpen
        path.append(temperature)
    return path


def test_collapsed_exploration_raises_the_temperature():
    """Low T: nearly every sample is the favourite answer, one distinct correct answer per prompt: B-STaR's score
    rewards more distinct correct samples, so the rule heats up, and stops where the verifier's blind spot starts to
    cost more than diversity gains."""
    policy = SyntheticPolicy()
    path = _run(policy, 0.4, 12)
    assert all(b >= a for a, b in zip(path, path[1:]))
    assert 0.6 <= path[-1] <= 0.9  # it settles where the wrong answers the verifier prefers start to cost more
    assert policy.balance_at(path[-1]) > policy.balance_at(0.4)


def test_too_noisy_samples_lower_the_temperature():
    """High T: the wrong answers the verifier rates highly crowd the selection; the rule cools down to the peak."""
    policy = SyntheticPolicy()
    path = _run(policy, 2.0, 20)
    assert all(b <= a for a, b in zip(path, path[1:]))
    assert 0.6 <= path[-1] <= 0.9
    assert policy.balance_at(path[-1]) > policy.balance_at(2.0)


def test_a_sharpening_policy_is_sampled_ever_hotter():
    """As a self-improving policy sharpens (B-STaR's diagnosis: exploration collapses over iterations), the rule
    keeps the balance up by raising the temperature."""
    start = _run(SyntheticPolicy(), 0.4, 15)[-1]
    policy = SyntheticPolicy()
    path = _run(policy, start, 15, sharpen=0.15)
    assert all(b >= a for a, b in zip(path, path[1:])) and path[-1] >= start + 0.5


def test_candidates_and_ties():
    assert candidate_temperatures(1.0, 0.1, 0.3, 1.5) == (0.9, 1.0, 1.1)
    assert candidate_temperatures(0.3, 0.1, 0.3, 1.5) == (0.3, 0.4)
    assert choose((0.9, 1.0, 1.1), (0.5, 0.5, 0.5), 1.0) == 1.0  # ties keep the current temperature
    assert choose((0.9, 1.0, 1.1), (np.nan, 0.2, 0.3), 1.0) == 1.1
    assert choose((0.9, 1.0), (np.nan, np.nan), 1.0) == 1.0
    with pytest.raises(ValueError):
        candidate_temperatures(1.0, 0.0, 0.3, 1.5)


# -- configuration ----------------------------------------------------------------------------------------------


def test_rollout_options_are_checked_before_any_work():
    from infertune.train import TrainConfig

    config = TrainConfig(allocation="knapsack", objective="bon-rl-s", n=8, k=4, batch_prompts=4)
    assert (config.pool_size, config.samples_min_n, config.samples_max_n) == (8, 5, 32)  # bon-rl-s needs n > k
    assert TrainConfig(allocation="knapsack", objective="rloo", n=8, k=1).samples_min_n == 2
    for bad, message in [
        (dict(allocation="greedy"), "uniform or knapsack"),
        (dict(candidate_prompts=32), "knapsack only"),
        (dict(allocation="knapsack", objective="sft"), "reference answers"),
        (dict(allocation="knapsack", objective="tang-loo", n=8, k=8), "k = n only"),
        (dict(allocation="knapsack", reward="verifier"), "--reward task"),
        (dict(allocation="knapsack", objective="bon-exact", n=8, k=4, min_n=3), "fewer samples"),
        (dict(allocation="knapsack", batch_prompts=16, n=16, candidate_prompts=4, max_n=32), "cannot spend"),
        (dict(auto_temperature=True, objective="sft"), "no sampling temperature"),
        (dict(auto_temperature=True, temperature=2.0), "outside"),
        (dict(prior_strength=-1.0), "prior_strength"),
        (dict(prior_strength=float("nan")), "prior_strength"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad)


# -- the training report ------------------------------------------------------------------------------------------


def test_report_of_a_training_run_plots_and_summarises_its_telemetry(tmp_path):
    from typer.testing import CliRunner

    from infertune.cli import app
    from infertune.train import LOG_FIELDS

    rows = []
    for step in range(1, 21):
        row = {name: 0.0 for name in LOG_FIELDS}
        row.update(step=step, reward=step / 40, pass_at_k=step / 20, nonzero_prompts=0.5, entropy=1.0 - step / 40,
                   balance=0.25, temperature=1.0 if step < 10 else 1.1, distinct_correct=step / 10, bon_at_k=step / 30)
        rows.append(row)
    with open(tmp_path / "train_log.csv", "w") as fh:
        fh.write(",".join(LOG_FIELDS) + "\n")
        for row in rows:
            fh.write(",".join(str(row[name]) for name in LOG_FIELDS) + "\n")
    (tmp_path / "eval_log.csv").write_text("step,pass@1,pass@4\n10,0.1,0.3\n20,0.2,0.4\n")
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "telemetry.png").stat().st_size > 10_000
    payload = json.loads((tmp_path / "report" / "telemetry.json").read_text())
    assert payload["summary"]["reward"] == {"first": pytest.approx(1.5 / 40), "last": pytest.approx(19.5 / 40)}
    assert payload["summary"]["temperature"] == {"first": 1.0, "last": pytest.approx(1.1)}
    assert payload["summary"]["bon_at_k"] == {"first": pytest.approx(1.5 / 30), "last": pytest.approx(19.5 / 30)}
    assert payload["held_out"]["pass@4"] == [0.3, 0.4]
    assert "distinct_correct" in result.output and "held-out at step 20" in result.output
    empty = tmp_path / "nothing"
    empty.mkdir()
    result = CliRunner().invoke(app, ["report", str(empty)])
    assert result.exit_code == 2 and "train_log.csv" in result.output


def _expected_direction(objective, pi, rewards, scores, n, k):
    """E over n i.i.d. samples from π (temperature 1) of Σ_i w_i ∇log π(y_i), by enumeration."""
    total = np.zeros(len(pi))
    for outcome in itertools.product(range(len(pi)), repeat=n):
        idx = list(outcome)
        w = sample_weights(objective, rewards[idx], scores[idx], None, k=k)
        total += np.prod(pi[idx]) * sum(wi * (np.eye(len(pi))[y] - pi) for wi, y in zip(w, idx))
    return total


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(KEEPS_EXPECTATION_AT_ANY_N), st.data())
def test_kept_expectations_are_the_same_at_every_n_at_random_points(objective, data):
    """The single point of the next test can show that an objective's expectation moves with n; that it does not
    is a claim about every policy, reward and verifier score, checked here at random ones (ties in the scores
    included), by enumerating every outcome of n samples at two different n."""
    pi = np.array(data.draw(st.lists(st.floats(0.05, 1.0), min_size=3, max_size=3)))
    pi = pi / pi.sum()
    rewards = np.array(data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=3, max_size=3)))
    assume(0 < rewards.sum() < 3)  # constant rewards give every objective a zero update at every n
    scores = np.array(data.draw(st.lists(st.sampled_from([0.1, 0.5, 0.9]), min_size=3, max_size=3)))
    k = 1 if objective == "rloo" else data.draw(st.integers(1, 3))
    least = max(2, k + 1 if get(objective).needs_more_samples_than_k else k)
    ns = data.draw(st.lists(st.integers(least, 5), min_size=2, max_size=2, unique=True))
    first, second = (_expected_direction(objective, pi, rewards, scores, n, k) for n in ns)
    np.testing.assert_allclose(first, second, atol=1e-12)
    assert np.abs(first).max() > 1e-9  # a point where the update is not zero, so the equality says something


SAMPLE_OBJECTIVES = ["rloo", "grpo", "dr-grpo", "star", "bon-exact", "bon-rl-v", "bon-rl-s", "bon-rlb", "bon-rlbp",
                     "passk-chen"]


@pytest.mark.parametrize("objective", SAMPLE_OBJECTIVES)
def test_knapsack_warns_exactly_for_objectives_whose_expectation_changes_with_n(objective):
    """Every objective knapsack accepts, enumerated at n = 3, 4 and 6 on one prompt: its expected update is the same
    at every n exactly for the objectives in KEEPS_EXPECTATION_AT_ANY_N, and ``train`` warns for all the others."""
    import warnings

    from infertune.train import TrainConfig

    assert set(SAMPLE_OBJECTIVES) == {name for name in names() if get(name).draws_samples
                                      and not get(name).needs_reference and name != "tang-loo"}
    pi, rewards, scores = np.array([0.3, 0.5, 0.2]), np.array([1.0, 0.0, 0.0]), np.array([0.2, 0.9, 0.1])
    k = 2 if objective.startswith(("bon", "passk")) else 1
    directions = [_expected_direction(objective, pi, rewards, scores, n, k) for n in (3, 4, 6)]
    same = all(np.allclose(d, directions[0], atol=1e-12) for d in directions)
    assert same == (objective in KEEPS_EXPECTATION_AT_ANY_N)
    if objective == "bon-rlb":  # its weights are never all zero, so knapsack has no value to allocate by
        with pytest.raises(ValueError, match="every allocation is worth the same"):
            TrainConfig(allocation="knapsack", objective=objective, n=8, k=k)
    elif same:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            TrainConfig(allocation="knapsack", objective=objective, n=8, k=k)
    else:
        with pytest.warns(UserWarning, match="changes with its number of samples") as caught:
            TrainConfig(allocation="knapsack", objective=objective, n=8, k=k)
        assert caught[0].filename == __file__  # the warning points at the caller, not into the dataclass
