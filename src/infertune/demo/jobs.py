"""The demo's independent pieces of work (fine-tuning runs, evaluations) run side by side in worker processes.

A tiny model's training step and sampling are made of small tensor operations that one core runs almost as fast as
two, so on a 2-core machine two runs at one thread each finish sooner than the same two runs one after the other at
two threads (fine-tuning: about 25 s per run against 35; see the README). Each job writes its result to disk (a
trained model, an evaluation's curves) before it returns, so an interrupted demo resumes from the jobs that
finished, and it rebuilds what it needs (problems, verifier) from the configuration and the output folder, so
nothing but small descriptions crosses a process boundary. The workers' progress comes back through a queue and is
shown as one stage with the active jobs named.
"""

from __future__ import annotations

import os
import queue as queue_module
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from infertune.progress import Progress


@dataclass(frozen=True)
class Context:
    """What every job of one demo shares: the configuration (already resolved), the base model, the output folder
    (which holds the fitted verifier), and the demo's stage functions, handed in by the demo (``run``) so that this
    module does not import it back (module-level functions cross to a worker by name)."""

    config: object  # DemoConfig
    base: str
    out: str
    fine_tune: Callable | None = None  # run.fine_tune
    evaluate: Callable | None = None  # run.evaluate
    load_model: Callable | None = None  # run.load_model


@dataclass(frozen=True)
class FineTuneJob:
    """One fine-tuning run of one arm; the trained model lands in ``folder/final``."""

    arm: tuple
    index: int
    folder: str

    @property
    def name(self) -> str:
        return f"{self.arm[0]} seed {self.index}"

    @property
    def model(self) -> Path:
        return Path(self.folder) / "final"

    def size(self, context: Context) -> int:
        return context.config.recipe.steps

    def run(self, context: Context, progress: Progress) -> None:
        config, setting, problems, verifier = _inputs(context)
        model, tok = context.fine_tune(config, setting, problems, Path(context.base), verifier, self.arm, self.index,
                                       Path(self.folder), progress)
        tmp = Path(self.folder) / ".final-tmp"
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(self.model)


@dataclass(frozen=True)
class EvalJob:
    """One model sampled on the validation or test problems; its curves land in ``evals/{name}.npz``."""

    name: str
    model: str
    temperature: float
    split: str  # "validation" or "test"

    def size(self, context: Context) -> int:
        config = context.config
        return config.validation_prompts if self.split == "validation" else config.eval_prompts

    def run(self, context: Context, progress: Progress) -> None:
        config, setting, problems, verifier = _inputs(context)
        model, tok = context.load_model(Path(self.model))
        validation = self.split == "validation"
        problem_set = problems.validation if validation else problems.test
        task = problems.validation_task if validation else problems.test_task
        curves = context.evaluate(model, tok, problem_set, task, verifier, config, setting, self.temperature,
                                  Path(context.out) / "evals" / self.name, progress, self.name)
        path = curves_path(context.out, self.name)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **curves)
        tmp.rename(path)


def _inputs(context: Context):
    """The configuration, setting, problems and fitted verifier, rebuilt from the context (cheap: the problems are
    procedural and the verifier is small)."""
    from infertune.demo.settings import get_setting
    from infertune.verify.learned_rm import LearnedRewardModel

    config = context.config
    setting = get_setting(config.setting)
    problems = setting.problems(config.seed, config.validation_prompts, config.eval_prompts)
    return config, setting, problems, LearnedRewardModel.load(Path(context.out) / "verifier")


def curves_path(out: Path | str, name: str) -> Path:
    return Path(out) / "evals" / f"{name}.npz"


def run_job(job, context: Context, progress: Progress) -> float:
    """Do one job (anything with ``name``, ``size(context)`` and ``run(context, progress)``) in whichever process
    calls it; returns its wall time in seconds."""
    started = time.perf_counter()
    job.run(context, progress)
    return time.perf_counter() - started


class _QueueProgress:
    """A worker's Progress: every advance and log line goes to the parent through ``events``."""

    def __init__(self, events, job: str) -> None:
        self.events, self.job = events, job

    def stage(self, name: str, total: float | None = None, unit: str = ""):
        return _QueueStage(self.events, self.job)

    def log(self, message: str) -> None:
        self.events.put(("log", self.job, message))


class _QueueStage:
    def __init__(self, events, job: str) -> None:
        self.events, self.job = events, job

    def advance(self, amount: float = 1, info: str = "") -> None:
        self.events.put(("advance", self.job, (amount, info)))

    def __enter__(self) -> "_QueueStage":
        return self

    def __exit__(self, *exc) -> None:
        return None


class _Board:
    """The parent's one stage: advances from every job, and the active jobs' progress as its info."""

    def __init__(self, stage, sizes: dict[str, int]) -> None:
        self.stage, self.sizes = stage, sizes
        self.done = dict.fromkeys(sizes, 0.0)
        self.active: list[str] = []

    def advance(self, job: str, amount: float) -> None:
        if job not in self.sizes:  # a late event of an earlier phase's job
            return
        amount = min(amount, self.sizes[job] - self.done[job])  # a stage that overshoots cannot overfill the bar
        self.done[job] += amount
        if job not in self.active:
            self.active.append(job)
        if self.done[job] >= self.sizes[job]:
            self.active.remove(job)
        info = "; ".join(f"{j} {self.done[j]:g}/{self.sizes[j]}" for j in self.active)
        self.stage.advance(amount, info=info)

    def finish(self, job: str) -> None:
        """A job that returned counts in full, whatever it reported on the way."""
        self.advance(job, self.sizes[job] - self.done[job])


