"""Spending test-time compute well (Snell et al. 2024): strategies and their worth per prompt (``strategies``),
difficulty (``difficulty``), the per-bin plan under a budget (``plan``), N-temperature co-scaling (``coscaling``) and
applying a saved plan to new prompts (``apply``)."""

from infertune.planning.apply import TestTimePlan, apply_plan, load_plan
from infertune.planning.coscaling import best_temperature, coscaling_fit, pass_curves_by_temperature
from infertune.planning.difficulty import assign_bins, bin_edges, difficulty, probe_scores
from infertune.planning.planner import PLAN_FORMAT, PlanConfig, PlanResult, PlanRun, choose_per_bin, plan, plan_run
from infertune.planning.planner import budget_to_match, write_plan
from infertune.planning.strategies import Strategy, StrategyTable, strategy_costs, strategy_table

__all__ = ["PLAN_FORMAT", "PlanConfig", "PlanResult", "PlanRun", "Strategy", "StrategyTable", "TestTimePlan",
           "apply_plan", "assign_bins", "best_temperature", "bin_edges", "budget_to_match", "choose_per_bin",
           "coscaling_fit", "difficulty", "load_plan", "pass_curves_by_temperature", "plan", "plan_run",
           "probe_scores", "strategy_costs", "strategy_table", "write_plan"]
