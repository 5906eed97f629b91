"""Unbiased estimators of inference-time metrics for every k <= n, with confidence intervals (math.md section 1).

Inputs are arrays of shape [prompts, n]; point functions return per-prompt values, curve functions return
[prompts, n] with column k-1 holding k. Average over prompts yourself or use ``bootstrap_mean`` for intervals.
"""

from infertune.estimators.bootstrap import Interval, bootstrap_mean
from infertune.estimators.forced import bon_curve_forced, stop_curves_forced
from infertune.estimators.method_level import method_difference, method_interval
from infertune.estimators.inputs import EncodedAnswers, encode_answers
from infertune.estimators.ranked import bon_at_k, bon_curve, pass_at_k, pass_curve, rank_weights
from infertune.estimators.stop_rule import stop_curves
from infertune.estimators.vote import Estimate, maj_at_k, maj_curve, weighted_maj_at_k, weighted_maj_curve

__all__ = [
    "EncodedAnswers",
    "Estimate",
    "Interval",
    "bon_at_k",
    "bon_curve",
    "bon_curve_forced",
    "bootstrap_mean",
    "encode_answers",
    "maj_at_k",
    "maj_curve",
    "method_difference",
    "method_interval",
    "pass_at_k",
    "pass_curve",
    "rank_weights",
    "stop_curves",
    "stop_curves_forced",
    "weighted_maj_at_k",
    "weighted_maj_curve",
]
