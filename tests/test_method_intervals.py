"""Method-level intervals: over fine-tuning seeds and problems, with few seeds, they cover what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from infertune.estimators import bootstrap_mean, method_difference, method_interval


def _arm(rng, seeds, prompts, seed_sd, prompt_effect, interaction_sd, mean=0.5):
    """x[s, p] = mean + seed effect + problem effect + seed-by-problem noise."""
    return (mean + rng.normal(0, seed_sd, (seeds, 1)) + prompt_effect
            + rng.normal(0, interaction_sd, (seeds, prompts)))


@pytest.mark.parametrize("seeds, seed_sd, interaction_sd", [(3, 0.06, 0.05), (5, 0.06, 0.05), (3, 0.0, 0.3)])
def test_intervals_cover_the_method_mean_with_few_seeds(seeds, seed_sd, interaction_sd):
    """Coverage of the 95% interval for one arm and for a difference of two arms, over 400 simulated studies: close
    to 95% whether the seed variance is large or absent (a prompts-only bootstrap of seed means covers far less
    when it is large)."""
    rng = np.random.default_rng(seeds * 100 + int(seed_sd * 100))
    trials, prompts = 400, 150
    covered_arm = covered_diff = covered_naive = 0
    for _ in range(trials):
        effect = rng.normal(0, 0.2, (1, prompts))
        a = _arm(rng, seeds, prompts, seed_sd, effect, interaction_sd, mean=0.55)
        b = _arm(rng, seeds, prompts, seed_sd, effect + rng.normal(0, 0.05, (1, prompts)), interaction_sd, 0.5)
        one = method_interval(a)
        covered_arm += one.low <= 0.55 <= one.high  # the method's mean over problems and seeds
        diff = method_difference(a, b)
        covered_diff += diff.low <= 0.05 <= diff.high
        naive = bootstrap_mean(a.mean(axis=0), resamples=200, seed=1)
        covered_naive += naive.low <= 0.55 <= naive.high
    assert 0.9 <= covered_arm / trials <= 0.99, covered_arm / trials
    assert 0.9 <= covered_diff / trials <= 0.99, covered_diff / trials
    if seed_sd > 0:  # a bootstrap over problems of seed means misses the seed variance
        assert covered_naive / trials < covered_arm / trials - 0.05, (covered_naive, covered_arm)


def test_single_model_arms_and_curves():
    rng = np.random.default_rng(0)
    base = rng.random((1, 40, 8))
    iv = method_interval(base)
    expected = bootstrap_mean(base[0], resamples=4000, seed=0)
    np.testing.assert_allclose(iv.mean, expected.mean)
    np.testing.assert_allclose(iv.high - iv.low, expected.high - expected.low, rtol=0.15)
    tuned = rng.random((3, 40, 8))
    d = method_difference(tuned, base)
    assert d.mean.shape == (8,) and np.all(d.low <= d.mean) and np.all(d.mean <= d.high)
    with pytest.raises(ValueError, match="share problems"):
        method_difference(rng.random((2, 10)), rng.random((2, 11)))
