"""The demo's settings: where the mechanism is present (``forms``, the default) and where it is not (``balanced``).

A setting says which problems the base model is supervised on, which problems fine-tuning and evaluation use
(train, validation and test are disjoint), what the verifier reads, and the sizes of the base model and verifier.
The fine-tuning recipe is the same in both settings (chosen on the forms setting's validation problems), so the
settings differ only in what the demo is about: whether the base has a skewed prior and the verifier a blind spot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from infertune.models.tiny import TinyConfig
from infertune.tasks import Problem, Task, load
from infertune.tasks.splits import three_way_split
from infertune.verify.learned_rm import RewardModelConfig


@dataclass(frozen=True)
class Problems:
    """The problem sets of one demo run."""

    sft_task: Task  # what the base model is supervised on
    train_task: Task  # where fine-tuning draws its prompts
    validation_task: Task  # the task the validation problems belong to (its spec goes into their stores)
    test_task: Task
    validation: list[Problem]  # every recipe choice (the base's best temperature) is made here
    test: list[Problem]  # every reported figure comes from here


@dataclass(frozen=True)
class Setting:
    name: str
    summary: str
    problems: Callable[[int, int, int], Problems]  # (seed, validation count, test count) -> Problems
    view: str  # what the learned verifier reads (a task's registered view)
    model: TinyConfig
    base_steps: int
    base_batch: int
    base_lr: float
    max_new_tokens: int
    verifier_prompts: int
    verifier: RewardModelConfig


def _forms_problems(seed: int, validation: int, test: int) -> Problems:
    sft = load("arith-forms", seed=seed, split="train", mix="skewed", bare_share=0.15, size=4000)
    train = load("arith-forms", seed=seed, split="train", mix="balanced", bare_share=0.0, size=4000)
    val_task = load("arith-forms", seed=seed, split="validation", mix="balanced", size=4 * validation)
    test_task = load("arith-forms", seed=seed, split="test", mix="balanced", size=4 * test)
    val, tst = val_task.problems(), test_task.problems()
    if len(val) < validation or len(tst) < test:
        raise ValueError(f"arith-forms has {len(val)} validation and {len(tst)} test problems for seed {seed}; asked "
                         f"for {validation} and {test}")
    return Problems(sft, train, val_task, test_task, _balanced_first(val, validation), _balanced_first(tst, test))


def _balanced_first(problems: list[Problem], count: int) -> list[Problem]:
    """``count`` problems with the forms as even as the pool allows (it was drawn balanced, so the first ones are),
    at most one per digit tuple: problems that share their digits are not independent draws, and the intervals
    treat problems as independent."""
    by_form: dict[int, list[Problem]] = {}
    for p in problems:
        by_form.setdefault(p.metadata["form"], []).append(p)
    out: list[Problem] = []
    used: set[tuple] = set()
    while len(out) < count and any(by_form.values()):
        for form in sorted(by_form):
            while by_form[form] and len(out) < count:
                p = by_form[form].pop(0)
                digits = tuple(p.target["digits"])
                if digits not in used:
                    used.add(digits)
                    out.append(p)
                    break
    if len(out) < count:
        raise ValueError(f"only {len(out)} problems with distinct digits in this split; asked for {count}")
    return out


def _balanced_arith_problems(seed: int, validation: int, test: int) -> Problems:
    task = load("arith", size=6000, numbers=4, max_number=9, max_target=99, seed=seed)
    train, tst, val = three_way_split(task.problems(), test, validation, name=task.name)
    return Problems(_Subset(task, train), _Subset(task, train), task, task, val, tst)


class _Subset(Task):
    """A task restricted to some of its problems (the others are held out)."""

    def __init__(self, task: Task, problems: list[Problem]) -> None:
        self.inner, self._problems, self.name = task, problems, task.name

    def problems(self) -> list[Problem]:
        return self._problems

    def reward(self, problem: Problem, completion: str) -> float:
        return self.inner.reward(problem, completion)

    def extract(self, completion: str) -> str | None:
        return self.inner.extract(completion)

    def spec(self) -> dict:
        return self.inner.spec()


SETTINGS = {
    "forms": Setting(
        name="forms",
        summary="four-digit problems that exactly one of four expression forms solves; the base is supervised on "
                "a skewed mix of forms (85/10/4/1) with 15% of references stating the bare target, and the "
                "verifier reads an answer's value but not its digits",
        problems=_forms_problems, view="forms-value",
        model=TinyConfig(hidden_size=128, layers=4, heads=4, intermediate_size=384, max_positions=64),
        # The verifier's data and steps were doubled (400 -> 800 prompts of base samples, 400 -> 800 steps) after its
        # AUC on held-out training-prompt samples was 0.81 and 0.83 at seeds 1 and 2; doubled, 0.92 and 0.93
        # (0.97, 0.98 without the blind spot). Chosen on training prompts only.
        base_steps=150, base_batch=256, base_lr=2e-3, max_new_tokens=16, verifier_prompts=800,
        verifier=RewardModelConfig(hidden_size=96, layers=2, heads=4, steps=800, batch=128, lr=2e-3)),
    "balanced": Setting(
        name="balanced",
        summary="Countdown-style arithmetic with many valid answers per problem and no skew in the supervised "
                "data; the verifier reads the expression and its value and has to learn the use-each-number rule "
                "(the negative control: nothing for Best-of-N training to fix)",
        problems=_balanced_arith_problems, view="arith-calculator",
        model=TinyConfig(),
        base_steps=600, base_batch=128, base_lr=3e-3, max_new_tokens=16, verifier_prompts=600,
        verifier=RewardModelConfig(steps=300)),
}


def get_setting(name: str) -> Setting:
    if name not in SETTINGS:
        raise ValueError(f"unknown demo setting {name!r}; known: {', '.join(sorted(SETTINGS))}")
    return SETTINGS[name]
