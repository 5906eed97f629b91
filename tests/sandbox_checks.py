"""Checks that test_sandbox_paths.py runs both in its own process (root in CI) and as an ordinary user in a child.

Run as ``python sandbox_checks.py CHECK [ARG]``: prints one JSON object (the check's figures) as its last line.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from infertune import tasks
from infertune.tasks.grading import cgroup, hostile
from infertune.tasks.grading.isolation import SandboxUnavailable
from infertune.tasks.grading.sandbox import SandboxConfig, run

EXITS_EARLY = ("    import sys; sys.exit(0)\n", "    import os; os._exit(0)\n", "    raise SystemExit\n", "    quit()\n")
MUST_FAIL_UNISOLATED = ("tmp_write", "tmp_delete", "home_write", "home_delete", "repo_write", "repo_delete",
                        "environment_secrets", "loopback_tcp", "unix_sockets", "fill_disk")


def humaneval(backend: str) -> dict:
    """All 164 canonical solutions, 164 wrong bodies and 164 that exit early with status 0 (four ways, in turn) through
    ``backend``; for the throughput ratio, the canonical ones also without isolation, in between (so that load on the
    machine hits both alike)."""
    task = tasks.load("humaneval", workers=2, sandbox_backend=backend)
    plain = tasks.load("humaneval", workers=2, sandbox_backend="none", allow_unisolated=True)
    problems = task.problems()
    canonical = [p.reference for p in problems]

    def timed(t, completions):
        start = time.perf_counter()
        rewards = t.rewards(problems, completions)
        return int(sum(rewards)), time.perf_counter() - start

    passed, isolated_s = timed(task, canonical)
    _, unisolated_s = timed(plain, canonical)
    wrong_passed, wrong_s = timed(task, ["    return None\n"] * len(problems))
    exits_passed, _ = timed(task, [EXITS_EARLY[i % len(EXITS_EARLY)] for i in range(len(problems))])
    return {"backend": backend, "problems": len(problems), "canonical_passed": passed, "wrong_passed": wrong_passed,
            "exits_passed": exits_passed,
            "canonical_isolated_s": round(isolated_s, 2), "canonical_unisolated_s": round(unisolated_s, 2),
            "wrong_isolated_s": round(wrong_s, 2),
            "isolated_programs_per_s": round(2 * len(problems) / (isolated_s + wrong_s), 1),
            "ratio": round(isolated_s / unisolated_s, 3)}


def view() -> dict:
    """What a program sees of /dev, the home folders and this virtual environment, and what the run claims."""
    homes = sorted({"/home", "/root", os.path.expanduser("~")})
    program = (f"import json, os\n"
               f"print(json.dumps({{'dev': sorted(os.listdir('/dev')), 'venv': os.path.exists({sys.prefix!r}),"
               f" 'homes': [h for h in {homes!r} if os.path.exists(h)]}}))")
    result = run(program, config=SandboxConfig(timeout_s=20))
    seen = json.loads(result.stdout)
    return {**seen, "status": result.status, "backend": result.backend, "protections": list(result.protections),
            "in_venv": sys.prefix != sys.base_prefix}


def spread() -> dict:
    """The hostile suite's memory spread over processes, with the protections the run claimed."""
    case = next(c for c in hostile.CASES if c.name == "spread_memory")
    config = replace(SandboxConfig(), **case.limits)
    result = run(case.program(None), config=config)
    return {"status": result.status, "detail": result.detail, "stdout": result.stdout,
            "protections": list(result.protections), "limit_mb": config.memory_mb + 2 * config.tmpfs_mb}


def checks_bite() -> dict:
    """Without isolation the file, network and secret attacks must succeed against the bait: the checks are real."""
    config = replace(SandboxConfig(backend="none", allow_unisolated=True), **hostile.SUITE_LIMITS)
    cases = [c for c in hostile.CASES if c.name in MUST_FAIL_UNISOLATED]
    return {c.name: hostile.run_case(c, config).held for c in cases}


def refusal(marker: str) -> dict:
    """Where no backend works: model code must not run, and must run (unisolated) after the opt-in."""
    program = f"open({marker!r}, 'w').write('ran')"
    try:
        run(program)
        refused, message = False, ""
    except SandboxUnavailable as exc:
        refused, message = True, str(exc)
    ran_before_opt_in = Path(marker).exists()
    result = run(program, config=SandboxConfig(allow_unisolated=True))
    return {"refused": refused, "message": message, "ran_before_opt_in": ran_before_opt_in,
            "opted_in_status": result.status, "opted_in_isolated": result.isolated,
            "ran_after_opt_in": Path(marker).exists()}


def orphaned(backend: str) -> dict:
    """Kill the supervising process (kill -9) while its program sleeps: the whole run must go with it."""
    token = secrets.token_hex(6)
    # The token is assembled at run time, so that only the sleeper's command line holds it, not the supervisor's.
    program = ("import os, sys\n"
               f"token = {token[:6]!r} + {token[6:]!r}\n"
               "os.execv(sys.executable, [sys.executable, '-I', '-S', '-c', 'import time; time.sleep(600)', token])")
    driver = ("from infertune.tasks.grading.sandbox import SandboxConfig, run\n"
              f"run({program!r}, config=SandboxConfig(backend={backend!r}, timeout_s=120))")
    supervisor = subprocess.Popen([sys.executable, "-c", driver], env=os.environ)
    deadline = time.monotonic() + 60
    while not hostile.processes_with(token) and time.monotonic() < deadline and supervisor.poll() is None:
        time.sleep(0.05)
    started = bool(hostile.processes_with(token))
    supervisor.kill()
    supervisor.wait()
    killed_at = time.monotonic()
    while hostile.processes_with(token) and time.monotonic() < killed_at + 5:
        time.sleep(0.05)
    left = hostile.processes_with(token)
    for pid in left:  # do not leave a sleeper behind even when the check fails
        os.kill(pid, 9)
    base = cgroup.available()  # the next process to look sweeps the killed supervisor's memory cgroup away
    stale = [str(p) for p in base.path.glob(f"infertune-{supervisor.pid}-*")] if base else []
    return {"backend": backend, "started": started, "left": left, "stale_groups": stale,
            "gone_after_s": round(time.monotonic() - killed_at, 3)}


if __name__ == "__main__":
    check, args = sys.argv[1], sys.argv[2:]
    figures = {"humaneval": humaneval, "checks_bite": checks_bite, "refusal": refusal,
               "orphaned": orphaned, "view": view, "spread": spread}[check](*args)
    print(json.dumps(figures))
