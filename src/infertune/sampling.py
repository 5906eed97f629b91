"""A sampling run: task x model x (n, temperatures), streamed into the sample store, resumable at any moment.

Each batch of prompts is written as one shard once all of its samples exist, so a crash loses at most the batch in
flight, and a restart samples only what is missing. Because a sample depends only on (seed, prompt, index), the
restarted run draws exactly the samples the first one would have drawn, and raising n later extends a run.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infertune.executors import EXECUTORS, open_executor
from infertune.models.base import SamplingParams
from infertune.models.loading import BACKENDS
from infertune.progress import NullProgress, Progress
from infertune.store import Sample, SampleStore, StoreError
from infertune.tasks import Problem, Task, TaskSpec


@dataclass
class SampleConfig(TaskSpec):
    """What to sample, from which model, and how."""

    model: str = field(default="tiny", metadata={
        "help": "Model: tiny, smollm2, a local transformers directory, or the served model's name with --base-url."})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter directory (peft) on top of the model."})
    backend: str = field(default="auto", metadata={
        "help": f"auto (vLLM if a GPU and vLLM are present, else hf), or one of: {BACKENDS.describe()}."})
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible server, e.g. "
                                                                 "http://127.0.0.1:8000/v1 (implies --backend openai)."})
    out: str | None = field(default=None, metadata={"help": "Run folder (default: runs/<task>-<model>)."})
    n: int = field(default=16, metadata={"help": "Samples per prompt and temperature."})
    temperatures: list[float] = field(default_factory=lambda: [1.0], metadata={"help": "Temperatures, repeatable."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest completion in tokens."})
    stop: list[str] = field(default_factory=list, metadata={"help": "Stop strings, repeatable."})
    seed: int = field(default=0, metadata={"help": "Sampling seed; sample i of a prompt depends only on it."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first LIMIT problems."})
    chat: str = field(default="auto", metadata={"help": "Format prompts with the model's chat template: auto "
                                                        "(when it has one), yes, or no."})
    batch_prompts: int = field(default=8, metadata={"help": "Prompts per sampler call and per store shard."})
    executor: str = field(default="local", metadata={
        "help": "Where sampling and reward checks run: " + "; ".join(f"{name} ({kind.summary})"
                                                                    for name, kind in EXECUTORS.items()) + "."})
    ray_address: str | None = field(default=None, metadata={
        "help": "Ray cluster to join, e.g. ray://head:10001 or auto; default: start a local one."})
    ray_workers: int | None = field(default=None, metadata={
        "help": "Sampler actors (default: one per GPU, or one per node without GPUs)."})
    ray_cpus: int | None = field(default=None, metadata={
        "help": "CPUs of the local Ray cluster that --executor ray starts (default: all)."})

    def __post_init__(self) -> None:
        if self.chat not in ("auto", "yes", "no"):
            raise ValueError(f"chat must be auto, yes or no, got {self.chat!r}")
        if self.n < 1 or self.batch_prompts < 1:
            raise ValueError("n and batch_prompts must be at least 1")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError("temperatures must be a non-empty list of numbers >= 0")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be at least 1")
        EXECUTORS.get(self.executor)  # an unknown name fails here, listing the known ones
        if self.backend != "auto":
            BACKENDS.get(self.backend)
        if self.ray_workers is not None and self.ray_workers < 1:
            raise ValueError("ray_workers must be at least 1")

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        slug = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in f"{self.task}-{self.model}")
        return Path("runs") / slug


def _missing(done: dict, problems: list[Problem], temperature: float, n: int,
             first_index: int = 0) -> dict[int, list[Problem]]:
    """Problems that still lack samples first_index .. n − 1, grouped by the first missing index (samples are written
    in index order)."""
    groups: dict[int, list[Problem]] = defaultdict(list)
    for p in problems:
        have = done.get((p.id, temperature), set())
        first = next((i for i in range(first_index, n) if i not in have), None)
        if first is not None:
            groups[first].append(p)
    return groups


def sample_run(config: SampleConfig, *, progress: Progress | None = None, only: set[str] | None = None,
               task: Task | None = None, executor=None, first_index: int = 0) -> dict:
    """Sample every missing (prompt, temperature, index) into the run's store, for indices first_index .. n − 1;
    returns a summary. ``only`` restricts the run to those prompt ids (of the first ``limit`` problems); ``task`` is
    config.task already loaded; ``executor`` one already open (else the config's is opened and closed here)."""
    task = task or config.load_task()
    progress = progress or NullProgress()
    problems = task.problems()[: config.limit] if config.limit else task.problems()
    if only is not None:
        problems = [p for p in problems if p.id in only]
    store = SampleStore(config.run_dir())
    recorded = store.meta()
    identity = {"task_spec": task.spec(), "model": config.model, "adapter": config.adapter}
    for key, value in identity.items():
        if key in recorded and recorded[key] != value:
            raise StoreError(f"{store.path}: this run was sampled with {key}={recorded[key]!r}, not {value!r}; "
                             "use another --out")
    owned = executor is None
    executor = open_executor(config) if owned else executor
    worker_info = executor.info()
    use_chat = worker_info["chat_template"]
    store.init(**identity, sampler_settings={k: v for k, v in asdict(config).items()
                                             if k in ("n", "temperatures", "top_p", "max_new_tokens", "stop", "seed",
                                                      "chat", "backend")},
               chat_template=use_chat)

    done: dict = defaultdict(set)
    for task_name, pid, temperature, index in store.keys():
        if task_name == task.name:
            done[(pid, temperature)].add(index)
    work = []
    for temperature in config.temperatures:
        for first, group in sorted(_missing(done, problems, temperature, config.n, first_index).items()):
            for start in range(0, len(group), config.batch_prompts):
                params = SamplingParams(n=config.n - first, temperature=temperature, top_p=config.top_p,
                                        max_new_tokens=config.max_new_tokens, stop=list(config.stop),
                                        seed=config.seed, start_index=first)
                work.append((group[start : start + config.batch_prompts], params))
    total = sum(len(batch) for batch, _ in work)
    written = 0
    started = time.perf_counter()
    with (executor if owned else contextlib.nullcontext()), \
            store.writer(flush_rows=10**9, flush_seconds=float("inf")) as writer, \
            progress.stage("sampling", total=total, unit="prompts") as stage:
        for (batch, params), rendered, seconds in executor.map(work):
            latency = seconds / max(1, len(batch) * params.n)
            for p, (text, completions) in zip(batch, rendered):
                for c in completions:
                    written += writer.write(Sample(
                        task=task.name, prompt_id=p.id, sample_index=c.index, temperature=float(params.temperature),
                        prompt=text, completion=c.text, seed=config.seed, num_tokens=c.num_tokens,
                        logprob_sum=c.logprob_sum, status="ok" if c.finish_reason == "stop" else "length",
                        latency_s=latency))
            writer.flush()  # one shard per batch: a crash never leaves a prompt half written
            stage.advance(len(batch), info=f"{written} samples")
    return {"rows_written": written, "prompts": len(problems), "batches": len(work),
            "seconds": time.perf_counter() - started, "run": str(store.path), "task": task}
