"""The one evaluation core: scored samples in, every inference-scaling curve out (``core``), for every selection rule
(``rules``: pass@k, Best-of-k by a verifier, majority and weighted majority vote, each with the pick that applies it
at inference). Everything that reports a curve (eval, report, the trainer, the demo, the planner) calls this."""

from infertune.evaluation.core import (
    METRICS,
    Curve,
    EvalConfig,
    evaluate,
    per_prompt_curves,
    report_ks,
    stop_rule_curves,
    supported_rules,
)
from infertune.evaluation.rules import RULES, RuleCurve, SelectionRule, rule_parts, selected_accuracy

__all__ = ["METRICS", "RULES", "Curve", "EvalConfig", "RuleCurve", "SelectionRule", "evaluate", "per_prompt_curves",
           "report_ks", "rule_parts", "selected_accuracy", "stop_rule_curves", "supported_rules"]
