"""The user's own problems from a JSON Lines or Parquet file.

Each row has ``prompt`` (string) and either ``answer`` (checked for mathematical equivalence) or ``tests`` (Python
code run after the completion in the sandbox; reward 1.0 when it runs to its end without an exception: an exit
before that, even with status 0, fails); ``id`` and ``system`` are optional.
A malformed row is refused with an error naming the file, the line (or row) and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from infertune.tasks.base import BatchTask, Problem, check_batch, register
from infertune.tasks.grading.answers import equivalent
from infertune.tasks.grading.harness import run_tests
from infertune.tasks.grading.sandbox import SandboxConfig


class DataError(ValueError):
    """A row of the user's data that cannot be a problem; the message names file, line and field."""


def _problem_from_row(row: Any, where: str, index: int) -> Problem:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with a 'prompt' field, got {type(row).__name__}")
    prompt = row.get("prompt")
    if prompt is None:
        raise DataError(f"{where}: field 'prompt' is missing")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: field 'prompt' must be a non-empty string")
    has_answer = row.get("answer") is not None
    has_tests = row.get("tests") is not None
    if has_answer == has_tests:
        raise DataError(f"{where}: give exactly one of the fields 'answer' or 'tests'")
    if has_answer and not isinstance(row["answer"], (str, int, float)):
        raise DataError(f"{where}: field 'answer' must be a string or a number")
    if has_tests and not isinstance(row["tests"], str):
        raise DataError(f"{where}: field 'tests' must be a string of Python code")
    pid = row.get("id", index)
    if not isinstance(pid, (str, int)):
        raise DataError(f"{where}: field 'id' must be a string or an integer")
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        raise DataError(f"{where}: field 'system' must be a string")
    if has_answer:
        target = {"answer": str(row["answer"])}
        reference = str(row["answer"])
    else:
        target = {"tests": row["tests"]}
        reference = row.get("reference") if isinstance(row.get("reference"), str) else None
    return Problem(id=str(pid), prompt=prompt, reference=reference, target=target, system=system)


def _collect(path: Path, rows) -> list[Problem]:
    """Problems from (row, where, index) triples; ids must be unique and the file must not be empty."""
    problems, seen = [], set()
    for row, where, index in rows:
        problem = _problem_from_row(row, where, index)
        if problem.id in seen:
            raise DataError(f"{where}: field 'id' repeats {problem.id!r}")
        seen.add(problem.id)
        problems.append(problem)
    if not problems:
        raise DataError(f"{path}: no rows")
    return problems


def read_jsonl(path: Path) -> list[Problem]:
    def rows():
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    yield json.loads(line), where, line_no
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc

    return _collect(path, rows())


def read_parquet(path: Path) -> list[Problem]:
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    return _collect(path, ((row, f"{path}: row {i}", i) for i, row in enumerate(rows)))


class UserDataTask(BatchTask):
    def __init__(self, path: str, kind: str, timeout_s: float = 10.0, memory_mb: int = 512,
                 allow_unisolated: bool = False, sandbox_backend: str = "auto") -> None:
        if not path:
            raise ValueError(f"{kind} needs a file: {kind}:<path>")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        self.kind = kind
        self.name = f"{kind}:{path}"
        # allow_unisolated and sandbox_backend are this machine's business: spec() leaves them out of the run.
        self.sandbox = SandboxConfig(timeout_s=timeout_s, memory_mb=memory_mb, allow_unisolated=allow_unisolated,
                                     backend=sandbox_backend)
        self._problems = read_jsonl(self.path) if kind == "jsonl" else read_parquet(self.path)

    def problems(self) -> list[Problem]:
        return self._problems

    def rewards(self, problems: Sequence[Problem], completions: Sequence[str], *,
                workers: int | None = None) -> list[float]:
        check_batch(problems, completions)
        out: list[float | None] = [None] * len(problems)
        code_jobs = []
        for i, (p, c) in enumerate(zip(problems, completions)):
            if "answer" in p.target:
                out[i] = float(equivalent(self.extract(c), p.target["answer"]))
            else:
                code_jobs.append((i, f"{c}\n\n{p.target['tests']}\n"))
        if code_jobs:
            results = run_tests([code for _, code in code_jobs], config=self.sandbox, workers=workers)
            for (i, _), result in zip(code_jobs, results):
                out[i] = 1.0 if result.passed else 0.0
        return out  # type: ignore[return-value]

    def spec(self) -> dict:
        return {"name": self.name, "timeout_s": self.sandbox.timeout_s, "memory_mb": self.sandbox.memory_mb}


@register("jsonl", argument=":<path>")
def _jsonl(path: str, **options: Any) -> UserDataTask:
    return UserDataTask(path, "jsonl", **options)


@register("parquet", argument=":<path>")
def _parquet(path: str, **options: Any) -> UserDataTask:
    return UserDataTask(path, "parquet", **options)
