"""Score a run's stored completions: extracted answers, rewards, and one score column per verifier.

Sampling and scoring are separate steps so that a slow or crashing verifier never costs samples, and so that a new
verifier can be added to an old run. The store is rewritten atomically with the new columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infertune.progress import NullProgress, Progress
from infertune.store import SampleStore, StoreError, score_column
from infertune.tasks import Task, TaskSpec, load, parse_options
from infertune.verify import build_verifier, compares_samples, describe_verifiers
from infertune.verify.verifiers import Verifier

VERIFIER_HELP = f"Verifier to add as a score column, repeatable: {describe_verifiers()}."


@dataclass
class ScoreConfig(TaskSpec):
    """What to score in a run."""

    task: str | None = field(default=None, metadata={
        "help": "Task name (e.g. arith, humaneval, reasoning-gym:gsm_symbolic); default: the one the run recorded."})
    task_option: list[str] = field(default_factory=list, metadata={
        "help": "Task option as key=value (JSON values allowed), repeatable; default: the run's recorded options."})
    verifier: list[str] = field(default_factory=lambda: ["agreement"], metadata={"help": VERIFIER_HELP})
    rescore: bool = field(default=False, metadata={"help": "Score every row again, not only unscored ones."})
    workers: int | None = field(default=None, metadata={"help": "Parallel sandboxes for code tasks (default: cores)."})


def task_for_run(store: SampleStore, config: ScoreConfig) -> Task:
    """The task named on the command line, or the one recorded in the run's metadata."""
    recorded = store.meta().get("task_spec") or {}
    if config.task is None and not recorded:
        raise ValueError(f"{store.path}: the run records no task; pass --task")
    if config.task is None or config.task == recorded.get("name"):
        options = {k: v for k, v in recorded.items() if k != "name"}
        options.update(parse_options(config.task_option))
        return load(config.task or recorded["name"], **options)
    return load(config.task, **parse_options(config.task_option))


def score_store(store: SampleStore, task: Task, verifiers: list[Verifier], *, rescore: bool = False,
                workers: int | None = None, progress: Progress | None = None,
                rewards_fn: Callable[[list, list], list[float]] | None = None) -> dict:
    """Fill answer, reward and every verifier's column; returns a summary of what was scored.

    ``rewards_fn(problems, completions)`` computes rewards elsewhere (an executor's ``rewards``, e.g. Ray tasks on
    a cluster); by default the task's checker runs here over ``workers`` processes."""
    progress = progress or NullProgress()
    table = store.read()
    if table.num_rows == 0:
        raise StoreError(f"{store.path}: the store holds no samples")
    problems = {p.id: p for p in task.problems()}
    prompt_ids = table.column("prompt_id").to_pylist()
    for i, pid in enumerate(prompt_ids):
        if pid not in problems:
            raise StoreError(f"{store.path}: row {i} has prompt_id {pid!r}, which task {task.name} does not have")
    needs = np.ones(table.num_rows, dtype=bool) if rescore else np.asarray(
        pc.is_null(table.column("reward")).to_numpy(zero_copy_only=False))
    for v in verifiers:
        col = score_column(v.name)
        if col not in table.column_names:
            needs[:] = True
        elif not rescore:
            needs |= np.asarray(pc.is_null(table.column(col)).to_numpy(zero_copy_only=False))
    rows = np.flatnonzero(needs)
    if rows.size == 0:
        return {"rows_scored": 0, "rows": table.num_rows}
    completions = [c or "" for c in table.column("completion").to_pylist()]
    batch_problems = [problems[prompt_ids[i]] for i in rows]
    batch_completions = [completions[i] for i in rows]
    progress.log(f"scoring: rewards for {rows.size} completions")
    answers = table.column("answer").to_pylist()
    rewards = table.column("reward").to_numpy(zero_copy_only=False).astype(np.float64)
    if rewards_fn is not None:
        new_rewards = rewards_fn(batch_problems, batch_completions)
    else:
        new_rewards = task.rewards(batch_problems, batch_completions, workers=workers or os.cpu_count())
    for j, i in enumerate(rows):
        answers[i] = task.extract(batch_completions[j])
        rewards[i] = new_rewards[j]
    table = _replace(table, "answer", pa.array(answers, pa.string()))
    table = _replace(table, "reward", pa.array(rewards, pa.float64()))
    temperatures = table.column("temperature").to_numpy()
    summary = {"rows_scored": int(rows.size), "rows": table.num_rows, "mean_reward": float(np.mean(new_rewards))}
    for v in verifiers:
        progress.log(f"scoring: verifier {v.name}")
        col = score_column(v.name)
        values = (table.column(col).to_numpy(zero_copy_only=False).astype(np.float64)
                  if col in table.column_names else np.full(table.num_rows, np.nan))
        # Verifiers that compare samples (agreement) must see one temperature's samples at a time, and all of a
        # prompt's samples there: when a run is extended, the old samples' scores change too.
        targets = rows
        if compares_samples(v.name):
            touched = {(prompt_ids[i], temperatures[i]) for i in rows}
            targets = np.array([i for i in range(table.num_rows) if (prompt_ids[i], temperatures[i]) in touched],
                               dtype=np.int64)
        for t in np.unique(temperatures[targets]):
            subset = targets[temperatures[targets] == t]
            values[subset] = v([problems[prompt_ids[i]] for i in subset], [completions[i] for i in subset])
        table = _replace(table, col, pa.array(values, pa.float64()))
        summary[f"mean_{col}"] = float(np.mean(values[rows]))
    store.rewrite(table)
    return summary


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def score_run(run, config: ScoreConfig, progress: Progress | None = None) -> tuple[Task, dict]:
    """Score a stored run with the task it recorded (or the one configured) and the configured verifiers."""
    store = SampleStore(run)
    task = task_for_run(store, config)
    verifiers = [build_verifier(spec, task) for spec in config.verifier]
    return task, score_store(store, task, verifiers, rescore=config.rescore, workers=config.workers,
                             progress=progress)
