"""A built-in synthetic set of scored samples, for trying the evaluation pipeline without a model.

It imitates what sampling a math benchmark produces, with the properties that make inference-time metrics differ:
prompts of varied difficulty, one correct answer against a long tail of wrong ones, unparseable outputs, lower
temperatures that sharpen the answer distribution (higher pass@1, less diversity), and an imperfect verifier that
is fooled by one plausible wrong answer per prompt, so Best-of-N can fall behind majority vote as N grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infertune.store import Sample, SampleStore

TASK = "synthetic-math"


@dataclass
class SyntheticConfig:
    """Size and shape of the synthetic run."""

    prompts: int = field(default=300, metadata={"help": "Number of prompts."})
    n: int = field(default=64, metadata={"help": "Samples per prompt and temperature."})
    temperatures: list[float] = field(default_factory=lambda: [0.5, 1.0],
                                      metadata={"help": "Sampling temperatures to simulate."})
    distractors: int = field(default=8, metadata={"help": "Distinct wrong answers a prompt can produce."})
    unparseable: float = field(default=0.05, metadata={"help": "Probability that a sample has no parseable answer."})
    verifier_noise: float = field(default=1.0, metadata={"help": "Noise of the simulated reward model's logit."})
    seed: int = field(default=0, metadata={"help": "Random seed; the same seed gives the same samples."})

    def __post_init__(self) -> None:
        if self.prompts < 1 or self.n < 1:
            raise ValueError("prompts and n must be at least 1")
        if not self.temperatures or any(t <= 0 for t in self.temperatures):
            raise ValueError("temperatures must be a non-empty list of positive numbers")
        if not 0.0 <= self.unparseable < 1.0:
            raise ValueError("unparseable must lie in [0, 1)")
        if self.distractors < 1:
            raise ValueError("distractors must be at least 1")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate(config: SyntheticConfig) -> list[Sample]:
    """All samples of the run, deterministic in the seed."""
    rng = np.random.default_rng(config.seed)
    ability = rng.normal(-0.4, 1.6, size=config.prompts)  # logit of pass@1 at temperature 1
    fooling = rng.normal(0.6, 0.8, size=config.prompts)  # verifier bias towards the prompt's first wrong answer
    truth = rng.integers(10, 1000, size=config.prompts)
    samples: list[Sample] = []
    for temperature in config.temperatures:
        t_rng = np.random.default_rng([config.seed, int(round(temperature * 1000))])
        p_correct = _sigmoid(ability / temperature)
        zipf = 1.0 / np.arange(1, config.distractors + 1) ** (1.2 / temperature)
        zipf /= zipf.sum()
        for p in range(config.prompts):
            correct = t_rng.random(config.n) < p_correct[p]
            wrong = t_rng.choice(config.distractors, size=config.n, p=zipf)
            parsed = t_rng.random(config.n) >= config.unparseable
            tokens = t_rng.integers(40, 200, size=config.n)
            per_token = -(0.15 + 0.35 * temperature) * t_rng.gamma(4.0, 0.25, size=config.n)
            logit = 0.8 * (2 * correct - 1) + np.where(~correct & (wrong == 0), fooling[p], 0.0)
            orm = _sigmoid(logit + config.verifier_noise * t_rng.normal(size=config.n))
            for i in range(config.n):
                if not parsed[i]:
                    answer, completion = None, "Let me think step by step... I could not finish."
                else:
                    answer = str(truth[p] if correct[i] else truth[p] + 7 * (wrong[i] + 1))
                    completion = f"Let me think step by step... so the answer is \\boxed{{{answer}}}."
                samples.append(Sample(
                    task=TASK, prompt_id=f"syn-{p:05d}", sample_index=i, temperature=float(temperature),
                    prompt=f"Synthetic problem {p}: what is the hidden number?", completion=completion,
                    seed=config.seed, num_tokens=int(tokens[i]), logprob_sum=float(per_token[i] * tokens[i]),
                    answer=answer, reward=float(parsed[i] and correct[i]), latency_s=0.0,
                    scores={"orm": float(orm[i]), "confidence": float(np.exp(per_token[i]))},
                ))
    return samples


def write_run(store: SampleStore, config: SyntheticConfig) -> int:
    """Write the synthetic run into a store (resuming if it is partly there); returns the rows added."""
    store.init(kind="synthetic", task=TASK, n=config.n, temperatures=config.temperatures, seed=config.seed)
    with store.writer(flush_rows=20_000) as writer:
        return writer.write_many(generate(config))
