"""CHAMP (270 competition math problems, ``champ-dataset``), answers checked for equivalence with math-verify."""

from __future__ import annotations

import re

from infertune.tasks.base import Problem, Task, register
from infertune.tasks.grading.answers import equivalent

INSTRUCTION = "Reason step by step, then put the final answer in \\boxed{}."
_MARKED = re.compile(r"@@(.*?)@@")
# math-verify reads C(10, 5) as 5: gold forms written as a function call are kept only when nothing else is given.
_FUNCTION_CALL = re.compile(r"[A-Za-z]\s*\(")


def gold_answers(raw_answer: str, answer: str) -> list[str]:
    """The accepted forms of a CHAMP answer ("@@C(10, 5)@@, or equivalently @@252@@" gives both forms)."""
    forms = [m.strip() for m in _MARKED.findall(raw_answer or "")] or [answer.strip()]
    plain = [f for f in forms if not _FUNCTION_CALL.search(f)]
    return plain or forms


@register("champ")
class ChampTask(Task):
    name = "champ"

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._problems: list[Problem] | None = None

    def problems(self) -> list[Problem]:
        if self._problems is None:
            import champ_dataset

            dataset = champ_dataset.load("v0")
            self._problems = [
                Problem(id=pid, prompt=f"{p.text}\n{INSTRUCTION}", reference=p.answer,
                        target=gold_answers(p.raw_answer, p.answer), metadata={"category": p.category})
                for pid, p in dataset.problems.items()
            ]
        return self._problems

    def reward(self, problem: Problem, completion: str) -> float:
        return float(equivalent(self.extract(completion), problem.target, timeout_s=self.timeout_s))

    def spec(self) -> dict:
        return {"name": self.name, "timeout_s": self.timeout_s}
