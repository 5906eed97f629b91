"""Unit-test programs that pass only when their tests ran to the end, not merely when Python exited with status 0.

A completion can end the process before the tests run (``sys.exit(0)``, ``raise SystemExit``, ``quit()``,
``os._exit(0)``, a thread or an atexit hook that exits): with "exit status 0" as the pass criterion, every one of them
passed every HumanEval problem. So a test program is wrapped (``test_program``): the harness executes the model's code
and the tests in a namespace of their own, catches every exception including SystemExit and KeyboardInterrupt (a
failure), and after the tests prints a per-run random marker, then ends the process at once. The supervisor draws the
marker for each run and hands it to the program on its standard input, which the harness reads (and so empties)
before any model code runs; the program's text never contains it. A run passes only when it exits 0 and printed its
marker (``sandbox.run(..., expect_marker=True)``); the marker is taken out of the output the caller sees.

What this does not stop: model code runs in the same process as the harness, so it can still find the marker by
introspection (the harness's frame, the garbage collector) and print it, or define objects that compare equal to
anything. This raises the bar against accidental exits and the common reward hacks, not against code written to
defeat this harness; only a check in a separate process could.
"""

from __future__ import annotations

from typing import Sequence

from infertune.tasks.grading.sandbox import SandboxConfig, SandboxResult, run_many

TEMPLATE = '''import os as _infertune_os, sys as _infertune_sys


def _infertune_harness(source):
    """Read this run's marker, run the solution and its tests, print the marker only if they finished."""
    marker = b""
    while not marker.endswith(b"\\n"):
        chunk = _infertune_os.read(0, 256)
        if not chunk:
            break
        marker += chunk
    write, exit_now, stdout, stderr = _infertune_os.write, _infertune_os._exit, _infertune_sys.stdout, \\
        _infertune_sys.stderr
    import linecache, traceback
    linecache.cache["solution.py"] = (len(source), None, source.splitlines(True), "solution.py")
    namespace = {{"__name__": "__main__", "__builtins__": __builtins__, "__file__": "solution.py"}}
    try:
        exec(compile(source, "solution.py", "exec"), namespace)
        failure = None
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: stopping early is no pass
        traceback.print_exc()
        failure = type(exc).__name__
    for stream in {{stdout, stderr, _infertune_sys.stdout, _infertune_sys.stderr}}:
        try:
            stream.flush()
        except BaseException:
            pass
    if failure is not None:
        if failure in ("SystemExit", "KeyboardInterrupt"):
            write(2, ("infertune harness: " + failure + " before the tests finished: a failure\\n").encode())
        exit_now(1)
    write(1, b"\\n" + marker)
    exit_now(0)


_infertune_harness({source!r})
'''


def wrap(source: str) -> str:
    """``source`` (the solution followed by its tests) as a program that prints its run's marker only after them."""
    return TEMPLATE.format(source=source)


def run_tests(sources: Sequence[str], *, config: SandboxConfig | None = None,
              workers: int | None = None) -> list[SandboxResult]:
    """Run each solution-plus-tests program in the sandbox; a result passes only when its tests ran to the end."""
    return run_many([wrap(s) for s in sources], config=config, workers=workers, expect_marker=True)
