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
        run_jobs(jobs, context(tmp_path), progress, "count", "steps", pool)
        # The workers stay up for the next phase: a second call runs in the same processes.
        again = [CountingJob(name, 1, str(tmp_path / "again")) for name in ("d", "e", "f")]
        run_jobs(again, context(tmp_path), RecordingProgress(), "count", "steps", pool)
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
