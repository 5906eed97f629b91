"""The workflows behind the commands: each composes library steps (sample, score, evaluate, train, plan) and
returns what it computed. The command line only builds a config, calls one of these and renders the result, so
everything a command does can be done, and tested, from Python.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from infertune.evaluation import EvalConfig
from infertune.executors import open_executor
from infertune.progress import NullProgress, Progress
from infertune.report import Report, ReportConfig, build_report
from infertune.sampling import SampleConfig, sample_run
from infertune.scoring import VERIFIER_HELP, score_store
from infertune.store import SampleStore
from infertune.verify import build_verifier


@dataclass
class EvalRunConfig(SampleConfig, EvalConfig):
    """A sampling run, then scoring and the report (or, with --plan, a saved test-time plan applied)."""

    verifier: list[str] = field(default_factory=lambda: ["agreement"], metadata={"help": VERIFIER_HELP})
    plan: str | None = field(default=None, metadata={
        "help": "Apply a saved test-time plan (infertune plan's RUN/plan/plan.json) instead of sampling n: probe "
                "each prompt, predict its difficulty, then sample and select by its bin's strategy."})

    def __post_init__(self) -> None:
        SampleConfig.__post_init__(self)
        EvalConfig.__post_init__(self)


@dataclass
class EvalOutcome:
    sampled: dict
    scored: dict
    report: Report | None = None
    applied_plan: dict | None = None


def eval_run(config: EvalRunConfig, progress: Progress | None = None) -> EvalOutcome:
    """Sample (resuming what is stored), score with the task's checker and every verifier, and report every curve;
    with ``config.plan``, apply the plan to the task's prompts instead."""
    progress = progress or NullProgress()
    task = config.load_task()
    verifiers = [build_verifier(spec, task) for spec in config.verifier]
    store = SampleStore(config.run_dir())
    scored: dict = {}
    with open_executor(config) as executor:

        def score() -> None:
            scored.update(score_store(store, task, verifiers, progress=progress,
                                      rewards_fn=functools.partial(executor.rewards, task)))

        if config.plan:
            from infertune.planning.apply import apply_plan, load_plan

            plan = load_plan(config.plan)
            if plan.verifier not in {v.name for v in verifiers}:
                raise ValueError(f"{config.plan}: the plan predicts difficulty and selects with verifier "
                                 f"{plan.verifier!r}; add it with --verifier (have {[v.name for v in verifiers]})")
            if plan.task is not None and plan.task != task.name:
                progress.log(f"note: the plan was made on {plan.task}, applied to {task.name}")

            def sample(cfg, only, first_index=0):
                return sample_run(cfg, progress=progress, only=only, task=task, executor=executor,
                                  first_index=first_index)["task"]

            summary = apply_plan(config, plan, sample=sample, score=score, log=progress.log)
            return EvalOutcome(sampled={}, scored=scored, applied_plan=summary)
        sampled = sample_run(config, progress=progress, task=task, executor=executor)
        score()
    report = build_report(store.path, ReportConfig(bootstrap=config.bootstrap, confidence=config.confidence,
                                                   weighted_aggregate=config.weighted_aggregate,
                                                   mc_samples=config.mc_samples, seed=config.seed))
    return EvalOutcome(sampled=sampled, scored=scored, report=report)


@dataclass
class TrainOutcome:
    before: dict | None
    after: dict
    model_dir: Path
    log_path: Path
    trainer: object


def train_run(config, progress: Progress | None = None) -> TrainOutcome:
    """Fine-tune (resuming from the newest checkpoint), with held-out evaluation before (on a fresh run) and after,
    and save the final model into RUN/final."""
    from infertune.train import Trainer, progress_line

    progress = progress or NullProgress()
    trainer = Trainer(config, log=progress.log)
    fresh = trainer.step == 0 and not trainer.load_checkpoint()
    before = trainer.evaluate() if fresh else None
    with progress.stage("training", total=config.steps, unit="steps") as stage:
        if trainer.step:
            stage.advance(trainer.step)
        trainer.run(progress=lambda row: stage.advance(1, info=progress_line(row, config.k)))
    after = trainer.evaluate()
    trainer.save_model(trainer.dir / "final")
    return TrainOutcome(before, after, trainer.dir / "final", trainer.dir / "train_log.csv", trainer)


def sandbox_doctor(self_test: bool = True):
    """Which sandbox protections model-written code gets on this machine, a hostile self-test, and advice."""
    from infertune.tasks.grading.doctor import diagnose

    return diagnose(self_test=self_test)


def allow_unisolated_runs() -> None:
    """Let model-written code run with resource limits only where no isolation works (``--allow-unisolated``)."""
    from infertune.tasks.grading.isolation import allow_unisolated_runs as allow

    allow()
