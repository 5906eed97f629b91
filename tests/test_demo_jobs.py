"""The demo's jobs run side by side in worker processes: every job runs once, its progress reaches the parent's one
stage, and an error in a worker is raised in the parent with its message."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from infertune.demo.jobs import Context, Workers, run_jobs


@dataclass(frozen=True)
class CountingJob:
    """A job that reports ``steps`` steps, logs a line and writes the process id that ran it."""

    name: str
    steps: int
    folder: str
    fail: bool = False

    def size(self, context) -> int:
        return self.steps

    def run(self, context, progress) -> None:
        with progress.stage(self.name, total=self.steps, unit="steps") as stage:
            for i in range(self.steps):
                stage.advance(1, info=f"step {i}")
        if self.fail:
            raise ValueError(f"{self.name}: row 3, field 'lr' is not a number")
        progress.log("done")
        Path(self.folder, self.name).write_text(str(os.getpid()))


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


@pytest.mark.parametrize("workers", [1, 2])
def test_every_job_runs_once_and_reports_to_one_stage(tmp_path, workers):
    jobs = [CountingJob("a", 5, str(tmp_path)), CountingJob("b", 7, str(tmp_path)), CountingJob("c", 3, str(tmp_path))]
    progress = RecordingProgress()
    with Workers(workers) as pool:
        run_jobs(jobs, Context(config=None, base="", out=str(tmp_path)), progress, "count", "steps", pool)
        # The workers stay up for the next phase: a second call runs in the same processes.
        again = [CountingJob(name, 1, str(tmp_path / "again")) for name in ("d", "e", "f")]
        (tmp_path / "again").mkdir()
        run_jobs(again, Context(config=None, base="", out=str(tmp_path)), RecordingProgress(), "count", "steps",
                 pool)
    stage = progress.stages[0]
    assert stage.total == 15 and stage.unit == "steps"
    assert stage.name == ("count (3, 2 at a time)" if workers == 2 else "count")
    assert sum(amount for amount, _ in stage.advances) == 15
    # The info names the jobs under way and how far each is.
    assert any("a 1/5" in info for _, info in stage.advances)
    assert sorted(progress.logs) == ["a: done", "b: done", "c: done"]
    pids = {int((tmp_path / job.name).read_text()) for job in jobs}
    pids_again = {int((tmp_path / "again" / name).read_text()) for name in ("d", "e", "f")}
    if workers == 1:
        assert pids == pids_again == {os.getpid()}
    else:
        assert os.getpid() not in pids and 1 <= len(pids) <= 2 and pids_again <= pids


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_raises_its_error_in_the_parent(tmp_path, workers):
    jobs = [CountingJob("ok", 2, str(tmp_path)), CountingJob("bad", 2, str(tmp_path), fail=True)]
    with pytest.raises(ValueError, match="bad: row 3, field 'lr' is not a number"), Workers(workers) as pool:
        run_jobs(jobs, Context(config=None, base="", out=str(tmp_path)), RecordingProgress(), "count", "steps", pool)


def test_no_jobs_open_no_stage(tmp_path):
    progress = RecordingProgress()
    with Workers(2) as pool:
        assert run_jobs([], Context(config=None, base="", out=str(tmp_path)), progress, "count", "steps", pool) == 0
        assert pool._pool is None  # nothing to run: no worker was started
    assert progress.stages == []
