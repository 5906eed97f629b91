"""Sandboxed HumanEval verification speed: all 164 canonical solutions (which must pass) and 164 wrong ones.

Prints a JSON object as its last line: seconds for each set, programs per second, workers, the sandbox backend
(bwrap, unshare or none) and the user id it ran as. ``--backend`` forces one (default: what the sandbox picks).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from infertune import tasks
from infertune.tasks.grading.sandbox import choose_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--backend", default="auto", help="auto, bwrap, unshare or none (none needs "
                        "INFERTUNE_ALLOW_UNISOLATED=1)")
    args = parser.parse_args()
    task = tasks.load("humaneval", workers=args.workers, sandbox_backend=args.backend)
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
        "backend": choose_backend(task.sandbox), "uid": os.getuid(),
    }))


if __name__ == "__main__":
    main()
