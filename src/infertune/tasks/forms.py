"""Which form? Four digits and a target; exactly one of four expression forms over the digits, in order, reaches it.

The demo's main setting, built so that the mechanism by which training for Best-of-N beats training for one sample
is present and visible (see the README):

- Strategy prior. A problem ``dddd:ttt=`` (digits, target zero-padded to 3) is solved by one of four forms:
  (a+b)*(c+d), a*b+c*d, (a+b+c)*d, a*b*c-d. A digit tuple is used for a form only if no other expression of the answer
  grammar (every +, -, * parenthesisation of the digits in order) reaches the same target, so exactly one form works
  and the prompt does not say which. ``mix`` sets how often each form is needed: a base model supervised on a skewed
  mix (85/10/4/1) learns a skewed prior over forms, while training and test problems need them evenly.
- A shortcut the supervised data teaches. ``bare_share`` of the references state the bare target instead of an
  expression. The reward rejects it (the digits must be used), but a verifier that checks only the value does not.

Digit tuples are split into train, validation and test by ``seed``, so test problems use tuples never trained on.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from infertune.tasks.arith import evaluate
from infertune.tasks.base import VIEWS, Problem, Task, completion_text, register

FORMS = ("(a+b)*(c+d)", "a*b+c*d", "(a+b+c)*d", "a*b*c-d")
SPLITS = ("train", "validation", "test")
_ANSWER = re.compile(r"^[0-9+\-*() ]+$")


_SHAPES = (
    lambda a, b, c, d, o: o[2](o[1](o[0](a, b), c), d),  # ((a.b).c).d
    lambda a, b, c, d, o: o[2](o[0](a, o[1](b, c)), d),  # (a.(b.c)).d
    lambda a, b, c, d, o: o[1](o[0](a, b), o[2](c, d)),  # (a.b).(c.d)
    lambda a, b, c, d, o: o[0](a, o[2](o[1](b, c), d)),  # a.((b.c).d)
    lambda a, b, c, d, o: o[0](a, o[1](b, o[2](c, d))),  # a.(b.(c.d))
)
_FORM_FNS = (
    lambda a, b, c, d: (a + b) * (c + d),
    lambda a, b, c, d: a * b + c * d,
    lambda a, b, c, d: (a + b + c) * d,
    lambda a, b, c, d: a * b * c - d,
)


def _grammar() -> list:
    """Every +, -, * expression over four ordered operands, one vectorised function per distinct function
    (expressions that agree on random inputs are the same form)."""
    rng = np.random.default_rng(0)
    probe = [rng.integers(-50, 50, 16).astype(np.int64) for _ in range(4)]
    seen: dict[tuple, object] = {}
    for shape, ops in itertools.product(_SHAPES, itertools.product((np.add, np.subtract, np.multiply), repeat=3)):
        def fn(a, b, c, d, shape=shape, ops=ops):
            return shape(a, b, c, d, ops)

        seen.setdefault(tuple(fn(*probe).tolist()), fn)
    return list(seen.values())


@lru_cache(maxsize=1)
def unique_form_table() -> dict[tuple[int, int, int, int], dict[int, int]]:
    """For every digit tuple, {form index: target} for the forms whose target no other grammar expression reaches
    (and that lies in 0..999)."""
    grammar = _grammar()
    digits = np.array(list(itertools.product(range(10), repeat=4)), dtype=np.int64)
    cols = [digits[:, i] for i in range(4)]
    values = np.stack([fn(*cols) for fn in grammar], axis=1)  # [tuples, distinct functions]
    form_column = [next(j for j in range(values.shape[1]) if np.array_equal(values[:, j], form(*cols)))
                   for form in _FORM_FNS]
    table: dict[tuple[int, int, int, int], dict[int, int]] = {}
    for row, tup in enumerate(map(tuple, digits.tolist())):
        for i, col in enumerate(form_column):
            target = int(values[row, col])
            if 0 <= target <= 999 and int((values[row] == target).sum()) == 1:
                table.setdefault(tup, {})[i] = target
    return table


def tuple_split(seed: int) -> dict[str, set]:
    """Digit tuples into train / validation / test (80/10/10), by seed."""
    tuples = sorted(unique_form_table())
    order = np.random.default_rng([seed, 11]).permutation(len(tuples))
    cut1, cut2 = int(0.8 * len(tuples)), int(0.9 * len(tuples))
    return {"train": {tuples[i] for i in order[:cut1]}, "validation": {tuples[i] for i in order[cut1:cut2]},
            "test": {tuples[i] for i in order[cut2:]}}


def parse_mix(mix: str | tuple | list) -> np.ndarray:
    if mix == "balanced":
        return np.full(len(FORMS), 1.0 / len(FORMS))
    if mix == "skewed":
        mix = (0.85, 0.10, 0.04, 0.01)
    values = np.asarray([float(x) for x in (mix.split(",") if isinstance(mix, str) else mix)])
    if values.shape != (len(FORMS),) or np.any(values < 0) or values.sum() <= 0:
        raise ValueError(f"forms: mix must be 'balanced', 'skewed' or {len(FORMS)} non-negative weights, got {mix!r}")
    return values / values.sum()


def answer_value(text: str) -> tuple[int, list[int]] | None:
    """Value and integer literals of an answer written with digits, + - * and parentheses; None otherwise. Parsed
    with arith's exact AST walk (never eval: the text is a model's)."""
    parsed = _answer_value(text)
    return None if parsed is None else (parsed[0], list(parsed[1]))


@lru_cache(maxsize=1 << 16)
def _answer_value(text: str) -> tuple[int, tuple[int, ...]] | None:
    """Cached: reward, extraction and the verifier's view each parse every sample, and samples repeat."""
    text = text.strip().split("\n")[0].replace(" ", "")
    if not text or len(text) > 40 or not _ANSWER.match(text) or "**" in text:
        return None
    parsed = evaluate(text)
    if parsed is None or parsed[0].denominator != 1:
        return None
    return int(parsed[0]), tuple(parsed[1])


