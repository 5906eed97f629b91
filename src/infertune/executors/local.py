"""The local executor: this process samples the batches one after the other and checks rewards over a process pool."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

from infertune.executors.worker import SamplingWorker
from infertune.models.base import SamplingParams
from infertune.tasks import Problem, Task


class LocalExecutor:
    """Loads the sampler on first use, so a run that only scores never loads a model."""

    def __init__(self, model: str, *, backend: str = "auto", adapter: str | None = None,
                 base_url: str | None = None, chat: str = "auto", reward_workers: int | None = None) -> None:
        self._worker_args = dict(model=model, backend=backend, adapter=adapter, base_url=base_url, chat=chat)
        self._worker: SamplingWorker | None = None
        self.reward_workers = reward_workers

    @property
    def worker(self) -> SamplingWorker:
        if self._worker is None:
            args = dict(self._worker_args)
            self._worker = SamplingWorker(args.pop("model"), **args)
        return self._worker

    def info(self) -> dict:
        return self.worker.info()

    def map(self, work: list[tuple[list[Problem], SamplingParams]]) -> Iterator[tuple[tuple, list, float]]:
        for item in work:
            rendered, seconds = self.worker.run(*item)
            yield item, rendered, seconds

    def rewards(self, task: Task, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        return task.rewards(problems, completions, workers=self.reward_workers or os.cpu_count())

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc) -> None:
        return None
