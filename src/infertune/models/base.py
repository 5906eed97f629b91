"""What every sampler returns, and the protocol they share.

Best-of-N needs n samples per prompt; training needs their token ids and log-probabilities; resuming a run needs
sample i of a prompt to be the same whatever else was in the batch. So a sampler takes the sampling settings once,
returns for every prompt a list of ``Completion`` with text, token ids, per-token log-probs and finish reason, and
derives each sample's randomness from (seed, prompt, sample index) alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass
class SamplingParams:
    """Settings of one sampling call."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    seed: int = 0
    start_index: int = 0  # sample indices start_index .. start_index + n - 1 (to extend or resume a prompt)
    top_logprobs: int = 0  # also report this many most likely tokens per step (with temperature-1 log-probs)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.start_index < 0:
            raise ValueError("start_index must be >= 0")
        if self.top_logprobs < 0:
            raise ValueError("top_logprobs must be >= 0")


@dataclass
class Completion:
    """One sample. ``logprobs[j]`` is the model's log-probability of ``token_ids[j]`` at temperature 1 (the policy's
    own log π, whatever temperature it was sampled at); an engine that cannot return token ids leaves them empty.
    ``top_logprobs[j]`` maps the most likely token ids at step j to their log-probabilities, when asked for."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    index: int = 0
    top_logprobs: list[dict[int, float]] = field(default_factory=list)

    @property
    def logprob_sum(self) -> float:
        return float(sum(self.logprobs))

    @property
    def num_tokens(self) -> int:
        return len(self.logprobs) if not self.token_ids else len(self.token_ids)


class Sampler(Protocol):
    """Anything that draws n completions for each prompt."""

    name: str

    def sample(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]: ...
