"""Bad input raises a ValueError that says what is wrong, from every estimator."""

import numpy as np
import pytest

from infertune.estimators import (
    bon_at_k,
    bon_curve,
    bootstrap_mean,
    maj_at_k,
    maj_curve,
    pass_at_k,
    pass_curve,
    weighted_maj_curve,
)


def test_k_outside_range():
    with pytest.raises(ValueError, match="k=5 is outside 1..n"):
        bon_at_k(np.zeros((2, 4)), np.zeros((2, 4)), 5)
    with pytest.raises(ValueError, match="outside 1..n"):
        maj_at_k([["a", "b"]], [[1.0, 0.0]], 0)
    with pytest.raises(ValueError, match="k must lie in 1..n"):
        pass_at_k(4, 2, 5)


def test_empty_inputs():
    with pytest.raises(ValueError, match="empty"):
        bon_curve(np.zeros((0, 4)), np.zeros((0, 4)))
    with pytest.raises(ValueError, match="empty"):
        maj_curve(np.empty((3, 0), dtype=object), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="at least one prompt"):
        bootstrap_mean(np.zeros((0, 3)))


def test_nan_reward_names_its_position():
    r = np.ones((3, 4))
    r[2, 1] = np.nan
    with pytest.raises(ValueError, match="rewards: non-finite value nan at prompt 2, sample 1"):
        bon_curve(np.zeros((3, 4)), r)
    with pytest.raises(ValueError, match="prompt 2, sample 1"):
        maj_curve(np.full((3, 4), "x", dtype=object), r)


def test_mismatched_shapes():
    with pytest.raises(ValueError, match="mismatched shapes"):
        bon_curve(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="mismatched shapes"):
        maj_curve(np.full((2, 4), "x", dtype=object), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="mismatched shapes"):
        weighted_maj_curve(np.full((2, 4), "x", dtype=object), np.zeros((2, 3)), np.zeros((2, 4)))


def test_non_binary_rewards_for_pass_and_negative_sum_weights():
    with pytest.raises(ValueError, match="binary rewards"):
        pass_curve([[0.5, 1.0]])
    with pytest.raises(ValueError, match="non-negative scores"):
        weighted_maj_curve([["a", "b"]], [[-1.0, 0.2]], [[1.0, 0.0]])


def test_exact_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="use method='mc'"):
        weighted_maj_curve(np.full((1, 20), "a", dtype=object), np.ones((1, 20)), np.ones((1, 20)), method="exact")
    with pytest.raises(ValueError, match="method must be"):
        maj_curve([["a"]], [[1.0]], method="fast")


def test_bootstrap_interval_covers_mean_and_shrinks_with_prompts():
    rng = np.random.default_rng(0)
    small = bootstrap_mean(rng.random((50, 3)), seed=1)
    large = bootstrap_mean(rng.random((5000, 3)), seed=1)
    assert np.all(small.low <= small.mean) and np.all(small.mean <= small.high)
    assert np.all(large.high - large.low < (small.high - small.low) / 5)
