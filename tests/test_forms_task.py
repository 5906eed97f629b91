"""The demo's forms task: exactly one form solves each problem, the reward checks digits and value, splits are
disjoint, mixes are as asked, and the verifier's view cannot tell a bare target from a right answer."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from infertune.tasks import load
from infertune.tasks.arith import evaluate
from infertune.tasks.base import VIEWS
from infertune.tasks.forms import FORMS, answer_form, tuple_split, unique_form_table

SHAPES = ["(({a}{0}{b}){1}{c}){2}{d}", "({a}{0}({b}{1}{c})){2}{d}", "({a}{0}{b}){1}({c}{2}{d})",
          "{a}{0}(({b}{1}{c}){2}{d})", "{a}{0}({b}{1}({c}{2}{d}))"]


def _all_expressions(digits):
    a, b, c, d = digits
    for shape, ops in itertools.product(SHAPES, itertools.product("+-*", repeat=3)):
        yield shape.format(*ops, a=a, b=b, c=c, d=d)


def _same_function(expression_shape_ops, form):
    """Two expression templates are one form when they agree on random digit tuples."""
    rng = np.random.default_rng(1)
    for _ in range(12):
        digits = rng.integers(0, 10, 4).tolist()
        a, b, c, d = digits
        left = evaluate(expression_shape_ops.format(a=a, b=b, c=c, d=d))[0]
        right = evaluate(form.replace("a", str(a)).replace("b", str(b)).replace("c", str(c)).replace("d", str(d)))[0]
        if left != right:
            return False
    return True


def test_exactly_one_form_reaches_each_target_by_independent_enumeration():
    task = load("arith-forms", seed=3, split="test", size=60)
    for p in task.problems():
        digits, target, form = p.target["digits"], p.target["target"], p.target["form"]
        hits = [(shape, ops) for shape, ops in itertools.product(SHAPES, itertools.product("+-*", repeat=3))
                if evaluate(shape.format(*ops, a=digits[0], b=digits[1], c=digits[2], d=digits[3]))[0] == target]
        assert hits, p.prompt
        for shape, ops in hits:  # every expression reaching the target is the problem's own form
            assert _same_function(shape.replace("{0}", ops[0]).replace("{1}", ops[1]).replace("{2}", ops[2]),
                                  FORMS[form]), (p.prompt, shape, ops)


def test_reward_needs_the_digits_in_order_and_the_value():
    task = load("arith-forms", seed=0, split="train", size=50)
    for p in task.problems():
        assert task.reward(p, p.reference) == 1.0
        assert task.reward(p, str(p.target["target"])) == 0.0  # the bare target uses no digits
        assert answer_form(p.reference, p.target["digits"]) == p.target["form"]
    p = next(q for q in task.problems() if q.target["form"] == 0 and len(set(q.target["digits"][:2])) == 2)
    a, b, c, d = p.target["digits"]
    swapped = f"({b}+{a})*({c}+{d})"  # the same value, the digits out of order
    assert evaluate(swapped)[0] == p.target["target"] and task.reward(p, swapped) == 0.0
    assert task.reward(p, "9**9**9") == 0.0 and task.reward(p, "") == 0.0 and task.reward(p, "__import__") == 0.0


def test_splits_are_disjoint_and_mixes_follow_the_option():
    split = tuple_split(7)
    assert not split["train"] & split["validation"] and not split["train"] & split["test"]
    assert not split["validation"] & split["test"]
    assert len(split["train"]) + len(split["validation"]) + len(split["test"]) == len(unique_form_table())
    skewed = load("arith-forms", seed=7, split="train", mix="skewed", bare_share=0.15, size=3000).problems()
    shares = Counter(p.metadata["form"] for p in skewed)
    assert shares[0] / len(skewed) == pytest.approx(0.85, abs=0.05) and shares[3] < shares[2] < shares[1]
    bare = np.mean([p.metadata["bare_reference"] for p in skewed])
    assert bare == pytest.approx(0.15, abs=0.03)
    balanced = load("arith-forms", seed=7, split="test", size=400).problems()
    for form, count in Counter(p.metadata["form"] for p in balanced).items():
        assert count / len(balanced) == pytest.approx(0.25, abs=0.08), form
    assert {tuple(p.target["digits"]) for p in balanced} <= split["test"]


def test_the_value_view_cannot_tell_a_bare_target_from_a_right_answer():
    task = load("arith-forms", seed=0, split="test", size=10)
    view = VIEWS.get("forms-value")
    for p in task.problems():
        assert view(p, p.reference) == view(p, str(p.target["target"]))
        assert view(p, "1+") != view(p, p.reference)
