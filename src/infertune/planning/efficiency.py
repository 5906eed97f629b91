"""What a plan saves: the budget uniform Best-of-N needs to match it, over what the plan spends.

Uniform Best-of-N at N samples costs what N samples cost (in the plan's unit); a budget between two sample counts is
spent by drawing the larger count for a random share of the prompts, so what a budget buys is the upper concave
envelope of the (cost, accuracy) points, mixing any two of them. The efficiency ratio divides the envelope's cost at
the plan's accuracy by the plan's own spend (probes, rollouts and revision contexts included).
"""

from __future__ import annotations

import numpy as np


def budget_to_match(uniform: dict[float, float], target: float) -> float | None:
    """The smallest average cost at which uniform Best-of-N reaches ``target``, from {cost: accuracy} points (a
    cost may be a sample count N). None when even the most expensive point falls short. Spending nothing (answering
    no prompt) is the point (0, 0): below the cheapest point's accuracy, uniform mixes it with nothing, so a plan
    that is both cheaper and less accurate is not credited with the cheapest point's whole cost."""
    hull: list[tuple[float, float]] = []
    for point in sorted({(0.0, 0.0)} | {(float(c), float(a)) for c, a in uniform.items()}):
        # Upper hull: drop the last point while it lies on or below the chord to the new one.
        while len(hull) >= 2 and ((hull[-1][0] - hull[-2][0]) * (point[1] - hull[-2][1])
                                  >= (point[0] - hull[-2][0]) * (hull[-1][1] - hull[-2][1])):
            hull.pop()
        hull.append(point)
    if target <= 0:
        return 0.0
    for (c0, a0), (c1, a1) in zip(hull, hull[1:]):
        if a1 >= target - 1e-12:
            if a1 - a0 <= 1e-15:  # a flat stretch (a curve at zero accuracy): reached where it starts
                return c0
            return c0 + (c1 - c0) * (target - a0) / (a1 - a0)
    return None


def efficiency(accuracy: float, spend: float, uniform_acc: dict[int, float],
               uniform_cost: dict[int, float]) -> tuple[float | None, float | None]:
    """(cost uniform Best-of-N needs to match ``accuracy``, that cost / ``spend``); (None, None) when it never
    does within the N the run holds."""
    points: dict[float, float] = {}
    for n in uniform_acc:  # two N at the same cost: the more accurate one is what that cost buys
        points[uniform_cost[n]] = max(points.get(uniform_cost[n], -np.inf), uniform_acc[n])
    match = budget_to_match(points, accuracy)
    return match, (None if match is None else match / spend)


def beats_uniform(accuracy: float, spend: float, uniform_acc: dict[int, float],
                  uniform_cost: dict[int, float]) -> bool:
    """Whether a plan is more accurate than uniform Best-of-N at the plan's spend (efficiency ratio above 1, or
    uniform never matching it). With (0, 0) on the envelope, a ratio above 1 means exactly that."""
    match, ratio = efficiency(accuracy, spend, uniform_acc, uniform_cost)
    return match is None or ratio > 1 + 1e-12


def envelope_at(costs: np.ndarray, accs: np.ndarray, spend: np.ndarray) -> np.ndarray:
    """Uniform Best-of-N's accuracy at ``spend`` on the upper concave envelope of its (cost, accuracy) points with
    (0, 0), for many curves at once: costs, accs [curves, points], spend [curves]. Past the costliest point the
    envelope stays at the best accuracy (spending more on uniform cannot lower it). ``budget_to_match``'s inverse:
    a plan beats uniform at its spend exactly when its accuracy is above this."""
    c = np.concatenate([np.zeros((len(costs), 1)), costs], axis=1)
    a = np.concatenate([np.zeros((len(accs), 1)), accs], axis=1)
    x = np.asarray(spend, dtype=np.float64)[:, None]
    reached = np.where(c <= x, a, -np.inf).max(axis=1)
    ci, cj, ai, aj = c[:, :, None], c[:, None, :], a[:, :, None], a[:, None, :]
    between = (ci <= x[:, :, None]) & (x[:, :, None] < cj)
    with np.errstate(divide="ignore", invalid="ignore"):
        chord = ai + (aj - ai) * (x[:, :, None] - ci) / (cj - ci)
    mixed = np.where(between, chord, -np.inf).reshape(len(c), -1).max(axis=1)
    return np.maximum(reached, mixed)


def win_share(accuracy: np.ndarray, spent: np.ndarray, uniform_acc: dict[int, np.ndarray],
              uniform_cost: dict[int, np.ndarray], resamples: int, seed: int) -> float:
    """Share of bootstrap resamples of prompts in which the plan (its per-prompt accuracy and spend, choices held
    fixed) is more accurate than uniform Best-of-N at the plan's spend: a one-sided bootstrap test of a win."""
    ns = sorted(uniform_acc)
    acc_curve = np.stack([uniform_acc[n] for n in ns], axis=1)
    cost_curve = np.stack([uniform_cost[n] for n in ns], axis=1)
    rng = np.random.default_rng([seed, 7])
    counts = rng.multinomial(len(accuracy), np.full(len(accuracy), 1 / len(accuracy)), size=resamples)
    total = counts.sum(axis=1, keepdims=True)
    acc, cost = (counts @ accuracy)[:, None] / total, (counts @ spent)[:, None] / total
    envelope = envelope_at(counts @ cost_curve / total, counts @ acc_curve / total, cost[:, 0])
    return float(np.mean(acc[:, 0] > envelope + 1e-12))
