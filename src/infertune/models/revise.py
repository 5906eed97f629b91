"""Sequential revisions (Snell et al. 2024): chains in which each attempt is conditioned on the chain's earlier ones.

A budget of N attempts is split into C parallel chains of L attempts (N = C·L). A chain's first attempt is an
ordinary sample of the policy (so C chains of length 1 are C parallel samples); attempt i > 1 is sampled from the
revision model given the question and the chain's ``window`` most recent attempts, whatever they were: at test time
nobody knows which were wrong. The chains' answers are then selected from by a verifier or majority (``planning``).

Compute is counted in tokens the models process beyond the question: every generated token, plus every token of
earlier attempts a revision re-reads in its context (the question itself is read once per prompt by any strategy
and is not charged). A serving engine that kept a chain's cache would re-read less; the count here is the upper
bound, so revisions are never credited with savings they might not get.

Randomness: first attempts are sample indices 0 .. C − 1 of the policy on the question; chain c's revisions are
sample index c of the revision model on its context, so chains are independent and identically distributed given
the prompt (also when two chains' contexts happen to coincide), which is what lets ``planning`` value C < C_max
chains by the unbiased subset estimators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from infertune.models.base import SamplingParams


@dataclass(frozen=True)
class RevisionConfig:
    chains: int  # C
    length: int  # L: attempts per chain, the first from the policy
    window: int = 2  # earlier attempts a revision sees
    temperature: float = 1.0
    max_new_tokens: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.chains < 1 or self.length < 1 or self.window < 1 or self.max_new_tokens < 1:
            raise ValueError("chains, length, window and max_new_tokens must be at least 1")


@dataclass(frozen=True)
class Attempt:
    text: str
    context: str  # the prompt it was sampled from
    generated: int  # tokens generated
    context_tokens: int  # tokens of earlier attempts re-read in the context (0 for a first attempt)
    finished: bool

    @property
    def charged(self) -> int:
        return self.generated + self.context_tokens


def revision_chains(problems: Sequence, policy, reviser, config: RevisionConfig, *,
                    render: Callable[[object], str], render_revision: Callable[[object, list[str]], str],
                    count_tokens: Callable[[str], int]) -> list[list[list[Attempt]]]:
    """attempts[p][c][i] for every problem p, chain c < C and attempt i < L. ``policy`` and ``reviser`` are
    samplers; ``render(problem)`` is the question as the policy reads it and ``render_revision(problem, attempts)``
    the revision model's context; ``count_tokens`` measures what a context re-reads beyond the question."""
    params = SamplingParams(n=config.chains, temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                            seed=config.seed)
    questions = [render(p) for p in problems]
    first = policy.sample(questions, params)
    chains = [[[Attempt(c.text, q, c.num_tokens, 0, c.finish_reason == "stop")] for c in row]
              for q, row in zip(questions, first)]
    bare = [count_tokens(render_revision(p, [])) for p in problems]
    for _ in range(1, config.length):
        for c in range(config.chains):
            contexts = [render_revision(p, [a.text for a in chains[i][c][-config.window:]])
                        for i, p in enumerate(problems)]
            out = reviser.sample(contexts, SamplingParams(n=1, temperature=config.temperature,
                                                          max_new_tokens=config.max_new_tokens, seed=config.seed,
                                                          start_index=c))
            for i, (context, row) in enumerate(zip(contexts, out)):
                sample = row[0]
                chains[i][c].append(Attempt(sample.text, context, sample.num_tokens,
                                            max(0, count_tokens(context) - bare[i]), sample.finish_reason == "stop"))
    return chains
