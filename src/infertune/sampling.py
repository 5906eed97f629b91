"""A sampling run: task x model x (n, temperatures), streamed into the sample store, resumable at any moment.

Each batch of prompts is written as one shard once all of its samples exist, so a crash loses at most the batch in
flight, and a restart samples only what is missing. Because a sample depends only on (seed, prompt, index), the
restarted run draws exactly the samples the first one would have drawn, and raising n later extends a run.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from infertune.models.base import SamplingParams
from infertune.scoring import parse_options
from infertune.store import Sample, SampleStore, StoreError
from infertune.tasks import Problem, Task, load


@dataclass
class SampleConfig:
    """What to sample, from which model, and how."""

    task: str = field(default="arith", metadata={"help": "Task name, e.g. arith, humaneval, champ, "
                                                         "reasoning-gym:basic_arithmetic, jsonl:PATH."})
    task_option: list[str] = field(default_factory=list, metadata={
        "help": "Task option as key=value (JSON values allowed), repeatable, e.g. size=200."})
    model: str = field(default="tiny", metadata={
        "help": "Model: tiny, smollm2, a local transformers directory, or the served model's name with --base-url."})
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter directory (peft) on top of the model."})
    backend: str = field(default="auto", metadata={"help": "auto (vLLM if a GPU and vLLM are present), hf, vllm, "
                                                           "or openai."})
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
        "help": "local (this process) or ray (sampler actors and verification tasks on a Ray cluster; needs "
                "infertune[ray])."})
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
        if self.executor not in ("local", "ray"):
            raise ValueError(f"executor must be local or ray, got {self.executor!r}")
        if self.ray_workers is not None and self.ray_workers < 1:
            raise ValueError("ray_workers must be at least 1")

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        slug = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in f"{self.task}-{self.model}")
        return Path("runs") / slug


@dataclass
class EvalRunConfig(SampleConfig):
    """A sampling run, then scoring and the report."""

    verifier: list[str] = field(default_factory=lambda: ["agreement"], metadata={
        "help": "Verifier columns to add, repeatable: oracle, agreement, rm=PATH, confidence=PATH, p_true=PATH."})
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples of prompts for the intervals."})
    policy: str | None = field(default=None, metadata={
        "help": "Apply a test-time policy (plan's policy.json) instead of sampling n: probe each prompt, predict "
                "its difficulty, then sample and select by its bin's strategy."})


def _missing(done: dict, problems: list[Problem], temperature: float, n: int) -> dict[int, list[Problem]]:
    """Problems that still lack samples, grouped by the first missing index (samples are written in index order)."""
    groups: dict[int, list[Problem]] = defaultdict(list)
    for p in problems:
        have = done.get((p.id, temperature), set())
        first = next((i for i in range(n) if i not in have), None)
        if first is not None:
            groups[first].append(p)
    return groups


class SamplingWorker:
    """A loaded sampler that renders prompts (chat template or plain) and samples batches of them; the same object
    runs in-process for the local executor and inside each Ray actor for the Ray executor."""

    def __init__(self, model: str, *, backend: str = "auto", adapter: str | None = None,
                 base_url: str | None = None, chat: str = "auto") -> None:
        from infertune.models.loading import load_sampler

        self.sampler, self.loaded = load_sampler(model, backend=backend, adapter=adapter, base_url=base_url,
                                                 chat=False)
        self.use_chat = chat == "yes"
        if chat == "auto":
            self.use_chat = bool(self.loaded is not None and self.loaded.has_chat_template)
        if self.use_chat and self.loaded is not None:
            self.sampler.add_special_tokens = False
        elif self.use_chat and base_url:
            self.sampler.chat = True

    def info(self) -> dict:
        return {"chat_template": self.use_chat}

    def render(self, problem: Problem) -> str:
        if self.use_chat and self.loaded is not None:
            return self.loaded.tokenizer.apply_chat_template(problem.chat(), tokenize=False,
                                                             add_generation_prompt=True)
        return problem.prompt

    def run(self, batch: list[Problem], params: SamplingParams) -> tuple[list, float]:
        """[(rendered prompt, completions)] for each problem, and the seconds the sampler took."""
        texts = [self.render(p) for p in batch]
        t0 = time.perf_counter()
        outputs = self.sampler.sample(texts, params)
        return list(zip(texts, outputs)), time.perf_counter() - t0


class LocalExecutor:
    """Samples the batches one after the other in this process."""

    def __init__(self, config: SampleConfig) -> None:
        self.worker = SamplingWorker(config.model, backend=config.backend, adapter=config.adapter,
                                     base_url=config.base_url, chat=config.chat)

    def info(self) -> dict:
        return self.worker.info()

    def map(self, work: list[tuple[list[Problem], SamplingParams]]) -> Iterator[tuple[tuple, list, float]]:
        for item in work:
            rendered, seconds = self.worker.run(*item)
            yield item, rendered, seconds

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc) -> None:
        return None


def _executor(config: SampleConfig):
    if config.executor == "ray":
        from infertune.ray_executor import RayExecutor

        return RayExecutor(config)
    return LocalExecutor(config)


def sample_run(config: SampleConfig, *, progress: Callable[[int, int], None] | None = None,
               only: set[str] | None = None, task: Task | None = None) -> dict:
    """Sample every missing (prompt, temperature, index) into the run's store; returns a summary. ``only`` restricts
    the run to those prompt ids (of the first ``limit`` problems); ``task`` is config.task already loaded."""
    task = task or load(config.task, **parse_options(config.task_option))
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
    executor = _executor(config)
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
        for first, group in sorted(_missing(done, problems, temperature, config.n).items()):
            for start in range(0, len(group), config.batch_prompts):
                params = SamplingParams(n=config.n - first, temperature=temperature, top_p=config.top_p,
                                        max_new_tokens=config.max_new_tokens, stop=list(config.stop),
                                        seed=config.seed, start_index=first)
                work.append((group[start : start + config.batch_prompts], params))
    total = sum(len(batch) for batch, _ in work)
    written = 0
    started = time.perf_counter()
    with executor, store.writer(flush_rows=10**9, flush_seconds=float("inf")) as writer:
        finished = 0
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
            finished += len(batch)
            if progress:
                progress(finished, total)
    return {"rows_written": written, "prompts": len(problems), "batches": len(work),
            "seconds": time.perf_counter() - started, "run": str(store.path), "task": task}
