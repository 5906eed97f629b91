"""Spending test-time compute well (Snell et al. 2024): strategies and their worth and cost per prompt
(``strategies``: parallel sampling, search against a PRM, sequential revisions), running search and revisions on a
run's prompts (``runs``), difficulty (``difficulty``), the per-bin plan under a budget with its guard (``planner``,
``knapsack``, ``efficiency``), the ``infertune plan`` workflow (``workflow``), N-temperature co-scaling
(``coscaling``) and applying a saved plan to new prompts (``apply``)."""

from infertune.planning.apply import TestTimePlan, apply_plan, load_plan
from infertune.planning.coscaling import best_temperature, coscaling_fit, pass_curves_by_temperature
from infertune.planning.difficulty import assign_bins, bin_edges, difficulty, probe_scores
from infertune.planning.efficiency import budget_to_match
from infertune.planning.knapsack import choose_per_bin
from infertune.planning.planner import PLAN_FORMAT, PlanResult, efficiency_curve, plan
from infertune.planning.strategies import ChainLayout, Strategy, StrategyTable, combine, revision_table, run_table
from infertune.planning.strategies import kept_probe_table, stop_table, strategy_costs, strategy_table
from infertune.planning.workflow import PlanConfig, PlanRun, plan_run, write_plan

__all__ = ["PLAN_FORMAT", "ChainLayout", "PlanConfig", "PlanResult", "PlanRun", "Strategy", "StrategyTable",
           "TestTimePlan", "apply_plan", "assign_bins", "best_temperature", "bin_edges", "budget_to_match",
           "choose_per_bin", "coscaling_fit", "combine", "difficulty", "efficiency_curve", "load_plan",
           "pass_curves_by_temperature", "plan", "plan_run", "probe_scores", "revision_table", "run_table",
           "kept_probe_table", "stop_table", "strategy_costs", "strategy_table", "write_plan"]
