"""Process labels without people: Monte-Carlo rollouts from every step prefix of the policy's own answers.

For an answer split into steps s_1 .. s_S, the label of the prefix s_1..s_j (j < S) is the fraction of K completions
the policy samples from it that the task's checker accepts: an unbiased estimate of P(correct | prefix) under the
policy, with variance p(1 − p)/K (Math-Shepherd's soft estimate). The whole answer (j = S) is labelled by its own
reward, which is that probability exactly. Identical prefixes (frequent: answers share their first steps) are
rolled out once. Rollouts draw sample indices 0 .. K − 1 from the prompt followed by the prefix, with their own seed,
so the labels are reproducible and independent of the samples that were labelled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from infertune.models.base import SamplingParams
from infertune.tasks.base import Problem, Task
from infertune.tasks.steps import step_format
from infertune.verify.learned_rm import verifier_quality
from infertune.verify.prm import PRMConfig, ProcessRewardModel, aggregate, auc_by_step


@dataclass(frozen=True)
class PrefixLabel:
    problem: Problem
    prefix: str
    label: float  # fraction of rollouts from the prefix that end correct (the reward itself for a whole answer)
    step: int  # 1-based step position of the prefix's last step
    steps: int  # steps in the answer it came from
    rollouts: int  # completions the label averages (0 for a whole answer)
    rollout_tokens: int  # tokens those rollouts generated


def mc_labels(task: Task, problems: Sequence[Problem], answers: Sequence[str], sampler, *, rollouts: int = 8,
              temperature: float = 1.0, max_new_tokens: int = 32, seed: int = 0, steps: str | None = None,
              render: Callable[[Problem], str] | None = None, batch: int = 256,
              progress: Callable[[int], None] | None = None) -> list[PrefixLabel]:
    """A label for every step prefix of every answer. ``sampler`` is any ``Sampler`` of the policy; ``render``
    gives the text a problem's completions continue (the chat template for chat models; default the raw prompt)."""
    if rollouts < 1:
        raise ValueError("rollouts must be at least 1")
    if len(problems) != len(answers):
        raise ValueError(f"{len(problems)} problems but {len(answers)} answers")
    fmt = step_format(steps or task.step_format)
    render = render or (lambda p: p.prompt)
    jobs: dict[tuple[str, str], Problem] = {}  # (problem id, prefix) -> problem, for prefixes short of the whole
    structure = []
    for p, a in zip(problems, answers):
        prefixes = fmt.prefixes(a)
        structure.append((p, a, prefixes))
        for prefix in prefixes[:-1]:
            jobs.setdefault((p.id, prefix), p)
    outcome: dict[tuple[str, str], tuple[float, int]] = {}
    keys = list(jobs)
    params = SamplingParams(n=rollouts, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        completions = sampler.sample([render(jobs[k]) + k[1] for k in chunk], params)
        flat_p = [jobs[k] for k in chunk for _ in range(rollouts)]
        flat_text = [k[1] + c.text for k, row in zip(chunk, completions) for c in row]
        rewards = np.asarray(task.rewards(flat_p, flat_text), dtype=np.float64).reshape(len(chunk), rollouts)
        for k, row, r in zip(chunk, completions, rewards):
            outcome[k] = (float(r.mean()), sum(c.num_tokens for c in row))
        if progress is not None:
            progress(len(chunk))
    labels = []
    credited: set[tuple[str, str]] = set()  # a shared prefix's rollout tokens are counted once
    whole_rewards = task.rewards([p for p, _, _ in structure], [a for _, a, _ in structure])
    for (p, a, prefixes), reward in zip(structure, whole_rewards):
        for j, prefix in enumerate(prefixes):
            if j == len(prefixes) - 1:
                labels.append(PrefixLabel(p, prefix, float(reward), j + 1, len(prefixes), 0, 0))
                continue
            label, tokens = outcome[(p.id, prefix)]
            first = (p.id, prefix) not in credited
            credited.add((p.id, prefix))
            labels.append(PrefixLabel(p, prefix, label, j + 1, len(prefixes), rollouts, tokens if first else 0))
    return labels


@dataclass
class PRMTrainConfig:
    """How a PRM is made from a policy: which answers are labelled, how many rollouts, and the classifier's fit."""

    answers: int = 4  # policy answers labelled per training question
    rollouts: int = 8  # K completions per step prefix
    temperature: float = 1.0
    max_new_tokens: int = 32
    train_steps: int = 600
    lr: float = 2e-3
    view: str = "plain"
    seed: int = 0


def fit_prm(task: Task, train: Sequence[Problem], held_out: Sequence[Problem], sampler, config: PRMTrainConfig, *,
            render: Callable[[Problem], str] | None = None, model=None, tokenizer=None,
            log: Callable[[str], None] = lambda message: None):
    """Label the policy's answers on ``train`` by rollouts, fit a PRM, and measure it on answers to ``held_out``
    (AUC of each step position's value against the answer's final correctness). Returns (prm, report)."""
    render = render or (lambda p: p.prompt)
    params = SamplingParams(n=config.answers, temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                            seed=config.seed + 4_242)
    answers = sampler.sample([render(p) for p in train], params)
    flat_p = [p for p, row in zip(train, answers) for _ in row]
    flat_a = [c.text for row in answers for c in row]
    log(f"PRM labels: {len(flat_a)} answers, {config.rollouts} rollouts per step prefix")
    labels = mc_labels(task, flat_p, flat_a, sampler, rollouts=config.rollouts, temperature=config.temperature,
                       max_new_tokens=config.max_new_tokens, seed=config.seed + 9_001, render=render)
    log(f"PRM fit: {len(labels)} labelled prefixes")
    prm = ProcessRewardModel.fit([x.problem for x in labels], [x.prefix for x in labels], [x.label for x in labels],
                                 PRMConfig(steps=config.train_steps, lr=config.lr, seed=config.seed),
                                 view=config.view, steps=task.step_format, model=model, tokenizer=tokenizer)
    check = sampler.sample([render(p) for p in held_out], replace(params, seed=config.seed + 5_151))
    check_p = [p for p, row in zip(held_out, check) for _ in row]
    check_a = [c.text for row in check for c in row]
    rewards = task.rewards(check_p, check_a)
    values = prm.step_scores(check_p, check_a)
    label_values = np.array([x.label for x in labels])
    report = {"answers_labelled": len(flat_a), "prefixes": len(labels),
              "rollout_tokens": int(sum(x.rollout_tokens for x in labels)),
              "mean_label": float(label_values.mean()), "held_out_answers": len(check_a),
              "held_out_accuracy": float(np.mean(rewards)), "auc_by_step": auc_by_step(values, rewards),
              "aggregate_auc": {how: verifier_quality([aggregate(v, how) for v in values], rewards)["auc"]
                                for how in ("last", "min", "prod")}}
    return prm, report
