"""Sampling and verification on a Ray cluster, streaming into the same store as a local run.

The driver keeps everything that must happen once: it decides which (prompt, index) samples are missing and writes
each finished batch as one store shard. Ray only runs the work: sampler actors (one per GPU, or per node without
GPUs; vLLM where the backend selects it) take batches, and sandboxed reward checks run as Ray tasks. Because a
sample depends only on (seed, prompt, index), a batch that Ray retries after a worker dies produces exactly the
same rows, and since only the driver writes, rows are neither lost nor duplicated. At most ``in_flight`` batches
per actor are queued at a time (back-pressure: a slow cluster never holds the whole run in memory). Requires the
optional extra ``infertune[ray]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infertune.sampling import SampleConfig
    from infertune.tasks import Problem, Task


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--executor ray needs Ray: pip install 'infertune[ray]'") from exc
    return ray


class RaySession:
    """Joins the cluster at ``address`` (or starts a local one with ``num_cpus``) unless Ray is already up; shuts
    down only what it started."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        ray = _ray()
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address} if address else {
                "num_cpus": num_cpus, "include_dashboard": False}
            ray.init(log_to_driver=False, **kwargs)
            self.started = True

    def close(self) -> None:
        if self.started:
            _ray().shutdown()
            self.started = False

    def __enter__(self) -> "RaySession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_workers() -> tuple[int, dict]:
    """(sampler actors, resources per actor): one per GPU where the cluster has GPUs, else one per node with the
    node's CPUs."""
    ray = _ray()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        return gpus, {"num_gpus": 1}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = min(int(n["Resources"].get("CPU", 1)) for n in nodes) if nodes else 1
    return max(1, len(nodes)), {"num_cpus": max(1, cpus)}


class RayExecutor:
    """The Ray counterpart of ``executors.local.LocalExecutor``: ``map`` yields finished batches as they complete,
    ``rewards`` checks completions as Ray tasks. Sampler actors start on first use, so scoring alone starts none."""

    def __init__(self, config: "SampleConfig", *, in_flight: int = 2) -> None:
        self.config = config
        self.in_flight = in_flight
        self.session = RaySession(config.ray_address, config.ray_cpus)
        self.actors: list = []
        self._info: dict | None = None

    def _start_actors(self) -> None:
        from infertune.executors.worker import SamplingWorker

        ray, config = _ray(), self.config
        try:
            count, resources = default_workers()
            if config.ray_workers:
                count = config.ray_workers
                if "num_cpus" in resources:  # share the node's CPUs between the actors asked for
                    total = int(ray.cluster_resources().get("CPU", 1))
                    resources = {"num_cpus": max(1, total // count)}
            # A killed actor is restarted and its queued calls retried: same seeds, same rows.
            actor = ray.remote(max_restarts=-1, max_task_retries=-1, **resources)(SamplingWorker)
            self.actors = [actor.remote(config.model, backend=config.backend, adapter=config.adapter,
                                        base_url=config.base_url, chat=config.chat) for _ in range(count)]
            self._info = ray.get(self.actors[0].info.remote())
        except BaseException:
            self.session.close()
            raise

    def info(self) -> dict:
        if self._info is None:
            self._start_actors()
        return self._info

    def rewards(self, task: "Task", problems: Sequence["Problem"], completions: Sequence[str]) -> list[float]:
        return ray_rewards(task, problems, completions)

    def map(self, work: list) -> Iterator[tuple[tuple, list, float]]:
        ray = _ray()
        if not self.actors:
            self._start_actors()
        pending: dict = {}  # object ref -> (work item, actor index)
        load = [0] * len(self.actors)
        queue = list(work)
        queue.reverse()
        while queue or pending:
            while queue and min(load) < self.in_flight:
                a = load.index(min(load))
                item = queue.pop()
                pending[self.actors[a].run.remote(*item)] = (item, a)
                load[a] += 1
            [ready], _ = ray.wait(list(pending), num_returns=1)
            item, a = pending.pop(ready)
            load[a] -= 1
            rendered, seconds = ray.get(ready)
            yield item, rendered, seconds

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        ray = _ray()
        for actor in self.actors:
            ray.kill(actor)
        self.session.close()


def _reward_chunk(task: "Task", problems: list, completions: list[str]) -> list[float]:
    return task.rewards(problems, completions, workers=1)


def ray_rewards(task: "Task", problems: Sequence["Problem"], completions: Sequence[str], *,
                chunk: int = 16, in_flight: int | None = None) -> list[float]:
    """Rewards computed as Ray tasks of ``chunk`` completions each (one CPU each; sandboxed where the task runs
    code), at most ``in_flight`` at a time (default: twice the cluster's CPUs). Ray retries a chunk whose worker
    died; a checker is a pure function of its input, so a retry gives the same rewards."""
    ray = _ray()
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
    remote = ray.remote(num_cpus=1, max_retries=-1)(_reward_chunk)
    task_ref = ray.put(task)
    limit = in_flight or 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    starts = list(range(0, len(problems), chunk))
    results: dict[int, list[float]] = {}
    pending: dict = {}
    next_chunk = 0
    while next_chunk < len(starts) or pending:
        while next_chunk < len(starts) and len(pending) < limit:
            s = starts[next_chunk]
            ref = remote.remote(task_ref, list(problems[s : s + chunk]), list(completions[s : s + chunk]))
            pending[ref] = s
            next_chunk += 1
        [ready], _ = ray.wait(list(pending), num_returns=1)
        results[pending.pop(ready)] = ray.get(ready)
    return [r for s in starts for r in results[s]]


__all__ = ["RayExecutor", "RaySession", "default_workers", "ray_rewards"]
