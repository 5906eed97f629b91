"""Training data for a revision model, from the policy's own attempts (Snell et al. 2024, section 6.1).

For a training question on which the policy was sometimes right and sometimes wrong, an example's context is the
question followed by one to ``max_context`` of its wrong attempts (in random order), and its target is one of its
correct attempts: the model learns to answer correctly having seen attempts that were not. Targets are the policy's
own correct answers, never the task's reference solution, and contexts hold only attempts the task's checker
rejected, so the reference answer never appears in a context (tested). Questions the policy always or never solves
give no example.

``RevisionTask`` wraps the examples as a task (prompt = context, reference = target) so the one trainer trains the
revision model with the ``sft`` objective; its rewards are the original question's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from infertune.tasks.base import Problem, Task


@dataclass(frozen=True)
class RevisionExample:
    problem: Problem  # the original question
    attempts: tuple[str, ...]  # earlier wrong attempts shown in the context, oldest first
    target: str  # a correct attempt of the policy


def revision_examples(problem: Problem, attempts: Sequence[str], rewards: Sequence[float], rng: np.random.Generator,
                      *, max_context: int = 3, per_problem: int = 4) -> list[RevisionExample]:
    """Up to ``per_problem`` examples for one question from the policy's attempts at it and their rewards."""
    if len(attempts) != len(rewards):
        raise ValueError(f"{len(attempts)} attempts but {len(rewards)} rewards")
    if max_context < 1 or per_problem < 1:
        raise ValueError("max_context and per_problem must be at least 1")
    correct = list(dict.fromkeys(a for a, r in zip(attempts, rewards) if r > 0.5))
    wrong = list(dict.fromkeys(a for a, r in zip(attempts, rewards) if r <= 0.5 and a.strip()))
    if not correct or not wrong:
        return []
    examples = []
    for _ in range(per_problem):
        k = int(rng.integers(1, min(max_context, len(wrong)) + 1))
        shown = tuple(wrong[j] for j in rng.choice(len(wrong), size=k, replace=False))
        examples.append(RevisionExample(problem, shown, correct[int(rng.integers(len(correct)))]))
    return examples


class RevisionTask(Task):
    """Revision examples as a task: prompt = the context the revision model reads, reference = the target."""

    def __init__(self, base: Task, examples: Sequence[RevisionExample]) -> None:
        self.base = base
        self.name = f"{base.name}-revisions"
        self.step_format = base.step_format
        self._originals: dict[str, Problem] = {}
        self._problems = []
        for j, ex in enumerate(examples):
            pid = f"{ex.problem.id}/revision-{j}"
            self._originals[pid] = ex.problem
            self._problems.append(Problem(id=pid, prompt=base.revision_prompt(ex.problem, list(ex.attempts)),
                                          reference=ex.target, target=ex.problem.target,
                                          metadata={"question": ex.problem.id, "attempts": len(ex.attempts)},
                                          system=ex.problem.system))

    def problems(self) -> list[Problem]:
        return self._problems

    def reward(self, problem: Problem, completion: str) -> float:
        return self.base.reward(self._originals.get(problem.id, problem), completion)

    def extract(self, completion: str) -> str | None:
        return self.base.extract(completion)

    def spec(self) -> dict:
        return {"name": self.name, "base": self.base.spec(), "examples": len(self._problems)}
