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
from infertune.tasks import TaskSpec
from infertune.train.revisions import RevisionTrainConfig
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
            from infertune.planning.apply import apply_plan, load_plan, stop_rule_verifier_mismatch

            plan = load_plan(config.plan)
            missing = sorted(plan.verifiers_needed() - {v.name for v in verifiers})
            if missing:
                raise ValueError(f"{config.plan}: the plan predicts difficulty or selects with verifier "
                                 f"{missing[0]!r}; add it with --verifier (have {[v.name for v in verifiers]})")
            mismatch = stop_rule_verifier_mismatch(plan, config.verifier)
            if mismatch:
                raise ValueError(f"{config.plan}: {mismatch}")
            if plan.task is not None and plan.task != task.name:
                progress.log(f"note: the plan was made on {plan.task}, applied to {task.name}")

            def sample(cfg, only, first_index=0):
                return sample_run(cfg, progress=progress, only=only, task=task, executor=executor,
                                  first_index=first_index)["task"]

            def open_policy(spec: str):
                from infertune.planning.runs import open_policy as load_policy

                return load_policy(spec, chat=config.chat != "no")

            summary = apply_plan(config, plan, sample=sample, score=score, open_policy=open_policy,
                                 verifiers=verifiers, log=progress.log)
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


@dataclass
class PRMRunConfig(TaskSpec):
    """A process reward model for a policy on a task, from Monte-Carlo rollouts (no human labels)."""

    model: str = field(default="tiny", metadata={"help": "Policy: tiny, smollm2 or a local transformers directory."})
    out: str = field(default="runs/prm", metadata={"help": "Folder the PRM and its quality report are written to."})
    prompts: int = field(default=400, metadata={"help": "Training questions whose answers are labelled."})
    held_out: int = field(default=100, metadata={"help": "Held-out questions the PRM's AUC per step is measured on."})
    answers: int = field(default=4, metadata={"help": "Policy answers labelled per question."})
    rollouts: int = field(default=8, metadata={"help": "Completions per step prefix (its label's precision)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of answers and rollouts."})
    max_new_tokens: int = field(default=32, metadata={"help": "Longest answer or rollout."})
    train_steps: int = field(default=600, metadata={"help": "Training steps of the classifier."})
    lr: float = field(default=2e-3, metadata={"help": "Peak learning rate of the classifier."})
    view: str = field(default="plain", metadata={"help": "What the PRM reads: a registered verifier view of the "
                                                         "task (plain, or e.g. arith-calculator)."})
    chat: str = field(default="auto", metadata={"help": "Chat template for the policy: auto, yes or no."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling, rollouts and the fit."})


def prm_run(config: PRMRunConfig, progress: Progress | None = None) -> dict:
    """Label, fit and measure a PRM; writes OUT (the model and prm.json) and OUT/quality.json."""
    import json

    from infertune.planning.runs import open_policy
    from infertune.tasks.splits import split_problems
    from infertune.verify.prm_labels import PRMTrainConfig, fit_prm

    progress = progress or NullProgress()
    task = config.load_task()
    train, held_out = split_problems(task, config.held_out)
    rng_order = __import__("numpy").random.default_rng(config.seed).permutation(len(train))[: config.prompts]
    policy = open_policy(config.model, chat=config.chat != "no")
    prm, report = fit_prm(task, [train[i] for i in sorted(rng_order)], held_out, policy.sampler,
                          PRMTrainConfig(answers=config.answers, rollouts=config.rollouts,
                                         temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                                         train_steps=config.train_steps, lr=config.lr, view=config.view,
                                         seed=config.seed), render=policy.render, log=progress.log)
    out = Path(config.out)
    prm.save(out)
    report["model"] = prm.describe()
    (out / "quality.json").write_text(json.dumps(report, indent=1))
    return {"out": str(out), **report}


@dataclass
class RevisionRunConfig(TaskSpec, RevisionTrainConfig):
    """A revision model fine-tuned from a policy on the policy's own attempts."""

    model: str = field(default="tiny", metadata={"help": "Policy to start from and sample attempts with."})
    out: str = field(default="runs/revisions", metadata={"help": "Folder; the model goes to OUT/model."})
    prompts: int = field(default=1000, metadata={"help": "Training questions to sample attempts on."})
    held_out: int = field(default=100, metadata={"help": "Questions kept out of training (the task's held-out "
                                                         "split, as eval and plan use)."})


def revision_run(config: RevisionRunConfig, progress: Progress | None = None) -> dict:
    """Sample attempts, build examples and train; returns a summary with the model's path."""
    from infertune.planning.runs import open_policy
    from infertune.tasks.splits import split_problems
    from infertune.train.revisions import collect_examples, train_revision_model

    progress = progress or NullProgress()
    task = config.load_task()
    train, _ = split_problems(task, config.held_out)
    policy = open_policy(config.model, chat=False)
    examples, summary = collect_examples(task, train[: config.prompts], policy.sampler, config)
    progress.log(f"revision examples: {summary['examples']} from {summary['questions_with_examples']} questions")
    loaded = policy.sampler
    path = train_revision_model(task, examples, loaded.model, loaded.tokenizer, config, Path(config.out),
                                log=progress.log)
    return {"model": str(path), **summary}
