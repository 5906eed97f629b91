"""From scored samples to inference-scaling curves with confidence intervals: the computation behind a report.

Kept free of files and printing so that training (periodic held-out evaluation) and the planner can call it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infertune.verify.verifiers import SAMPLE_DEPENDENT_VERIFIERS
from infertune.estimators import bon_curve, bootstrap_mean, maj_curve, pass_curve, weighted_maj_curve
from infertune.store import ScoredSamples

METRICS = ("pass", "bon", "maj", "wmaj")


@dataclass
class EvalConfig:
    """How curves and their intervals are estimated."""

    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples of prompts for the intervals."})
    confidence: float = field(default=0.95, metadata={"help": "Confidence level of the intervals."})
    weighted_aggregate: str = field(default="sum", metadata={
        "help": "How weighted majority combines an answer's verifier scores: 'sum' or 'max'."})
    mc_samples: int | None = field(default=None, metadata={
        "help": "Monte-Carlo permutations per prompt for maj@k when exact is too costly (default: adaptive)."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap and Monte-Carlo draws."})

    def __post_init__(self) -> None:
        if self.weighted_aggregate not in ("sum", "max"):
            raise ValueError(f"weighted_aggregate must be 'sum' or 'max', got {self.weighted_aggregate!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError("confidence must lie in (0, 1)")
        if self.bootstrap < 1:
            raise ValueError("bootstrap must be at least 1")


@dataclass
class Curve:
    """One metric for every k = 1..n: the mean over prompts, its interval, and the Monte-Carlo error if any."""

    metric: str
    verifier: str | None
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    mc_stderr: np.ndarray
    exact: bool
    note: str = ""

    @property
    def label(self) -> str:
        return self.metric if self.verifier is None else f"{self.metric}:{self.verifier}"


def evaluate(samples: ScoredSamples, config: EvalConfig | None = None) -> list[Curve]:
    """Every metric the samples support: pass@k, BoN@k and weighted maj@k per verifier, and maj@k."""
    config = config or EvalConfig()
    rewards = samples.rewards
    curves: list[Curve] = []

    def add(metric: str, verifier: str | None, per_prompt: np.ndarray, stderr: np.ndarray | None = None,
            exact: bool = True, note: str = "") -> None:
        interval = bootstrap_mean(per_prompt, resamples=config.bootstrap, confidence=config.confidence,
                                  seed=config.seed)
        mc = np.zeros(per_prompt.shape[1]) if stderr is None else np.sqrt((stderr**2).sum(axis=0)) / len(stderr)
        curves.append(Curve(metric, verifier, interval.mean, interval.low, interval.high, mc, exact, note))

    binary = bool(np.all((rewards == 0) | (rewards == 1)))
    if binary:
        add("pass", None, pass_curve(rewards))
    else:
        add("pass", None, bon_curve(rewards, rewards), note="rewards are not binary: expected best reward of k")
    for name, scores in sorted(samples.scores.items()):
        add("bon", name, bon_curve(scores, rewards), note=_dependent_note(name))
    maj = maj_curve(samples.answers, rewards, mc_samples=config.mc_samples, seed=config.seed)
    add("maj", None, maj.values, maj.stderr, exact=bool(maj.exact.all()))
    for name, scores in sorted(samples.scores.items()):
        if config.weighted_aggregate == "sum" and np.any(scores < 0):
            # A sum of negative weights would let more votes count against an answer; the max is well defined.
            aggregate, note = "max", "negative scores: answer weight is the max score"
        else:
            aggregate, note = config.weighted_aggregate, ""
        w = weighted_maj_curve(samples.answers, scores, rewards, aggregate=aggregate, mc_samples=config.mc_samples,
                               seed=config.seed)
        add("wmaj", name, w.values, w.stderr, exact=bool(w.exact.all()),
            note="; ".join(filter(None, [note, _dependent_note(name)])))
    return curves


def _dependent_note(verifier: str) -> str:
    if verifier in SAMPLE_DEPENDENT_VERIFIERS:
        return "scores computed from all n samples: for k < n the choice sees samples outside the k"
    return ""


def report_ks(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    return ks if ks[-1] == n else ks + [n]