@dataclass
class FormsConfig:
    seed: int = 0
    split: str = "train"
    mix: str = "balanced"
    bare_share: float = 0.0
    size: int = 2000

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"forms: split must be one of {SPLITS}, got {self.split!r}")
        if not 0.0 <= self.bare_share <= 1.0:
            raise ValueError(f"forms: bare_share must lie in [0, 1], got {self.bare_share}")
        if self.size < 1:
            raise ValueError("forms: size must be at least 1")
        parse_mix(self.mix)


@register("arith-forms")
class FormsTask(Task):
    """Problems of one split, forms drawn by ``mix``; ``bare_share`` of references state the bare target."""

    name = "arith-forms"

    def __init__(self, **options) -> None:
        self.config = FormsConfig(**options)
        self._problems: list[Problem] | None = None

    def problems(self) -> list[Problem]:
        if self._problems is None:
            self._problems = self._generate()
        return self._problems

    def _generate(self) -> list[Problem]:
        c = self.config
        table = unique_form_table()
        pool = sorted(tuple_split(c.seed)[c.split])
        by_form = [[t for t in pool if i in table[t]] for i in range(len(FORMS))]
        weights = parse_mix(c.mix)
        rng = np.random.default_rng([c.seed, SPLITS.index(c.split), 5])
        forms = rng.choice(len(FORMS), size=c.size, p=weights)
        used: set = set()
        problems = []
        for n, form in enumerate(forms):
            candidates = by_form[form]
            tup = candidates[int(rng.integers(len(candidates)))]
            if (tup, form) in used and len(used) < sum(map(len, by_form)):
                continue  # each (tuple, form) at most once; a repeat draw is skipped
            used.add((tup, form))
            target = table[tup][form]
            a, b, cc, d = tup
            expression = FORMS[form].replace("a", str(a)).replace("b", str(b)).replace("c", str(cc))
            expression = expression.replace("d", str(d))
            bare = rng.random() < c.bare_share
            problems.append(Problem(
                id=f"forms-{c.seed}-{c.split}-{len(problems):05d}", prompt=f"{a}{b}{cc}{d}:{target:03d}=",
                reference=str(target) if bare else expression,
                target={"digits": list(tup), "target": target, "form": int(form)},
                metadata={"form": int(form), "bare_reference": bool(bare)}))
        return problems

    def extract(self, completion: str) -> str | None:
        text = completion.strip().split("\n")[0].replace(" ", "")
        return text if answer_value(text) is not None else None

    def reward(self, problem: Problem, completion: str) -> float:
        parsed = answer_value(completion)
        if parsed is None:
            return 0.0
        value, literals = parsed
        return float(value == problem.target["target"] and literals == problem.target["digits"])

    def spec(self) -> dict:
        from dataclasses import asdict

        return {"name": self.name, **asdict(self.config)}


def states_bare_target(completion: str, target: int) -> bool:
    """Whether an answer is the target written as a bare number (zero-padded or not): the verifier's blind spot."""
    text = completion.strip()
    return text.isdigit() and int(text) == int(target)


def answer_form(completion: str, digits: list[int]) -> int | None:
    """Which of the four forms an answer is (over the problem's digits), or None (another expression, a bare number,
    unparseable): what the demo counts to show the prior over forms."""
    text = completion.strip().split("\n")[0].replace(" ", "")
    a, b, c, d = digits
    for i, form in enumerate(FORMS):
        if text == form.replace("a", str(a)).replace("b", str(b)).replace("c", str(c)).replace("d", str(d)):
            return i
    return None


@VIEWS.register("forms-value")
def value_view(problem: Problem, completion) -> str:
    """The target and the answer's value, as a reward model with a calculator sees them, but not the digits the
    answer used: a verifier reading this cannot tell a right expression from a bare statement of the target."""
    parsed = answer_value(completion_text(completion))
    value = "?" if parsed is None else (f"{parsed[0]:03d}" if 0 <= parsed[0] <= 999 else "big")
    return f"{problem.target['target']:03d}|{value}"
