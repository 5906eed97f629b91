"""The unit of sampling work that every executor runs: a loaded sampler that renders prompts and samples batches.

The same object runs in this process for the local executor and inside each actor for the Ray executor, so a batch
gives the same rows wherever it runs.
"""

from __future__ import annotations

import time

from infertune.models.base import SamplingParams
from infertune.tasks import Problem


class SamplingWorker:
    """Loads the model once; ``run`` renders a batch of problems (chat template or plain) and samples it."""

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
