"""The one evaluation core: scored samples in, every inference-scaling curve out, per prompt and with intervals.

``infertune eval`` and ``report``, the trainer's held-out checks, the demo and the planner all call it, so a curve
means the same thing wherever it is printed. It reads a ``ScoredSamples`` (from the store, or built from arrays) and
returns, for every selection rule the samples support (``infertune.selection``: pass@k, Best-of-k by each verifier,
majority vote, weighted majority by each verifier), the per-prompt values for every k ≤ n and their mean with a
bootstrap interval over prompts. No files, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from infertune.estimators import bootstrap_mean, stop_curves
from infertune.evaluation.rules import RULES, RuleCurve, rule_parts
from infertune.store import ScoredSamples
from infertune.verify import compares_samples

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
    maj_method: str = field(default="auto", metadata={
        "help": "maj@k and weighted maj@k: exact, mc (Monte-Carlo with its standard error), or auto (exact where "
                "it is cheap)."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap and Monte-Carlo draws."})

    def __post_init__(self) -> None:
        if self.maj_method not in ("auto", "exact", "mc"):
            raise ValueError(f"maj_method must be auto, exact or mc, got {self.maj_method!r}")
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


def supported_rules(samples: ScoredSamples) -> list[str]:
    """Every rule the samples can be evaluated under: pass, bon per verifier, maj, wmaj per verifier."""
    verifiers = sorted(samples.scores)
    return ["pass", *(f"bon:{v}" for v in verifiers), "maj", *(f"wmaj:{v}" for v in verifiers)]


def per_prompt_curves(samples: ScoredSamples, config: EvalConfig | None = None,
                      rules: Iterable[str] | None = None) -> dict[str, RuleCurve]:
    """Per-prompt values [prompts, n] of each rule (default: all the samples support), keyed by rule name."""
    config = config or EvalConfig()
    out: dict[str, RuleCurve] = {}
    for rule in (supported_rules(samples) if rules is None else rules):
        entry, verifier = rule_parts(rule)
        if verifier is not None and verifier not in samples.scores:
            raise ValueError(f"rule {rule!r}: no scores from verifier {verifier!r}; have {sorted(samples.scores)}")
        try:
            curve = entry.curve(samples.rewards, samples.answers, samples.scores.get(verifier) if verifier else None,
                                aggregate=config.weighted_aggregate, mc_samples=config.mc_samples, seed=config.seed,
                                method=config.maj_method)
        except ValueError as exc:  # say which rule's inputs were refused
            raise ValueError(f"rule {rule!r}: {exc}") from exc
        if verifier is not None and compares_samples(verifier) and entry.name != "pass":
            note = "scores computed from all n samples: for k < n the choice sees samples outside the k"
            curve = RuleCurve(curve.values, curve.stderr, curve.exact, "; ".join(filter(None, [curve.note, note])))
        out[rule] = curve
    return out


def stop_rule_curves(samples: ScoredSamples, verifier: str, threshold: float,
                     unit: str = "tokens") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best-of-N with a verifier stop rule at ``threshold`` for every cap N (``estimators.stop_rule``): per-prompt
    value, expected draws and expected cost in ``unit`` (tokens, or samples), each [prompts, n]."""
    if verifier not in samples.scores:
        raise ValueError(f"stop rule: no scores from verifier {verifier!r}; have {sorted(samples.scores)}")
    if compares_samples(verifier):
        raise ValueError(f"stop rule: verifier {verifier!r} scores a sample against the others, which a stop rule "
                         "has not drawn yet")
    if unit == "tokens" and samples.tokens is None:
        raise ValueError("stop rule: costs in tokens need every sample's token count")
    tokens = samples.tokens if unit == "tokens" else np.ones(samples.rewards.shape)
    return stop_curves(samples.scores[verifier], samples.rewards, tokens, threshold)


def evaluate(samples: ScoredSamples, config: EvalConfig | None = None,
             rules: Iterable[str] | None = None) -> list[Curve]:
    """Every curve the samples support (or ``rules``), as means over prompts with bootstrap intervals."""
    config = config or EvalConfig()
    curves = []
    for rule, c in per_prompt_curves(samples, config, rules).items():
        interval = bootstrap_mean(c.values, resamples=config.bootstrap, confidence=config.confidence,
                                  seed=config.seed)
        mc = (np.zeros(c.values.shape[1]) if c.stderr is None
              else np.sqrt((c.stderr**2).sum(axis=0)) / len(c.stderr))
        metric, verifier = RULES.split(rule)
        curves.append(Curve(metric, verifier, interval.mean, interval.low, interval.high, mc, c.exact, c.note))
    return curves


def report_ks(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    return ks if ks[-1] == n else ks + [n]
