"""The demo's jobs run side by side in worker processes: every job runs once, two at a time when there are two
workers, its progress reaches the parent's one stage, and a failure (an error or a worker that dies) stops the demo
at once with a message naming it, without starting the jobs that were still waiting."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from infertune.demo.jobs import Context, Workers, run_jobs


@dataclass(frozen=True)
class CountingJob:
    """A job that reports ``steps`` steps (``pause`` seconds each), logs a line and writes the process id that ran
    it with its start and end times; ``fail`` raises an error, ``crash`` ends the process abruptly; with ``partner``
    it first waits (up to a minute) until that job has started too, which only two jobs under way at once can do."""

    name: str
    steps: int
    folder: str
    pause: float = 0.0
    fail: bool = False
    crash: bool = False
    partner: str | None = None

    def size(self, context) -> int:
        return self.steps

    def run(self, context, progress) -> None:
        started = time.time()
        if self.crash:
            os._exit(3)
        if self.fail:
            raise ValueError(f"{self.name}: row 3, field 'lr' is not a number")
        Path(self.folder, f"{self.name}.started").touch()
        if self.partner:
            deadline = time.time() + 60
            while not Path(self.folder, f"{self.partner}.started").exists():
                if time.time() > deadline:
                    raise TimeoutError(f"{self.name}: {self.partner} never started while {self.name} ran")
                time.sleep(0.05)
        with progress.stage(self.name, total=self.steps, unit="steps") as stage:
            for i in range(self.steps):
                time.sleep(self.pause)
                stage.advance(1, info=f"step {i}")
        progress.log("done")
        Path(self.folder, self.name).write_text(f"{os.getpid()} {started} {time.time()}")


def record(folder: Path, name: str) -> tuple[int, float, float]:
    pid, start, end = (folder / name).read_text().split()
    return int(pid), float(start), float(end)


class RecordingStage:
    def __init__(self, name, total, unit) -> None:
        self.name, self.total, self.unit, self.advances = name, total, unit, []

    def advance(self, amount=1, info="") -> None:
        self.advances.append((amount, info))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


class RecordingProgress:
    def __init__(self) -> None:
        self.stages, self.logs = [], []

    def stage(self, name, total=None, unit=""):
        self.stages.append(RecordingStage(name, total, unit))
        return self.stages[-1]

    def log(self, message) -> None:
        self.logs.append(message)


def context(tmp_path) -> Context:
    return Context(config=None, base="", out=str(tmp_path))


@pytest.mark.parametrize("workers", [1, 2])
def test_every_job_runs_once_and_reports_to_one_stage(tmp_path, workers):
    # With two workers, a and b (submitted first) wait for each other: they pass only if both are under way at once.
    partners = {"a": "b", "b": "a"} if workers == 2 else {}
    jobs = [CountingJob(name, steps, str(tmp_path), 0.02, partner=partners.get(name))
            for name, steps in (("a", 5), ("b", 7), ("c", 3))]
    progress = RecordingProgress()
    (tmp_path / "again").mkdir()
    with Workers(workers) as pool:
        watcher = None
        if workers == 2:  # watch the parent's reads of the workers' events
            pool.pool()
            pool.events = watcher = _WaitWatcher(pool.events)
        run_jobs(jobs, context(tmp_path), progress, "count", "steps", pool)
        # The workers stay up for the next phase: a second call runs in the same processes.
        again = [CountingJob(name, 1, str(tmp_path / "again")) for name in ("d", "e", "f")]
        run_jobs(again, context(tmp_path), RecordingProgress(), "count", "steps", pool)
    if watcher is not None:
        # Every wait for a job's end-of-events mark found it (720f8eb waited 30 s for marks it had already read);
        # there may be no wait at all, when every mark was read before its job's result was looked at.
        assert watcher.reads > 0 and watcher.wasted == 0
    stage = progress.stages[0]
    assert stage.total == 15 and stage.unit == "steps"
    assert stage.name == ("count (3, 2 at a time)" if workers == 2 else "count")
    assert sum(amount for amount, _ in stage.advances) == 15
    assert any("a 1/5" in info for _, info in stage.advances)  # the info names the jobs under way
    assert sorted(progress.logs) == ["a: done", "b: done", "c: done"]
    runs = {job.name: record(tmp_path, job.name) for job in jobs}
    pids = {pid for pid, _, _ in runs.values()}
    pids_again = {record(tmp_path / "again", name)[0] for name in ("d", "e", "f")}
    if workers == 1:
        assert pids == pids_again == {os.getpid()}
    else:
        # Two workers, neither of them this process (a and b ran at the same time, so in different ones).
        assert os.getpid() not in pids and runs["a"][0] != runs["b"][0] and pids_again <= pids


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_stops_the_rest_and_raises_its_error(tmp_path, workers):
    jobs = [CountingJob("bad", 2, str(tmp_path), fail=True), CountingJob("slow", 3, str(tmp_path), 0.3)] + [
        CountingJob(f"waiting{i}", 1, str(tmp_path)) for i in range(3)]
    with pytest.raises(ValueError, match="bad: row 3, field 'lr' is not a number"), Workers(workers) as pool:
        run_jobs(jobs, context(tmp_path), RecordingProgress(), "count", "steps", pool)
    assert not any((tmp_path / f"waiting{i}.started").exists() for i in range(3))  # never started


def test_a_worker_that_dies_is_named_in_the_error(tmp_path):
    jobs = [CountingJob("ok", 1, str(tmp_path)), CountingJob("doomed", 1, str(tmp_path), crash=True)]
    with pytest.raises(RuntimeError, match=r"worker process ended abruptly .* running .*doomed"), Workers(2) as pool:
        run_jobs(jobs, context(tmp_path), RecordingProgress(), "count", "steps", pool)


def test_no_jobs_start_no_workers(tmp_path):
    progress = RecordingProgress()
    with Workers(2) as pool:
        assert run_jobs([], context(tmp_path), progress, "count", "steps", pool) == 0
        assert pool._pool is None
    assert progress.stages == []


class _WaitWatcher:
    """The workers' event queue as the parent reads it, counting blocking reads and those that found nothing (a
    blocking read waits for a job's end-of-events mark, which the worker sends before its result)."""

    def __init__(self, events):
        self._events, self.reads, self.waits, self.wasted = events, 0, 0, 0

    def get_nowait(self):
        self.reads += 1
        return self._events.get_nowait()

    def get(self, timeout=None):
        import queue

        self.waits += 1
        try:
            return self._events.get(timeout=min(timeout, 10.0))
        except queue.Empty:
            self.wasted += 1
            raise

    def __getattr__(self, name):
        return getattr(self._events, name)


