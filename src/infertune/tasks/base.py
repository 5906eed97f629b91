"""What a task is: problems with prompts and references, and a reward that judges a completion.

The reward R is what a user is judged on (exact answer, passing unit tests). It is binary for every built-in task,
so pass@k is well defined; a verifier score, which Best-of-N selects by, lives in ``infertune.verify``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from infertune.registry import Registry
from infertune.tasks.grading.answers import extract_answer


@dataclass(frozen=True)
class Problem:
    """One prompt of a task. ``target`` is what the checker needs (gold answers, numbers and target, unit tests)."""

    id: str
    prompt: str
    reference: str | None
    target: Any = None
    metadata: dict = field(default_factory=dict, compare=False, hash=False)
    system: str | None = None

    def chat(self) -> list[dict[str, str]]:
        """The prompt as chat messages, for instruction-tuned models."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return messages + [{"role": "user", "content": self.prompt}]


class Task(ABC):
    """Base class: subclasses set ``name``, build ``problems()`` and implement ``reward``."""

    name: str = "task"
    step_format: str = "blank-line"  # how a completion splits into reasoning steps (``infertune.tasks.steps``)

    @abstractmethod
    def problems(self) -> list[Problem]:
        """Every problem of the task, in a fixed order."""

    @abstractmethod
    def reward(self, problem: Problem, completion: str) -> float:
        """1.0 when the completion solves the problem, else 0.0."""

    def extract(self, completion: str) -> str | None:
        """The answer majority vote counts; None when the completion gives none."""
        return extract_answer(completion)

    def rewards(self, problems: Sequence[Problem], completions: Sequence[str], *,
                workers: int | None = None) -> list[float]:
        """Rewards of many completions, over ``workers`` processes when there are enough to be worth it.

        Tasks that run code override this to run sandboxes in parallel instead.
        """
        check_batch(problems, completions)
        if workers and workers > 1 and len(problems) >= PARALLEL_MIN:
            return parallel_rewards(self, problems, completions, workers)
        return [self.reward(p, c) for p, c in zip(problems, completions)]

    def spec(self) -> dict:
        """How to load this task again (stored in a run's metadata)."""
        return {"name": self.name}

    def revision_prompt(self, problem: Problem, attempts: list[str]) -> str:
        """The question followed by earlier attempts, as a revision model reads it (``infertune.tasks.revisions``).
        The attempts are not called wrong: at test time nobody knows whether they are."""
        if not attempts:
            return problem.prompt
        shown = "\n\n".join(f"Attempt {i}:\n{a.strip()}" for i, a in enumerate(attempts, 1))
        return f"{problem.prompt}\n\nEarlier attempts:\n\n{shown}\n\nA new attempt:\n"


class BatchTask(Task):
    """A task whose checker works on batches (code run in parallel sandboxes): one reward is a batch of one."""

    def reward(self, problem: Problem, completion: str) -> float:
        return self.rewards([problem], [completion])[0]

    @abstractmethod
    def rewards(self, problems: Sequence[Problem], completions: Sequence[str], *,
                workers: int | None = None) -> list[float]:
        """Rewards of many completions at once."""


VIEWS: Registry[Callable[["Problem", Any], str]] = Registry("verifier view")


def completion_text(completion) -> str:
    """The text of a completion given as a string or as a sampler's Completion."""
    return completion if isinstance(completion, str) else completion.text


@VIEWS.register("plain")
def plain_view(problem: Problem, completion) -> str:
    """What a learned verifier reads by default: the prompt and the completion."""
    return problem.prompt + completion_text(completion)


def check_batch(problems: Sequence[Problem], completions: Sequence[str]) -> None:
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completions")


# Below this many completions, starting worker processes costs more than it saves.
PARALLEL_MIN = 256
_JOB: tuple | None = None  # the (task, problems, completions) that forked workers inherit


def _reward_slice(bounds: tuple[int, int]) -> list[float]:
    task, problems, completions = _JOB
    return [task.reward(problems[i], completions[i]) for i in range(*bounds)]


def parallel_rewards(task: "Task", problems: Sequence[Problem], completions: Sequence[str],
                     workers: int) -> list[float]:
    """Rewards computed in forked worker processes: each checker then runs in a main thread of its own, where
    math-verify's timeouts work, and CPU-bound checking uses every core. Workers inherit the job by fork, so tasks
    need not be picklable."""
    global _JOB
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = len(problems)
    step = max(1, -(-n // (workers * 4)))
    _JOB = (task, list(problems), list(completions))
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = pool.map(_reward_slice, [(i, min(n, i + step)) for i in range(0, n, step)])
            return [r for part in parts for r in part]
    finally:
        _JOB = None


TASKS: Registry[Callable[..., Task]] = Registry("task")


def register(prefix: str, *, argument: str | None = None) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Register a task factory under a name, or a prefix for names of the form ``prefix:argument``
    (``argument`` documents it, e.g. ``":<dataset>"``)."""
    return TASKS.register(prefix, argument=argument)


def load(name: str, **options: Any) -> Task:
    """A task by name: ``arith``, ``humaneval``, ``champ``, ``reasoning-gym:<dataset>``, ``jsonl:<path>``,
    ``parquet:<path>``; options go to the task's constructor."""
    prefix, sep, argument = name.partition(":")
    if prefix not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {TASKS.describe()}")
    factory = TASKS.get(prefix)
    return factory(argument, **options) if sep else factory(**options)


def available() -> list[str]:
    return TASKS.names()
