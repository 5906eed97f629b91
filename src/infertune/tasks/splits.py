"""Disjoint problem sets drawn from a task: training, validation (for every recipe choice) and test (for reports).

Sets are fixed random subsets, not the task's first or last problems: generators that deduplicate as they go (arith)
leave rarer, harder problems at the end, and a set drawn from there would not measure the training distribution.
The held-out seed is fixed, so every run of a task holds out the same problems whatever its own seed.
"""

from __future__ import annotations

import numpy as np

from infertune.tasks.base import Problem, Task

HELD_OUT_SEED = 20241220


def split_problems(task: Task, eval_prompts: int) -> tuple[list[Problem], list[Problem]]:
    """Training problems and ``eval_prompts`` held-out ones; they never overlap."""
    train, held_out, _ = three_way_split(task.problems(), eval_prompts, 0, name=task.name)
    return train, held_out


def three_way_split(problems: list[Problem], first: int, second: int, *, seed: int = HELD_OUT_SEED,
                    name: str = "task") -> tuple[list[Problem], list[Problem], list[Problem]]:
    """(rest, ``first`` held-out problems, ``second`` more held-out problems), disjoint, in the task's order."""
    if len(problems) <= first + second:
        raise ValueError(f"{name} has {len(problems)} problems; need more than {first + second} to hold out")
    order = np.random.default_rng(seed).permutation(len(problems))
    a, b = set(order[:first].tolist()), set(order[first:first + second].tolist())
    return ([p for i, p in enumerate(problems) if i not in a and i not in b],
            [p for i, p in enumerate(problems) if i in a], [p for i, p in enumerate(problems) if i in b])
