"""The per-bin choice under a budget: one strategy per difficulty bin, maximising mean accuracy at a mean cost.

Costs differ by bin (a strategy's token count depends on the prompts: hard prompts draw longer answers, and search
and revisions spend what they spend), and are real numbers, so the knapsack is solved exactly over Pareto frontiers
instead of over an integer grid: each bin contributes its (cost, accuracy) points that nothing cheaper beats, the
bins are combined one at a time keeping only the frontier of the sums within the budget, and the best point left is
the optimum. The frontiers stay small (a few hundred points) because most strategies are dominated.
"""

from __future__ import annotations

import numpy as np

_TOL = 1e-9


class BudgetTooSmall(ValueError):
    """No choice of one strategy per bin fits the budget: even the cheapest (``cheapest``, per prompt in the costs'
    unit) costs more on these prompts."""

    def __init__(self, message: str, cheapest: float) -> None:
        super().__init__(message)
        self.cheapest = cheapest


def _frontier(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Indices of the points that no cheaper-or-equal point matches in accuracy, by increasing cost."""
    order = np.lexsort((-acc, cost))  # by cost, then best accuracy first
    sorted_acc = acc[order]
    before = np.concatenate([[-np.inf], np.maximum.accumulate(sorted_acc)[:-1]])
    return order[sorted_acc > before + 1e-15]


def choose_per_bin(acc: np.ndarray, costs: np.ndarray, weights: np.ndarray,
                   budget: float) -> tuple[np.ndarray, float]:
    """Exact: the strategy per bin maximising Σ_b w_b acc[b, s_b] subject to Σ_b w_b cost[b, s_b] ≤ budget.

    acc: [bins, strategies]; costs: [bins, strategies] or [strategies] (the same in every bin); weights: the share
    of prompts in each bin (summing to 1). Returns the chosen strategy per bin and the expected accuracy."""
    acc = np.asarray(acc, dtype=np.float64)
    costs = np.broadcast_to(np.asarray(costs, dtype=np.float64), acc.shape)
    weights = np.asarray(weights, dtype=np.float64)
    cheapest = float((weights * costs.min(axis=1)).sum())
    if cheapest > budget * (1 + _TOL) + _TOL:
        raise BudgetTooSmall(f"budget {budget:g} is below the cheapest strategy ({cheapest:g} per prompt)", cheapest)
    total_cost = np.zeros(1)
    total_acc = np.zeros(1)
    picks = np.zeros((1, 0), dtype=np.int64)
    limit = budget * (1 + _TOL) + _TOL
    for b in range(acc.shape[0]):
        front = _frontier(costs[b], acc[b])
        c = (total_cost[:, None] + weights[b] * costs[b, front][None, :]).ravel()
        a = (total_acc[:, None] + weights[b] * acc[b, front][None, :]).ravel()
        parent = np.repeat(np.arange(total_cost.size), front.size)
        child = np.tile(front, total_cost.size)
        ok = c <= limit
        c, a, parent, child = c[ok], a[ok], parent[ok], child[ok]
        keep = _frontier(c, a)
        total_cost, total_acc = c[keep], a[keep]
        picks = np.concatenate([picks[parent[keep]], child[keep, None]], axis=1)
    best = int(np.argmax(total_acc))
    return picks[best], float(total_acc[best])
