"""Sandboxed HumanEval verification fanned out as Ray tasks: 164 problems x 8 programs on 1 worker, then on 2.

Each problem gets its canonical solution 4 times and a wrong body 4 times, so every program runs the real unit
tests in the sandbox and half of them fail. A worker is one CPU of a local Ray cluster started for the measurement
(``ray.init(num_cpus=W)``); each Ray task checks ``--chunk`` programs one after the other. Worker start-up is
measured apart (a warm-up task per worker) so that the timing is of verification. Prints a JSON object as its last
line with ``speedup_2_workers`` (seconds on 1 worker / seconds on 2).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import ray

from infertune import tasks
from infertune.executors.ray_cluster import ray_rewards
from infertune.tasks.grading.sandbox import choose_backend


def _warm(_: int) -> int:
    return os.getpid()


def measure(workers: int, task, problems, programs, chunk: int, repeats: int) -> tuple[float, list[float]]:
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        warm = ray.remote(num_cpus=1)(_warm)
        ray.get([warm.remote(i) for i in range(4 * workers)])  # start the worker processes
        best, rewards = float("inf"), []
        for _ in range(repeats):
            start = time.perf_counter()
            rewards = ray_rewards(task, problems, programs, chunk=chunk)
            best = min(best, time.perf_counter() - start)
        return best, rewards
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=8, help="Programs per problem (half right, half wrong).")
    parser.add_argument("--chunk", type=int, default=16, help="Programs per Ray task.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed repeats per worker count; the best is kept.")
    args = parser.parse_args()
    task = tasks.load("humaneval")
    problems, programs = [], []
    for p in task.problems():
        for i in range(args.samples):
            problems.append(p)
            programs.append(p.reference if i % 2 == 0 else "    return None\n")
    one_s, one = measure(1, task, problems, programs, args.chunk, args.repeats)
    two_s, two = measure(2, task, problems, programs, args.chunk, args.repeats)
    if one != two:
        raise SystemExit("1 and 2 workers gave different rewards")
    print(json.dumps({
        "programs": len(programs), "passed": int(sum(one)), "expected_passed": len(task.problems()) * (
            (args.samples + 1) // 2),
        "seconds_1_worker": round(one_s, 2), "seconds_2_workers": round(two_s, 2),
        "programs_per_s_2_workers": round(len(programs) / two_s, 1),
        "speedup_2_workers": round(one_s / two_s, 3), "cpus": os.cpu_count(), "chunk": args.chunk,
        "sandbox_backend": choose_backend(task.sandbox), "uid": os.getuid(),
    }))


if __name__ == "__main__":
    main()
