"""Answer extraction and equivalence, including equivalent forms and the timeout outside the main thread."""

import threading
import time

import pytest

from infertune.tasks.grading.answers import as_number, call_with_timeout, equivalent, extract_answer, last_boxed


@pytest.mark.parametrize("text, expected", [
    ("so the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("nested \\boxed{\\sqrt{x^{2}}} done", "\\sqrt{x^{2}}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("Natalia sold 48 clips...\n#### 72", "72"),
    ("Thus, the answer is 1,000.", "1,000"),
    ("The final answer is: $-3.5$", "-3.5"),
    ("I think 3 apples and then 17", "17"),
    ("no numbers here", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_last_boxed_handles_unbalanced_input():
    assert last_boxed("\\boxed{1 + {2}") is None
    assert last_boxed("no box") is None


@pytest.mark.parametrize("pred, gold", [
    ("0.5", "\\frac{1}{2}"), ("1/2", "0.5"), ("\\boxed{252}", "252"), ("1,000", "1000"), ("-3", "-3.0"),
    ("\\frac{3}{4}", "0.75"), ("2^{n-1}", "2^(n-1)"), ("x+1", "1+x"), ("\\sqrt{4}", "2"),
])
def test_equivalent_forms(pred, gold):
    assert equivalent(pred, gold)


@pytest.mark.parametrize("pred, gold", [("0.51", "\\frac{1}{2}"), ("252", "251"), (None, "1"), ("x+2", "x+1")])
def test_non_equivalent(pred, gold):
    assert not equivalent(pred, gold)


def test_any_of_several_gold_forms():
    assert equivalent("252", ["C(10,5)", "252"])


def test_as_number_is_exact():
    assert as_number("\\frac{1}{3}") * 3 == 1
    assert as_number("abc") is None


def test_math_verify_works_from_a_worker_thread():
    results = {}

    def work():
        results["eq"] = equivalent("\\frac{2}{4}", "\\frac{1}{2} + 0", timeout_s=10)
        results["ne"] = equivalent("\\frac{2}{5}", "\\frac{1}{2} + 0", timeout_s=10)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert results == {"eq": True, "ne": False}


def _slow(x):
    time.sleep(30)
    return x


def test_our_timeout_kills_a_hung_check():
    start = time.monotonic()
    assert call_with_timeout(_slow, (1,), 0.5, default="timed out") == "timed out"
    assert time.monotonic() - start < 5
    assert call_with_timeout(abs, (-3,), 5) == 3
