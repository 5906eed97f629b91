"""Cached components of the planner benchmark: the base policy (supervised on arith with the Trainer)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from infertune.models.loading import cache_dir
from infertune.tasks import load
from infertune.train import TrainConfig, Trainer

TASK_OPTIONS = ["size=6000", "numbers=4", "max_number=9", "max_target=99"]
HELD_OUT = 600  # never trained on: validation (for choices) and test (for the reported figures) come from here


def arith(options: list[str] = TASK_OPTIONS):
    return load("arith", **{k: int(v) for k, v in (o.split("=") for o in options)})


def base_model(log: Callable[[str], None] = print, steps: int = 600, batch: int = 128, lr: float = 3e-3,
               options: list[str] = TASK_OPTIONS) -> Path:
    key = json.dumps({"task": options, "steps": steps, "batch": batch, "lr": lr, "held_out": HELD_OUT, "v": 1},
                     sort_keys=True)
    folder = cache_dir() / f"planner-base-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (folder / "model" / "config.json").exists():
        return folder / "model"
    log(f"base model: supervised training, {steps} steps x {batch} problems")
    trainer = Trainer(TrainConfig(task="arith", task_option=options, objective="sft", steps=steps,
                                  batch_prompts=batch, micro_batch=batch, lr=lr, lr_schedule="cosine",
                                  warmup_steps=min(50, steps // 10), eval_prompts=HELD_OUT, n=1, k=1,
                                  max_new_tokens=16, seed=0, checkpoint_every=100, out=str(folder / "run")),
                      task=arith(options))
    trainer.run()
    tmp = folder / "model-tmp"
    trainer.save_model(tmp)
    tmp.rename(folder / "model")
    return folder / "model"


def _cached(name: str, settings: dict, options: list[str] = TASK_OPTIONS) -> Path:
    key = json.dumps({"base": options, "held_out": HELD_OUT, **settings}, sort_keys=True)
    return cache_dir() / f"planner-{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def splits(options: list[str] = TASK_OPTIONS):
    """(train, validation, test): the base's training problems, and the held-out ones split in two. Choices made
    while building the benchmark were made on validation; the reported figures come from test."""
    import numpy as np

    from infertune.tasks.splits import split_problems

    train, held_out = split_problems(arith(options), HELD_OUT)
    order = np.random.default_rng(2024).permutation(len(held_out))
    validation = [held_out[i] for i in sorted(order[:200])]
    test = [held_out[i] for i in sorted(order[200:])]
    return train, validation, test


def _sampler(path: Path):
    from infertune.models.hf import HFSampler
    from infertune.models.loading import load as load_model

    loaded = load_model(str(path))
    return HFSampler(loaded.model, loaded.tokenizer, name=str(path), max_rows=1024)


def outcome_verifier(base: Path, log: Callable[[str], None] = print, prompts: int = 600, steps: int = 300,
                     options: list[str] = TASK_OPTIONS) -> Path:
    """The learned outcome reward model (infertune's small classifier, calculator view) on the base's samples of
    training problems; its quality on samples of other training problems is kept in quality.json."""
    import numpy as np

    from infertune.models.base import SamplingParams
    from infertune.verify.learned_rm import LearnedRewardModel, RewardModelConfig, verifier_quality

    folder = _cached("orm", {"prompts": prompts, "steps": steps, "v": 1}, options)
    if (folder / "model" / "config.json").exists():
        return folder / "model"
    log(f"outcome verifier: {prompts} training problems x 16 samples, {steps} steps")
    task = arith(options)
    train, _, _ = splits(options)
    chosen = [train[i] for i in np.random.default_rng(17).choice(len(train), prompts, replace=False)]
    out = _sampler(base).sample([p.prompt for p in chosen], SamplingParams(n=16, temperature=1.0,
                                                                           max_new_tokens=16, seed=101))
    flat_p = [p for p, row in zip(chosen, out) for _ in row]
    flat_c = [c.text for row in out for c in row]
    rewards = np.array(task.rewards(flat_p, flat_c))
    cut = prompts * 3 // 4 * 16
    rm = LearnedRewardModel.fit(flat_p[:cut], flat_c[:cut], rewards[:cut], RewardModelConfig(steps=steps),
                                view="arith-calculator")
    quality = verifier_quality(rm(flat_p[cut:], flat_c[cut:]), rewards[cut:])
    rm.save(folder / "tmp-model")
    (folder / "tmp-model").rename(folder / "model")
    (folder / "quality.json").write_text(json.dumps(quality, indent=1))
    return folder / "model"


def process_verifier(base: Path, log: Callable[[str], None] = print, prompts: int = 800, rollouts: int = 16,
                     steps: int = 800, view: str = "arith-calculator", answers: int = 4,
                     options: list[str] = TASK_OPTIONS) -> Path:
    """The PRM: Monte-Carlo labels from the base's rollouts on training problems; AUC per step on held-out
    training problems in quality.json."""
    from infertune.verify.prm_labels import PRMTrainConfig, fit_prm

    settings = {"prompts": prompts, "rollouts": rollouts, "steps": steps, "v": 1}
    if (view, answers) != ("arith-calculator", 4):
        settings.update(view=view, answers=answers)
    folder = _cached("prm", settings, options)
    if (folder / "model" / "prm.json").exists():
        return folder / "model"
    train, _, _ = splits(options)
    sampler = _sampler(base)
    prm, report = fit_prm(arith(options), train[:prompts], train[prompts : prompts + 200], sampler,
                          PRMTrainConfig(answers=answers, rollouts=rollouts, temperature=1.0, max_new_tokens=16,
                                         train_steps=steps, view=view), log=log)
    prm.save(folder / "tmp-model")
    (folder / "tmp-model").rename(folder / "model")
    (folder / "quality.json").write_text(json.dumps(report, indent=1))
    return folder / "model"


def revision_model(base: Path, log: Callable[[str], None] = print, prompts: int = 2000, steps: int = 400,
                   options: list[str] = TASK_OPTIONS) -> Path:
    """The revision model: the base fine-tuned (sft on the Trainer) on its own attempts at training problems."""
    from infertune.models.loading import load as load_model
    from infertune.train.revisions import RevisionTrainConfig, collect_examples, train_revision_model

    folder = _cached("revisions", {"prompts": prompts, "steps": steps, "v": 1}, options)
    if (folder / "model" / "config.json").exists():
        return folder / "model"
    config = RevisionTrainConfig(attempts=16, temperature=1.0, max_new_tokens=16, max_context=3, per_question=4,
                                 steps=steps, batch=64, lr=1e-3)
    train, _, _ = splits(options)
    examples, summary = collect_examples(arith(options), train[1000 : 1000 + prompts], _sampler(base), config)
    log(f"revision examples: {summary}")
    loaded = load_model(str(base))
    train_revision_model(arith(options), examples, loaded.model, loaded.tokenizer, config, folder, log=log)
    (folder / "examples.json").write_text(json.dumps(summary, indent=1))
    return folder / "model"
