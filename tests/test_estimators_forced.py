"""Best-of-N and its stop rule with kept probes, against enumeration of every subset and every draw order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertune.estimators import bon_curve, stop_curves
from infertune.estimators.forced import bon_curve_forced, stop_curves_forced

SCORES = st.sampled_from([-np.inf, 0.0, 1.0, 2.0, 3.0])
REWARDS = st.sampled_from([0.0, 0.5, 1.0])
POOL = st.lists(st.tuples(SCORES, REWARDS, st.integers(1, 9)), min_size=1, max_size=6)
FORCED = st.lists(st.tuples(SCORES, REWARDS), min_size=1, max_size=3)


def _pick(candidates):
    """Expected reward of Best-of-N over (score, reward) candidates, ties split evenly."""
    best = max(s for s, _ in candidates)
    return np.mean([r for s, r in candidates if s == best])


def _arrays(pool, forced):
    s, r, t = (np.array([[row[i] for row in pool]], dtype=np.float64) for i in range(3))
    fs, fr = (np.array([[row[i] for row in forced]], dtype=np.float64) for i in range(2))
    return s, r, t, fs, fr


@settings(max_examples=200, deadline=None)
@given(POOL, FORCED)
def test_best_of_n_with_forced_candidates_equals_enumeration_of_subsets(pool, forced):
    s, r, _, fs, fr = _arrays(pool, forced)
    values = bon_curve_forced(s, r, fs, fr)
    assert values.shape == (1, len(pool) + 1)
    for k in range(len(pool) + 1):
        expected = np.mean([_pick(forced + [pool[i][:2] for i in subset])
                            for subset in itertools.combinations(range(len(pool)), k)])
        assert values[0, k] == pytest.approx(expected)


def _enumerate_stop(pool, forced, threshold, cap):
    values, draws, spent = [], [], []
    if max(s for s, _ in forced) >= threshold:
        return _pick(forced), 0.0, 0.0
    for order in itertools.permutations(range(len(pool)), cap):
        drawn = []
        for i in order:
            drawn.append(i)
            if pool[i][0] >= threshold:
                break
        values.append(_pick(forced + [pool[i][:2] for i in drawn]))
        draws.append(len(drawn))
        spent.append(sum(pool[i][2] for i in drawn))
    return np.mean(values), np.mean(draws), np.mean(spent)


@settings(max_examples=200, deadline=None)
@given(POOL, FORCED, st.sampled_from([-1.0, 0.5, 1.0, 2.5, 9.0]))
def test_stop_rule_with_forced_first_draws_equals_enumeration_of_orders(pool, forced, threshold):
    s, r, t, fs, fr = _arrays(pool, forced)
    values, draws, spent = stop_curves_forced(s, r, t, fs, fr, threshold)
    for cap in range(len(pool) + 1):
        expected = _enumerate_stop(pool, forced, threshold, cap)
        assert (values[0, cap], draws[0, cap], spent[0, cap]) == pytest.approx(expected)


def test_forced_candidates_that_never_win_leave_best_of_n_and_the_stop_rule_unchanged():
    """A probe scoring −inf is picked only among −inf candidates: with a finite pool, k ≥ 1 fresh samples give
    Best-of-k and the stop rule of the pool alone, and k = 0 answers with the probe."""
    rng = np.random.default_rng(0)
    scores, rewards = rng.random((20, 9)), (rng.random((20, 9)) < 0.4).astype(float)
    tokens = rng.integers(2, 7, (20, 9)).astype(float)
    probe_s, probe_r = np.full((20, 1), -np.inf), (rng.random((20, 1)) < 0.5).astype(float)
    values = bon_curve_forced(scores, rewards, probe_s, probe_r)
    np.testing.assert_allclose(values[:, 1:], bon_curve(scores, rewards))
    np.testing.assert_allclose(values[:, 0], probe_r[:, 0])
    for threshold in (0.3, 0.8):
        got = stop_curves_forced(scores, rewards, tokens, probe_s, probe_r, threshold)
        for forced_curve, plain in zip(got, stop_curves(scores, rewards, tokens, threshold)):
            np.testing.assert_allclose(forced_curve[:, 1:], plain)


def test_forced_inputs_are_checked():
    with pytest.raises(ValueError, match="forced_scores: 2 prompts"):
        bon_curve_forced(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((2, 1)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="forced_scores: non-finite value nan"):
        bon_curve_forced(np.zeros((1, 3)), np.zeros((1, 3)), [[np.nan]], [[0.0]])


def test_forced_curves_of_several_prompts_equal_each_prompt_alone():
    """The batch-wide parts (the raised top score, the loop over tie counts) give each prompt what it gets alone."""
    rng = np.random.default_rng(1)
    scores = rng.choice([-np.inf, 0.0, 1.0, 2.0], size=(6, 5))
    rewards = rng.choice([0.0, 1.0], size=(6, 5))
    tokens = rng.integers(1, 5, size=(6, 5)).astype(float)
    forced_s, forced_r = rng.choice([-np.inf, 0.0, 1.0, 3.0], size=(6, 2)), rng.choice([0.0, 1.0], size=(6, 2))
    forced_s[0] = [5.0, 5.0]  # one prompt's probes above every score of every prompt
    together = bon_curve_forced(scores, rewards, forced_s, forced_r)
    stops = stop_curves_forced(scores, rewards, tokens, forced_s, forced_r, 1.0)
    for p in range(6):
        alone = bon_curve_forced(scores[p:p + 1], rewards[p:p + 1], forced_s[p:p + 1], forced_r[p:p + 1])
        np.testing.assert_allclose(together[p], alone[0])
        for batch, single in zip(stops, stop_curves_forced(scores[p:p + 1], rewards[p:p + 1], tokens[p:p + 1],
                                                           forced_s[p:p + 1], forced_r[p:p + 1], 1.0)):
            np.testing.assert_allclose(batch[p], single[0])