class _ScriptedEvents:
    """A queue stand-in: hands out its events, then reports empty; a blocking get on an empty queue is a failure
    (the real one would wait up to 30 s for an end-of-events mark that was already read)."""

    def __init__(self, events):
        self.events = list(events)

    def get_nowait(self):
        import queue

        if not self.events:
            raise queue.Empty
        return self.events.pop(0)

    def get(self, timeout=None):
        if not self.events:
            raise AssertionError(f"waited (timeout {timeout}) for a mark that was already read")
        return self.events.pop(0)


def test_an_end_of_events_mark_read_early_is_not_waited_for():
    """The pool loop drains events before it looks at finished results, so it can read a job's end mark first; the
    wait for that job's mark must then return at once (it used to wait 30 s per job)."""
    from infertune.demo.jobs import _Board, _drain

    class Stage:
        def __init__(self):
            self.total = 0.0

        def advance(self, amount, info=""):
            self.total += amount

    stage = Stage()
    board = _Board(stage, {"a": 2, "b": 1})
    logged = []
    progress = type("P", (), {"log": lambda self, line: logged.append(line)})()
    events = _ScriptedEvents([("advance", "a", (2,)), ("log", "a", "done"), ("finished", "a", None),
                              ("advance", "b", (1,))])
    ended: set[str] = set()
    _drain(events, board, progress, ended)  # reads everything, a's end mark included
    assert ended == {"a"} and stage.total == 3 and logged == ["a: done"]
    _drain(events, board, progress, ended, until="a")  # must not wait: the mark was read above
    events.events.append(("finished", "b", None))
    _drain(events, board, progress, ended, until="b")  # reads up to b's mark and stops there
    assert ended == {"a", "b"} and not events.events


def test_jobs_with_the_same_name_are_refused(tmp_path):
    """Progress and end-of-events marks are matched by job name: two jobs of one name would mix (e.g. a temperature
    grid given 1.0 twice)."""
    jobs = [CountingJob("validation-base-T1", 1, str(tmp_path)), CountingJob("validation-base-T1", 1, str(tmp_path))]
    with Workers(1) as pool, pytest.raises(ValueError, match="validation-base-T1"):
        run_jobs(jobs, context(tmp_path), RecordingProgress(), "temperatures", "prompts", pool)
    assert not list(tmp_path.glob("*.started"))
