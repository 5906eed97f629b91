"""What a plan saves: the budget uniform Best-of-N needs to match it, over what the plan spends.

Uniform Best-of-N at N samples costs what N samples cost (in the plan's unit); a budget between two sample counts is
spent by drawing the larger count for a random share of the prompts, so what a budget buys is the upper concave
envelope of the (cost, accuracy) points, mixing any two of them. The efficiency ratio divides the envelope's cost at
the plan's accuracy by the plan's own spend (probes, rollouts and revision contexts included).
"""

from __future__ import annotations


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
            return c0 + (c1 - c0) * (target - a0) / (a1 - a0)
    return None


def efficiency(accuracy: float, spend: float, uniform_acc: dict[int, float],
               uniform_cost: dict[int, float]) -> tuple[float | None, float | None]:
    """(cost uniform Best-of-N needs to match ``accuracy``, that cost / ``spend``); (None, None) when it never
    does within the N the run holds."""
    match = budget_to_match({uniform_cost[n]: uniform_acc[n] for n in uniform_acc}, accuracy)
    return match, (None if match is None else match / spend)


def beats_uniform(accuracy: float, spend: float, uniform_acc: dict[int, float],
                  uniform_cost: dict[int, float]) -> bool:
    """Whether a plan is more accurate than uniform Best-of-N at the plan's spend (efficiency ratio above 1, or
    uniform never matching it). With (0, 0) on the envelope, a ratio above 1 means exactly that."""
    match, ratio = efficiency(accuracy, spend, uniform_acc, uniform_cost)
    return match is None or ratio > 1 + 1e-12
