"""Every task loads offline from what pip installed, and its reward is right on known right and wrong answers."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infertune import tasks
from infertune.tasks import DataError
from infertune.tasks.arith import check, evaluate
from infertune.tasks.champ import gold_answers
from infertune.tasks.humaneval import program_for


def test_registry_lists_every_task_and_rejects_unknown_names():
    assert {"arith", "humaneval", "champ", "reasoning-gym", "jsonl", "parquet"} <= set(tasks.available())
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        tasks.load("nope")


def test_arith_is_seeded_solvable_and_checked_exactly():
    task = tasks.load("arith", size=200, seed=7)
    problems = task.problems()
    assert [p.prompt for p in problems] == [p.prompt for p in tasks.load("arith", size=200, seed=7).problems()]
    assert len({p.prompt for p in problems}) == 200
    assert all(task.reward(p, p.reference) == 1.0 for p in problems)
    p = problems[0]
    numbers, target = p.target["numbers"], p.target["target"]
    assert p.prompt == "".join(map(str, numbers)) + f":{target}="
    assert task.reward(p, "+".join(map(str, numbers[:-1]))) == 0.0  # a number left out
    assert task.reward(p, "garbage") == 0.0
    # Several valid answers exist: any expression with the right numbers and value scores.
    assert check("(1+2)*(3+4)", [1, 2, 3, 4], 21) and check("7*(2+1)*(4-3)", [7, 2, 1, 4, 3], 21)
    assert not check("21", [1, 2, 3, 4], 21)
    assert not check("(1+2)*(3+4)", [1, 2, 3, 4], 21, ops="+-")
    assert evaluate("__import__('os')") is None and evaluate("2**10") is None


def test_arith_natural_style_and_boxed_answers():
    task = tasks.load("arith", size=3, style="natural")
    p = task.problems()[0]
    assert "each exactly once" in p.prompt
    assert task.reward(p, f"Let me try. \\boxed{{{p.reference}}}") == 1.0
    with pytest.raises(ValueError, match="ops"):
        tasks.load("arith", ops="+^")


def test_reasoning_gym_counts_only_a_full_score():
    task = tasks.load("reasoning-gym:basic_arithmetic", size=5, seed=3)
    p = task.problems()[0]
    assert task.reward(p, f"<answer>{p.reference}</answer>") == 1.0
    assert task.reward(p, f"The answer is {p.reference}") == 1.0
    assert task.reward(p, "<answer>123456789</answer>") == 0.0
    gsm = tasks.load("reasoning-gym:gsm_symbolic", size=2)
    q = gsm.problems()[0]
    assert gsm.reward(q, f"<answer>{q.reference}</answer>") == 1.0
    # A nearly-right answer earns a partial score from reasoning-gym; it is still wrong.
    entry = gsm.dataset[0]
    near = str(int(float(q.reference)) + 1)
    assert 0.0 <= gsm.dataset.score_answer(answer=near, entry=entry) < 1.0
    assert gsm.reward(q, f"<answer>{near}</answer>") == 0.0
    with pytest.raises(ValueError, match="reasoning-gym:no_such_dataset"):
        tasks.load("reasoning-gym:no_such_dataset")


def test_humaneval_canonical_solutions_all_pass_and_wrong_ones_fail():
    task = tasks.load("humaneval")
    problems = task.problems()
    assert len(problems) == 164
    rewards = task.rewards(problems, [p.reference for p in problems])
    assert rewards == [1.0] * 164
    wrong = task.rewards(problems[:4], ["    return None\n"] * 4)
    assert wrong == [0.0] * 4
    # A chat-style answer restating the whole function in a fenced block is accepted.
    p = problems[0]
    entry = p.target["entry_point"]
    chat_answer = f"Here it is:\n```python\ndef {entry}(numbers, threshold):\n" \
                  "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) " \
                  "for b in numbers[i + 1:])\n```"
    assert task.reward(p, chat_answer) == 1.0
    assert "check(" in program_for(p, p.reference)


EXITS_EARLY = ["    import sys; sys.exit(0)\n", "    import os; os._exit(0)\n", "    raise SystemExit\n",
               "    raise SystemExit(0)\n", "    quit()\n", "    exit(0)\n",
               "    pass\n\nimport sys\nsys.exit(0)\n", "    pass\n\nimport os\nos._exit(0)\n",
               "    import atexit, os; atexit.register(os._exit, 0); raise AssertionError\n",
               "    import threading, os\n    threading.Thread(target=os._exit, args=(0,)).start()\n"
               "    import time; time.sleep(5)\n"]


def test_humaneval_completions_that_exit_early_score_zero():
    """Exit status 0 is no pass: the tests must run to their end (a per-run marker printed after check())."""
    task = tasks.load("humaneval", workers=2)
    problems = task.problems()[:3]
    for completion in EXITS_EARLY:
        assert task.rewards(problems, [completion] * len(problems)) == [0.0] * len(problems), completion
    assert task.rewards(problems, [p.reference for p in problems]) == [1.0] * len(problems)


def test_code_tasks_from_jsonl_do_not_pass_on_an_early_exit(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"prompt": "Write f(x) returning x squared.", "tests": "assert f(3) == 9"}) + "\n")
    task = tasks.load(f"jsonl:{path}")
    problem = task.problems()[0]
    exits = ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit",
             "def f(x):\n    raise SystemExit(0)"]
    assert task.rewards([problem] * 5, exits + ["def f(x):\n    return x * x"]) == [0.0] * 4 + [1.0]


def test_champ_checks_equivalent_forms():
    task = tasks.load("champ")
    problems = {p.id: p for p in task.problems()}
    assert len(problems) == 270
    p = problems["P_Combinatorics_1"]
    assert task.reward(p, "... so there are \\boxed{239} strings.") == 1.0
    assert task.reward(p, "\\boxed{238}") == 0.0
    assert gold_answers("@@C(10, 5)@@, or equivalently @@252@@", "") == ["252"]


def test_jsonl_task_answers_and_tests(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"id": "half", "prompt": "What is 1/2 as a decimal?", "answer": "0.5"},
            {"prompt": "Write f(x) returning x squared.", "tests": "assert f(3) == 9"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = tasks.load(f"jsonl:{path}")
    half, square = task.problems()
    assert half.id == "half" and square.id == "2"
    assert task.rewards([half, half, square, square],
                        ["\\boxed{\\frac{1}{2}}", "0.6", "def f(x):\n    return x * x", "def f(x):\n    return x"]
                        ) == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("line, message", [
    ('{"answer": "1"}', "field 'prompt' is missing"),
    ('{"prompt": 3, "answer": "1"}', "field 'prompt' must be a non-empty string"),
    ('{"prompt": "p"}', "exactly one of the fields 'answer' or 'tests'"),
    ('{"prompt": "p", "answer": [1]}', "field 'answer' must be a string or a number"),
    ('{"prompt": "p", "answer": "1", ', "not valid JSON"),
])
def test_malformed_jsonl_rows_name_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine", "answer": "1"}\n' + line + "\n")
    with pytest.raises(DataError, match=f"{path}:2: .*{message}"):
        tasks.load(f"jsonl:{path}")


def test_parquet_task_and_its_errors(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"prompt": ["2+2?"], "answer": ["4"]}), good)
    task = tasks.load(f"parquet:{good}")
    assert task.reward(task.problems()[0], "#### 4") == 1.0
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": ["ok", None], "answer": ["1", "2"]}), bad)
    with pytest.raises(DataError, match=f"{bad}: row 1: field 'prompt' is missing"):
        tasks.load(f"parquet:{bad}")
    with pytest.raises(FileNotFoundError):
        tasks.load(f"jsonl:{tmp_path / 'absent.jsonl'}")


def test_parallel_rewards_equal_serial_ones():
    task = tasks.load("reasoning-gym:basic_arithmetic", size=300, seed=1)
    problems = task.problems()
    completions = [f"<answer>{p.reference if i % 3 else '0'}</answer>" for i, p in enumerate(problems)]
    serial = task.rewards(problems, completions)
    assert task.rewards(problems, completions, workers=2) == serial
    assert 0 < sum(serial) < len(serial)
