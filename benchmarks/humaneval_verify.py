"""Sandboxed HumanEval verification speed: all 164 canonical solutions (which must pass) and 164 wrong ones.

Prints a JSON object as its last line: seconds for each set, programs per second, workers, and whether the
sandbox ran with full isolation (root) or resource limits only.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from infertune import tasks
from infertune.tasks.grading.sandbox import capabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    task = tasks.load("humaneval", workers=args.workers)
    problems = task.problems()
    start = time.perf_counter()
    right = task.rewards(problems, [p.reference for p in problems])
    right_s = time.perf_counter() - start
    start = time.perf_counter()
    wrong = task.rewards(problems, ["    return None\n"] * len(problems))
    wrong_s = time.perf_counter() - start
    print(json.dumps({
        "canonical_seconds": round(right_s, 2), "canonical_passed": int(sum(right)), "problems": len(problems),
        "wrong_seconds": round(wrong_s, 2), "wrong_passed": int(sum(wrong)),
        "programs_per_s": round(2 * len(problems) / (right_s + wrong_s), 1), "workers": args.workers,
        "fully_isolated": all(capabilities().values()),
    }))


if __name__ == "__main__":
    main()
