"""Where sampling and reward checking run: in this process (``local``) or on a Ray cluster (``ray``).

Both give the same interface, used as a context manager: ``info()`` (whether prompts get a chat template),
``map(work)`` yielding each finished batch of (problems, sampling parameters) with its rendered prompts and
completions, and ``rewards(task, problems, completions)``. The sampling run and the scoring step take an executor
and never ask which one it is; only the driver writes the store, so both resume the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from infertune.registry import Registry


@dataclass(frozen=True)
class ExecutorKind:
    name: str
    open: Callable[[Any], Any]  # config (a SampleConfig) -> executor
    summary: str


EXECUTORS: Registry[ExecutorKind] = Registry("executor")


def _local(config):
    from infertune.executors.local import LocalExecutor

    return LocalExecutor(config.model, backend=config.backend, adapter=config.adapter, base_url=config.base_url,
                         chat=config.chat)


def _ray(config):
    from infertune.executors.ray_cluster import RayExecutor

    return RayExecutor(config)


EXECUTORS.register("local", ExecutorKind("local", _local, "this process"))
EXECUTORS.register("ray", ExecutorKind("ray", _ray, "sampler actors and reward tasks on a Ray cluster "
                                                    "(needs infertune[ray])"))


def open_executor(config):
    """The executor ``config.executor`` names, built from a sampling config."""
    return EXECUTORS.get(config.executor).open(config)
