"""Selection rules: how one of N samples is picked at inference, and the curve that says what it buys for every N.

A rule has two faces that must agree: ``curve`` estimates, from a prompt's n samples, the expected reward of the
rule's pick from a random N-subset for every N ≤ n (the unbiased estimators of ``infertune.estimators``), and
``pick`` applies the rule to N samples actually drawn. Evaluation, the trainer's held-out checks, the demo and the
planner all use ``curve``; applying a test-time plan uses ``pick``. Rules are named as the store names curves:
``pass`` (oracle), ``bon:<verifier>``, ``maj``, ``wmaj:<verifier>``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from infertune.estimators import bon_curve, maj_curve, pass_curve, weighted_maj_curve
from infertune.estimators.vote_scan import TIE_RTOL
from infertune.registry import Registry


@dataclass(frozen=True)
class RuleCurve:
    """Per-prompt values [prompts, n] of one rule for every N = 1..n; ``stderr`` is set for Monte-Carlo estimates."""

    values: np.ndarray
    stderr: np.ndarray | None
    exact: bool
    note: str = ""


@dataclass(frozen=True)
class SelectionRule:
    name: str
    needs_verifier: bool
    deployable: bool  # False for the oracle: it reads the reward, which inference does not have
    curve: Callable[..., RuleCurve]
    pick: Callable[..., tuple[float, int]] | None
    summary: str


RULES: Registry[SelectionRule] = Registry("selection rule", argument_hint={"bon": ":<verifier>",
                                                                          "wmaj": ":<verifier>"})


def _pass(rewards, answers, scores, *, aggregate="sum", mc_samples=None, seed=0, method="auto") -> RuleCurve:
    binary = bool(np.all((rewards == 0) | (rewards == 1)))
    if binary:
        return RuleCurve(pass_curve(rewards), None, True)
    return RuleCurve(bon_curve(rewards, rewards), None, True, "rewards are not binary: expected best reward of k")


def _bon(rewards, answers, scores, *, aggregate="sum", mc_samples=None, seed=0, method="auto") -> RuleCurve:
    return RuleCurve(bon_curve(scores, rewards), None, True)


def _maj(rewards, answers, scores, *, aggregate="sum", mc_samples=None, seed=0, method="auto") -> RuleCurve:
    est = maj_curve(answers, rewards, method=method, mc_samples=mc_samples, seed=seed)
    return RuleCurve(est.values, est.stderr, bool(est.exact.all()))


def _wmaj(rewards, answers, scores, *, aggregate="sum", mc_samples=None, seed=0, method="auto") -> RuleCurve:
    note = ""
    voting = answers.ids >= 0 if hasattr(answers, "ids") else np.ones(scores.shape, dtype=bool)
    if aggregate == "sum" and np.any(voting & (scores < 0)):  # a sample without an answer has no vote to weigh
        # A sum of negative weights would let more votes count against an answer; the max is well defined.
        aggregate, note = "max", "negative scores: answer weight is the max score"
    est = weighted_maj_curve(answers, scores, rewards, aggregate=aggregate, method=method, mc_samples=mc_samples,
                             seed=seed)
    return RuleCurve(est.values, est.stderr, bool(est.exact.all()), note)


def one_of_tied(options: Sequence[int], rng: np.random.Generator | None) -> int:
    """The first of tied options, or one drawn uniformly with ``rng``: the tie-breaking the values assume."""
    return int(options[0] if rng is None else options[int(rng.integers(len(options)))])


def _pick_best(rewards: Sequence[float], answers, scores: Sequence[float],
               rng: np.random.Generator | None = None) -> tuple[float, int]:
    r = np.asarray(rewards, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    best = np.flatnonzero(s == s.max())
    return float(r[best].mean()), one_of_tied(best, rng)


def _pick_vote(weighted: bool):
    def pick(rewards: Sequence[float], answers: Sequence[str | None], scores: Sequence[float] | None,
             rng: np.random.Generator | None = None):
        r = np.asarray(rewards, dtype=np.float64)
        weight: dict[str, float] = defaultdict(float)
        members: dict[str, list[int]] = defaultdict(list)
        for i, a in enumerate(answers):
            if a is not None:
                weight[a] += float(scores[i]) if weighted else 1.0
                members[a].append(i)
        if not weight:  # no sample has a parsed answer: any is as good
            return 0.0, one_of_tied(range(len(answers)), rng)
        top = max(weight.values())
        # Weights within the vote curves' relative tolerance tie, as they do in the values (0.1 + 0.2 and 0.3).
        tied = [a for a, w in weight.items() if w >= top - TIE_RTOL * max(abs(top), 1.0)]
        answer = tied[one_of_tied(range(len(tied)), rng)]
        return float(np.mean([r[members[a]].mean() for a in tied])), one_of_tied(members[answer], rng)

    return pick


RULES.register("pass", SelectionRule("pass", False, False, _pass, None,
                                     "pass@N: some sample of N is right (an oracle picks it)"))
RULES.register("bon", SelectionRule("bon", True, True, _bon, _pick_best,
                                    "Best-of-N: the sample the verifier scores highest"))
RULES.register("maj", SelectionRule("maj", False, True, _maj, _pick_vote(False),
                                    "majority vote over parsed answers"))
RULES.register("wmaj", SelectionRule("wmaj", True, True, _wmaj, _pick_vote(True),
                                     "weighted majority vote: each answer weighted by its samples' verifier scores"))


def rule_parts(rule: str) -> tuple[SelectionRule, str | None]:
    """The rule and the verifier it names (``bon:learned`` → (bon, "learned"))."""
    entry = RULES.get(rule)
    _, verifier = Registry.split(rule)
    if entry.needs_verifier and not verifier:
        raise ValueError(f"selection rule {rule!r} needs a verifier: {entry.name}:<verifier>")
    return entry, verifier


def selected_accuracy(rule: str, rewards: Sequence[float], answers: Sequence[str | None],
                      scores: Sequence[float] | None = None,
                      rng: np.random.Generator | None = None) -> tuple[float, int]:
    """(expected reward of the rule's pick over random tie-breaking, index of one pick) for one prompt's N samples.
    An answer's reward is the mean reward of the samples giving it; no parsed answer scores 0. The pick breaks ties
    at random with ``rng`` (a tied answer, then one of its samples), so that the answer written is distributed as
    the expectation assumes; without it, the first tied candidate."""
    entry, _ = rule_parts(rule)
    if entry.pick is None:
        raise ValueError(f"selection rule {rule!r} reads the reward and cannot be applied at inference")
    return entry.pick(rewards, answers, scores, rng)
