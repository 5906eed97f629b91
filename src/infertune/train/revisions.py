"""Fine-tune a revision model on the policy's own attempts (Snell et al.'s recipe on infertune's one trainer).

Sample n attempts per training question from the policy, grade them, turn questions with both right and wrong
attempts into examples (``infertune.tasks.revisions``: context = the question and up to a few wrong attempts,
target = a correct attempt), and train a copy of the policy on them with the ``sft`` objective of ``Trainer``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from infertune.models.base import SamplingParams
from infertune.tasks import Problem, Task
from infertune.tasks.revisions import RevisionExample, RevisionTask, revision_examples
from infertune.train.config import TrainConfig
from infertune.train.loop import Trainer


@dataclass
class RevisionTrainConfig:
    """How the revision model is made."""

    attempts: int = field(default=16, metadata={"help": "Policy attempts sampled per training question."})
    temperature: float = field(default=1.0, metadata={"help": "Temperature of those attempts."})
    max_new_tokens: int = field(default=32, metadata={"help": "Longest attempt."})
    max_context: int = field(default=3, metadata={"help": "Most wrong attempts shown in one example's context."})
    per_question: int = field(default=4, metadata={"help": "Examples drawn per question."})
    steps: int = field(default=300, metadata={"help": "Supervised steps."})
    batch: int = field(default=64, metadata={"help": "Examples per step."})
    lr: float = field(default=1e-3, metadata={"help": "Peak learning rate (cosine decay)."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling, example choice and training."})


def collect_examples(task: Task, problems: Sequence[Problem], sampler, config: RevisionTrainConfig, *,
                     render: Callable[[Problem], str] | None = None) -> tuple[list[RevisionExample], dict]:
    """Sample the policy's attempts on ``problems`` and build revision examples; also a summary of the data."""
    render = render or (lambda p: p.prompt)
    out = sampler.sample([render(p) for p in problems], SamplingParams(
        n=config.attempts, temperature=config.temperature, max_new_tokens=config.max_new_tokens,
        seed=config.seed + 7_777))
    texts = [[c.text for c in row] for row in out]
    rewards = np.asarray(task.rewards([p for p, row in zip(problems, texts) for _ in row],
                                      [t for row in texts for t in row]), dtype=np.float64)
    rewards = rewards.reshape(len(problems), config.attempts)
    rng = np.random.default_rng([config.seed, 31])
    examples: list[RevisionExample] = []
    for p, row, r in zip(problems, texts, rewards):
        examples.extend(revision_examples(p, row, r, rng, max_context=config.max_context,
                                          per_problem=config.per_question))
    summary = {"questions": len(problems), "attempts": int(rewards.size), "attempt_accuracy": float(rewards.mean()),
               "questions_with_examples": len({e.problem.id for e in examples}), "examples": len(examples)}
    return examples, summary


def train_revision_model(task: Task, examples: Sequence[RevisionExample], model, tokenizer,
                         config: RevisionTrainConfig, out: Path,
                         log: Callable[[str], None] | None = None) -> Path:
    """Train ``model`` (a copy of the policy) on the examples; saves it to ``out``/model and returns that path."""
    if len(examples) < 2:
        raise ValueError(f"{len(examples)} revision examples: the policy needs questions it sometimes solves and "
                         "sometimes does not; sample more attempts or more questions")
    revision_task = RevisionTask(task, examples)
    trainer = Trainer(TrainConfig(task=task.name, objective="sft", steps=config.steps, batch_prompts=config.batch,
                                  micro_batch=config.batch, lr=config.lr, lr_schedule="cosine",
                                  warmup_steps=min(20, config.steps // 10), eval_prompts=1, n=1, k=1,
                                  max_new_tokens=config.max_new_tokens, seed=config.seed, checkpoint_every=0,
                                  out=str(out / "run")),
                      model=model, tokenizer=tokenizer, task=revision_task, log=log)
    trainer.run()
    final = out / "model"
    trainer.save_model(final)
    (out / "revision.json").write_text(__import__("json").dumps({"config": asdict(config),
                                                                 "examples": len(examples)}, indent=1))
    return final
