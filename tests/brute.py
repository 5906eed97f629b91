"""Brute-force references: average a metric over every k-subset of one prompt's samples, literally."""

from __future__ import annotations

from itertools import combinations
from math import comb

TOL = 1e-9


def answer_value(answers, rewards):
    groups: dict = {}
    for a, r in zip(answers, rewards):
        if a is not None:
            groups.setdefault(a, []).append(r)
    return {a: sum(v) / len(v) for a, v in groups.items()}


def _mean_over_subsets(n, k, outcome):
    total = 0.0
    count = 0
    for subset in combinations(range(n), k):
        total += outcome(subset)
        count += 1
    assert count == comb(n, k)
    return total / count


def bon(scores, rewards, k):
    def outcome(subset):
        best = max(scores[i] for i in subset)
        tied = [rewards[i] for i in subset if scores[i] == best]
        return sum(tied) / len(tied)

    return _mean_over_subsets(len(scores), k, outcome)


def passk(rewards, k):
    return _mean_over_subsets(len(rewards), k, lambda s: float(any(rewards[i] == 1 for i in s)))


def _vote(answers, rewards, k, weight_of):
    value = answer_value(answers, rewards)

    def outcome(subset):
        weights: dict = {}
        for i in subset:
            if answers[i] is not None:
                weights.setdefault(answers[i], []).append(i)
        if not weights:
            return 0.0
        agg = {a: weight_of(idx) for a, idx in weights.items()}
        best = max(agg.values())
        tied = [a for a, w in agg.items() if w >= best - TOL * max(abs(best), 1.0)]
        return sum(value[a] for a in tied) / len(tied)

    return _mean_over_subsets(len(answers), k, outcome)


def maj(answers, rewards, k):
    return _vote(answers, rewards, k, len)


def weighted_maj(answers, scores, rewards, k, aggregate="sum"):
    fn = (lambda idx: sum(scores[i] for i in idx)) if aggregate == "sum" else (lambda idx: max(scores[i] for i in idx))
    return _vote(answers, rewards, k, fn)


def weighted_max_outcome(answers, scores, rewards, subset):
    """Reward of weighted majority by max score on one subset (ties between answers averaged)."""
    value = answer_value(answers, rewards)
    best: dict = {}
    for i in subset:
        if answers[i] is not None:
            best[answers[i]] = max(best.get(answers[i], float("-inf")), scores[i])
    if not best:
        return 0.0
    top = max(best.values())
    tied = [a for a, w in best.items() if w >= top - TOL * max(abs(top), 1.0)]
    return sum(value[a] for a in tied) / len(tied)


def monte_carlo_subsets(outcome, n, k, draws, seed):
    """Mean and standard error of ``outcome(subset)`` over uniformly random k-subsets of range(n), drawn here
    independently of any estimator under test."""
    import random

    rng = random.Random(seed)
    values = [outcome(rng.sample(range(n), k)) for _ in range(draws)]
    mean = sum(values) / draws
    var = sum((v - mean) ** 2 for v in values) / (draws - 1)
    return mean, (var / draws) ** 0.5
