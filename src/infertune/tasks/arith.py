"""Countdown-style arithmetic: reach a target with given numbers, each used exactly once, and + - * ( ).

The embedded default's task: free to generate, exact to check, and with many valid answers per problem, which is
what makes sampling N times worthwhile. Targets come from random expression trees over the numbers, so every problem
has at least one solution and the reference solutions vary in shape.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass
from fractions import Fraction

from infertune.tasks.base import VIEWS, Problem, Task, completion_text, register

_ALLOWED_CHARS = re.compile(r"^[\d+\-*/() ]+$")
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


@dataclass
class ArithConfig:
    """Difficulty knobs of the generator."""

    size: int = 500
    seed: int = 0
    numbers: int = 4
    max_number: int = 9
    max_target: int = 99
    ops: str = "+-*"
    style: str = "compact"  # "compact": "3479:24=" for tiny models; "natural": an English instruction

    def __post_init__(self) -> None:
        if self.numbers < 2 or self.max_number < 1 or self.max_target < 1 or self.size < 1:
            raise ValueError("arith: numbers >= 2, max_number >= 1, max_target >= 1 and size >= 1 are required")
        if not self.ops or set(self.ops) - set("+-*/"):
            raise ValueError(f"arith: ops must be drawn from '+-*/', got {self.ops!r}")
        if self.style not in ("compact", "natural"):
            raise ValueError(f"arith: style must be 'compact' or 'natural', got {self.style!r}")
        if self.style == "compact" and self.max_number > 9:
            raise ValueError("arith: the compact style writes numbers as single digits; use max_number <= 9")


def evaluate(expression: str) -> tuple[Fraction, list[int]] | None:
    """Exact value and the integer literals of an arithmetic expression, or None if it is not one."""
    if not expression or not _ALLOWED_CHARS.match(expression) or len(expression) > 200:
        return None
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return None
    literals: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            literals.append(node.value)
            return Fraction(node.value)
        raise ValueError("not an arithmetic expression")

    try:
        return walk(tree), literals
    except (ValueError, ZeroDivisionError):
        return None


def check(expression: str, numbers: list[int], target: int, ops: str = "+-*/") -> bool:
    """True when the expression uses each given number exactly once, only the allowed operators, and hits target."""
    if any(ch in "+-*/" and ch not in ops for ch in expression):
        return False
    result = evaluate(expression)
    if result is None:
        return False
    value, literals = result
    return value == target and sorted(literals) == sorted(numbers)


def _random_expression(rng: random.Random, numbers: list[int], ops: str) -> tuple[str, Fraction]:
    items: list[tuple[str, Fraction]] = [(str(n), Fraction(n)) for n in numbers]
    rng.shuffle(items)
    while len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        (a_text, a), (b_text, b) = items[i], items[j]
        op = rng.choice(ops)
        if op == "/" and b == 0:
            op = "*"
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else a * b}[op]
        text = f"({a_text}{op}{b_text})"
        items = [x for k, x in enumerate(items) if k not in (i, j)] + [(text, value)]
    text, value = items[0]
    return _strip_outer(text), value


def _strip_outer(text: str) -> str:
    """Drop redundant outer parentheses of a generated expression."""
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(text) - 1:
                return text
        text = text[1:-1]
    return text


def generate(config: ArithConfig) -> list[Problem]:
    """``size`` distinct problems, deterministic in the seed."""
    rng = random.Random(config.seed)
    seen: set[tuple] = set()
    problems: list[Problem] = []
    attempts = 0
    while len(problems) < config.size:
        attempts += 1
        if attempts > 200 * config.size:
            raise ValueError("arith: could not generate enough distinct problems; widen max_number or max_target")
        numbers = sorted(rng.randint(1, config.max_number) for _ in range(config.numbers))
        solution, value = _random_expression(rng, numbers, config.ops)
        if value.denominator != 1 or not 1 <= value <= config.max_target:
            continue
        target = int(value)
        key = (tuple(numbers), target)
        if key in seen:
            continue
        seen.add(key)
        digits = "".join(str(n) for n in numbers)
        if config.style == "compact":
            prompt = f"{digits}:{target}="
        else:
            listed = ", ".join(str(n) for n in numbers)
            prompt = (f"Using the numbers {listed}, each exactly once, and the operations {' '.join(config.ops)} "
                      f"with parentheses, write an expression equal to {target}. Put the expression in \\boxed{{}}.")
        problems.append(Problem(id=f"arith-{config.seed}-{len(problems):05d}", prompt=prompt, reference=solution,
                                target={"numbers": numbers, "target": target},
                                metadata={"numbers": numbers, "target": target}))
    return problems


@register("arith")
class ArithTask(Task):
    name = "arith"

    def __init__(self, **options) -> None:
        self.config = ArithConfig(**options)
        self._problems: list[Problem] | None = None
        # A compact answer is one line of an expression: steps end at operators. Natural answers reason in prose.
        self.step_format = "operators" if self.config.style == "compact" else "blank-line"

    def problems(self) -> list[Problem]:
        if self._problems is None:
            self._problems = generate(self.config)
        return self._problems

    def extract(self, completion: str) -> str | None:
        """The expression: inside \\boxed{} if present, else the completion's first line, without spaces."""
        from infertune.tasks.grading.answers import last_boxed

        text = last_boxed(completion) if "\\boxed" in completion else completion.strip().split("\n")[0]
        if text is None:
            return None
        text = text.split("=")[0].replace(" ", "")
        return text if evaluate(text) is not None else None

    def reward(self, problem: Problem, completion: str) -> float:
        expression = self.extract(completion)
        if expression is None:
            return 0.0
        return float(check(expression, problem.target["numbers"], problem.target["target"], self.config.ops))

    def revision_prompt(self, problem: Problem, attempts: list[str]) -> str:
        """Compact style: earlier expressions follow the prompt, each ended by '|' (``3479:24=3*4+7+9|``)."""
        if self.config.style != "compact":
            return super().revision_prompt(problem, attempts)
        return problem.prompt + "".join(a.strip().replace("\n", " ") + "|" for a in attempts)

    def spec(self) -> dict:
        from dataclasses import asdict

        return {"name": "arith", **asdict(self.config)}


@VIEWS.register("arith-calculator")
def calculator_view(problem: Problem, completion) -> str:
    """Prompt and completion followed by the expression's value, as a reward model with a calculator tool sees it.

    The value makes "does it reach the target" readable; whether every number was used exactly once still has to be
    learned from the text, which a small model does only in part.
    """
    text = completion_text(completion)
    result = evaluate(text.strip().split("\n")[0].split("=")[0].replace(" ", ""))
    value = "?" if result is None else (str(result[0].numerator) if result[0].denominator == 1 else "frac")
    return f"{problem.prompt}{text}|{value}"


@VIEWS.register("arith-partial")
def partial_calculator_view(problem: Problem, completion) -> str:
    """The calculator view for partial answers too (what a process reward model reads): the value of what has been
    written so far, with a trailing operator dropped and open parentheses closed (``((5+9)-`` reads as 14), so a
    prefix's value can be compared with the target and the numbers still unused. Whole answers read as in
    ``arith-calculator``."""
    text = completion_text(completion).strip().split("\n")[0].split("=")[0].replace(" ", "")
    body = text.rstrip("+-*/")
    body += ")" * max(0, body.count("(") - body.count(")"))
    result = evaluate(body)
    value = "?" if result is None else (str(result[0].numerator) if result[0].denominator == 1 else "frac")
    return f"{problem.prompt}{completion_text(completion)}|{value}"
