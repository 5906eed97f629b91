"""Final answers: pull them out of free-form completions, and decide whether two answers are the same.

Extraction order follows how models are prompted to answer: the last \\boxed{...}, then a GSM8K-style "#### 42",
then "the answer is ...", then the last number in the text. Equivalence first tries exact arithmetic on plain
numbers (fast, no sympy), then math-verify for LaTeX and expressions. math-verify's own timeouts use signal.alarm,
which works only in the main thread; elsewhere the check runs in a forked child that is killed at our deadline.
"""

from __future__ import annotations

import multiprocessing
import re
import threading
from fractions import Fraction
from functools import lru_cache
from typing import Callable, Sequence

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_HASH_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*([^\n]+)", re.IGNORECASE)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}, with nested braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i].strip()
    return None


def _clean(answer: str) -> str:
    answer = answer.strip().strip("$").strip()
    answer = re.sub(r"^\\\(|\\\)$", "", answer).strip()
    return answer.rstrip(".").strip()


def extract_answer(text: str | None) -> str | None:
    """The final answer of a completion, or None when it gives none."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return _clean(boxed)
    hashes = _HASH_RE.findall(text)
    if hashes:
        return _clean(hashes[-1])
    stated = _ANSWER_IS_RE.findall(text)
    if stated:
        inner = last_boxed(stated[-1])
        value = _clean(inner if inner else stated[-1])
        if value:
            return value
    numbers = _NUMBER_RE.findall(text)
    return _clean(numbers[-1]) if numbers else None


def as_number(text: str) -> Fraction | None:
    """Exact value of a plain number ("1,000", "-0.5", "3/4", "\\frac{3}{4}"), or None."""
    s = _clean(text).replace("\\!", "").replace(" ", "")
    frac = re.fullmatch(r"(-?)\\d?frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if frac:
        sign, num, den = frac.groups()
        return (-1 if sign else 1) * Fraction(int(num), int(den)) if int(den) else None
    if not re.fullmatch(_NUMBER, s):
        return None
    s = s.replace(",", "")
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def equivalent(prediction: str | None, gold: str | Sequence[str], *, timeout_s: float = 5.0) -> bool:
    """Whether ``prediction`` equals ``gold`` (or any of several gold forms) as a mathematical answer."""
    if prediction is None:
        return False
    golds = [gold] if isinstance(gold, str) else list(gold)
    return any(_equivalent_cached(prediction, g, float(timeout_s)) for g in golds)


@lru_cache(maxsize=65536)
def _equivalent_cached(prediction: str, gold: str, timeout_s: float) -> bool:
    p, g = _clean(prediction), _clean(gold)
    if p == g and p:
        return True
    pn, gn = as_number(p), as_number(g)
    if pn is not None and gn is not None:
        return pn == gn
    if threading.current_thread() is threading.main_thread():
        return _math_verify(p, g, int(max(1, round(timeout_s))))
    return bool(call_with_timeout(_math_verify, (p, g, None), timeout_s, default=False))


def _math_verify(prediction: str, gold: str, timeout: int | None) -> bool:
    from math_verify import parse, verify

    def wrap(s: str) -> str:
        return s if ("$" in s or "\\boxed" in s) else f"${s}$"

    gold_parsed = parse(wrap(gold), parsing_timeout=timeout)
    pred_parsed = parse(wrap(prediction), parsing_timeout=timeout)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def call_with_timeout(fn: Callable, args: tuple, timeout_s: float, default=None):
    """Run ``fn(*args)`` in a forked child and return its result, or ``default`` if it does not finish in time."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)

    def target() -> None:
        try:
            sender.send(fn(*args))
        except BaseException:  # noqa: BLE001 - any failure is "no answer"
            sender.send(default)

    proc = ctx.Process(target=target, daemon=True)
    proc.start()
    sender.close()
    try:
        if receiver.poll(timeout_s):
            return receiver.recv()
        return default
    except EOFError:
        return default
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receiver.close()