class _BoardStage:
    def __init__(self, board: _Board, job: str) -> None:
        self.board, self.job = board, job

    def advance(self, amount: float = 1, info: str = "") -> None:
        self.board.advance(self.job, amount)

    def __enter__(self) -> "_BoardStage":
        return self

    def __exit__(self, *exc) -> None:
        return None


class _LocalProgress:
    """The in-process Progress for one job: its advances go straight to the board."""

    def __init__(self, board: _Board, parent: Progress, job: str) -> None:
        self.board, self.parent, self.job = board, parent, job

    def stage(self, name: str, total: float | None = None, unit: str = "") -> _BoardStage:
        return _BoardStage(self.board, self.job)

    def log(self, message: str) -> None:
        self.parent.log(f"{self.job}: {message}")


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class Workers:
    """Worker processes kept for the whole demo, started when first needed (each start imports torch: seconds), so
    that its phases (temperature grid, fine-tuning, evaluation) reuse them. ``count`` 0 means one per usable core;
    each worker runs torch at cores // count threads and exits by itself if the demo's process dies. Use as a
    context manager: leaving it normally lets the workers finish; leaving it on an error (a failed job, Ctrl-C)
    stops them at once (every job writes its results atomically, so a resumed demo redoes only unfinished jobs)."""

    def __init__(self, count: int = 0) -> None:
        self.cores = usable_cores()
        self.count = count or self.cores
        self.threads = max(1, self.cores // self.count)
        self._pool = self.events = None

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            spawn = multiprocessing.get_context("spawn")  # fork after torch has started its threads is unsafe
            self.events = spawn.Queue()
            self._pool = ProcessPoolExecutor(self.count, mp_context=spawn, initializer=_start_worker,
                                             initargs=(self.events, os.getpid(), self.threads))
        return self._pool

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if self._pool is None:
            return
        if kind is not None:  # a failure or an interrupt: jobs still under way are not waited for
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.events.close()
        self._pool = self.events = None


# Set once in each worker process by its initializer (a multiprocessing queue can only reach a process when it
# starts, not with each call).
_WORKER: dict = {}


def _start_worker(events, parent: int, threads: int) -> None:
    import threading

    def exit_with_parent() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:  # the demo's process is gone: nothing will read what this one writes
                os._exit(1)

    threading.Thread(target=exit_with_parent, daemon=True).start()  # first: importing torch takes seconds
    import torch

    torch.set_num_threads(threads)
    _WORKER["events"] = events


def _worker(job, context: Context) -> float:
    seconds = run_job(job, context, _QueueProgress(_WORKER["events"], job.name))
    # Results and events travel apart: this marks the end of the job's events, so none is read after its result.
    _WORKER["events"].put(("finished", job.name, None))
    return seconds


def run_jobs(jobs: list, context: Context, progress: Progress, title: str, unit: str, workers: Workers) -> float:
    """Run ``jobs`` under one progress stage, at most ``workers.count`` at a time in the worker processes (in this
    process when there is one worker or one job); returns the wall time. A job's error is raised here at once and no
    further job starts."""
    if not jobs:
        return 0.0
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):  # progress and end-of-events marks are matched by name
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"{title}: job names must differ, got {twice} more than once (repeated settings?)")
    started = time.perf_counter()
    sizes = {job.name: job.size(context) for job in jobs}
    parallel = min(workers.count, len(jobs))
    with progress.stage(f"{title} ({len(jobs)}, {parallel} at a time)" if parallel > 1 else title,
                        total=sum(sizes.values()), unit=unit) as stage:
        board = _Board(stage, sizes)
        if parallel == 1:
            for job in jobs:
                run_job(job, context, _LocalProgress(board, progress, job.name))
                board.finish(job.name)
        else:
            _run_in_pool(jobs, context, progress, board, workers)
    return time.perf_counter() - started


def _run_in_pool(jobs: list, context: Context, progress: Progress, board: _Board, workers: Workers) -> None:
    """Keep ``workers.count`` jobs submitted, no more: the pool would otherwise start queued jobs after a failure."""
    from concurrent.futures.process import BrokenProcessPool

    pool = workers.pool()
    waiting, running = list(jobs), {}
    ended: set[str] = set()  # jobs whose end-of-events mark has been read
    try:
        while waiting or running:
            while waiting and len(running) < workers.count:
                job = waiting.pop(0)
                running[pool.submit(_worker, job, context)] = job
            finished, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
            _drain(workers.events, board, progress, ended)
            for future in finished:
                job = running.pop(future)
                try:
                    future.result()  # a worker's exception is raised here
                except BrokenProcessPool as error:
                    names = ", ".join(j.name for j in [job, *running.values()])
                    raise RuntimeError(f"a worker process ended abruptly (killed, or out of memory?) while running "
                                       f"{names}; run the demo again to resume from the jobs that finished") from error
                _drain(workers.events, board, progress, ended, until=job.name)
                board.finish(job.name)
    finally:
        _drain(workers.events, board, progress, ended)


def _drain(events, board: _Board, progress: Progress, ended: set[str], until: str | None = None) -> None:
    """Show the events waiting; with ``until``, also wait for that job's end-of-events mark (giving up after 30 s
    without any event), unless it was read already (``ended`` holds the marks read so far: a drain without
    ``until`` may read a job's mark before its result is looked at)."""
    while until is None or until not in ended:
        try:
            kind, job, payload = events.get(timeout=30) if until is not None else events.get_nowait()
        except (queue_module.Empty, OSError, ValueError):  # empty, or closed after a failure
            return
        if kind == "finished":
            ended.add(job)
        elif kind == "log":
            progress.log(f"{job}: {payload}")
        else:
            board.advance(job, payload[0])
