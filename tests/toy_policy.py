"""A toy policy whose success probabilities are known exactly: answers are three digits joined by '+', each digit
drawn independently (0: 0.5, 1: 0.3, 2: 0.2) with counter-based randomness, and an answer is right when its digits
sum to the prompt's target. It implements both sampler interfaces (whole completions and next steps)."""

from __future__ import annotations

import itertools

import numpy as np

from infertune.models.base import Completion
from infertune.models.search import Step
from infertune.models.seeding import sample_keys, text_key, uniforms
from infertune.tasks.base import Problem, Task

PROBS = np.array([0.5, 0.3, 0.2])
DIGITS = 3


def digits_of(text: str) -> list[int]:
    return [int(ch) for ch in text if ch.isdigit()]


class ToyTask(Task):
    name = "toy-sum"
    step_format = "operators"

    def __init__(self, targets=(0, 1, 2, 3, 4)) -> None:
        self._problems = [Problem(id=f"toy-{t}", prompt=f"sum={t}:", reference="REFERENCE-SENTINEL", target=t)
                          for t in targets]

    def problems(self):
        return self._problems

    def extract(self, completion: str):
        d = digits_of(completion)
        return "+".join(map(str, d)) if len(d) == DIGITS else None

    def reward(self, problem, completion):
        d = digits_of(completion)
        return float(len(d) == DIGITS and sum(d) == problem.target)

    def revision_prompt(self, problem, attempts):
        return problem.prompt + "".join(a + "|" for a in attempts)


def exact_success(target: int, prefix_digits: list[int]) -> float:
    """P(the answer's digits sum to target | its first digits), by enumeration."""
    rest = DIGITS - len(prefix_digits)
    total = 0.0
    for tail in itertools.product(range(3), repeat=rest):
        if sum(prefix_digits) + sum(tail) == target:
            total += float(np.prod(PROBS[list(tail)]))
    return total


def _digit(u: float) -> int:
    return int(np.searchsorted(np.cumsum(PROBS), u))


class ToySampler:
    """Continues a prompt 'sum=T:' + partial answer with the remaining digits (whole completion or one step)."""

    name = "toy"
    eos_ids: list[int] = []

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _draw(self, prompt: str, params, steps: int | None):
        self.seen.append(prompt)
        done = digits_of(prompt.split(":", 1)[1].split("|")[-1])
        keys = sample_keys(params.seed, np.array([text_key(prompt)], dtype=np.uint64).repeat(params.n),
                           np.arange(params.start_index, params.start_index + params.n))
        out = []
        for j in range(params.n):
            remaining = DIGITS - len(done)
            count = remaining if steps is None else min(steps, remaining)
            if params.temperature == 0:
                new = [0] * count
            else:
                new = [_digit(u) for u in (uniforms(keys[j:j + 1], s)[0] for s in range(count))]
            out.append(new)
        return done, out

    def sample(self, prompts, params):
        result = []
        for prompt in prompts:
            done, rows = self._draw(prompt, params, None)
            row = []
            for i, new in enumerate(rows):
                text = "+".join(map(str, new))
                row.append(Completion(text=text, token_ids=list(range(len(text) + 1)),
                                      logprobs=[0.0] * (len(text) + 1), finish_reason="stop",
                                      index=params.start_index + i))
            result.append(row)
        return result

    def steps(self, prompts, params):
        result = []
        for prompt in prompts:
            done, rows = self._draw(prompt, params, 1)
            last = len(done) == DIGITS - 1
            result.append([Step(f"{new[0]}" + ("" if last else "+"), 2, last) for new in rows])
        return result
