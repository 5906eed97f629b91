"""Verifiers: what Best-of-N selects by. Each scores a batch of (problem, completion) pairs, higher is better.

A verifier is not the reward: the reward is what the user is judged on, a verifier is what the system can compute
at inference time without the answer key. Their disagreement is exactly what inference-aware training must cope
with, so they are kept apart and each verifier's scores get their own column in the sample store.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Protocol, Sequence

import numpy as np

from infertune.tasks.base import Problem, Task, check_batch


class Verifier(Protocol):
    """Scores completions; ``name`` becomes the store column ``score_<name>``."""

    name: str

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> np.ndarray: ...


class OracleVerifier:
    """The task's own checker: a perfect verifier (Best-of-N by it is pass@N)."""

    def __init__(self, task: Task, name: str = "oracle") -> None:
        self.task, self.name = task, name

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> np.ndarray:
        check_batch(problems, completions)
        return np.asarray(self.task.rewards(problems, completions), dtype=np.float64)


class MajorityAgreement:
    """Share of the other samples of the same problem (in the batch) that reached the same answer.

    Label-free and often strong; it needs all of a problem's samples in one batch. Unparseable answers score 0.
    Its registry entry (``infertune.verify.registry``) marks it as comparing samples.
    """

    def __init__(self, task: Task, name: str = "agreement") -> None:
        self.task, self.name = task, name

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> np.ndarray:
        check_batch(problems, completions)
        answers = [self.task.extract(c) for c in completions]
        groups: dict[str, Counter] = defaultdict(Counter)
        sizes: Counter = Counter()
        for p, a in zip(problems, answers):
            sizes[p.id] += 1
            if a is not None:
                groups[p.id][a] += 1
        scores = np.zeros(len(completions))
        for i, (p, a) in enumerate(zip(problems, answers)):
            others = sizes[p.id] - 1
            if a is not None and others > 0:
                scores[i] = (groups[p.id][a] - 1) / others
        return scores


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _render(tokenizer, problem: Problem, completion: str | None = None) -> str:
    """The prompt text as the model saw it: its chat template when it has one, else the plain prompt."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(problem.chat(), tokenize=False, add_generation_prompt=True)
    else:
        text = problem.prompt
    return text if completion is None else text + completion


class RewardModelVerifier:
    """Any transformers sequence-classification model as a reward model; the score is its logit.

    With one label the score is that logit; with two, the logit difference of label 1 over label 0 (a
    correct/incorrect classifier); with more, the logit of ``label`` (default: the last).
    """

    def __init__(self, model, tokenizer, *, name: str = "rm", batch_size: int = 8, max_length: int = 2048,
                 label: int | None = None) -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.batch_size, self.max_length, self.label = batch_size, max_length, label
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    @classmethod
    def from_pretrained(cls, path: str, **options) -> "RewardModelVerifier":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        return cls(AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path),
                   **options)

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> np.ndarray:
        import torch

        check_batch(problems, completions)
        texts = [_render(self.tokenizer, p, c) for p, c in zip(problems, completions)]
        scores = np.empty(len(texts))
        device = next(self.model.parameters()).device
        for sl in _batches(len(texts), self.batch_size):
            enc = self.tokenizer(texts[sl], return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length).to(device)
            with torch.no_grad():
                logits = self.model(**enc).logits.float()
            if logits.shape[-1] == 1:
                s = logits[:, 0]
            elif logits.shape[-1] == 2 and self.label is None:
                s = logits[:, 1] - logits[:, 0]
            else:
                s = logits[:, -1 if self.label is None else self.label]
            scores[sl] = s.cpu().numpy()
        return scores


class SelfConfidence:
    """The policy's own confidence in a completion, from a causal LM.

    mode="mean_logprob": the mean token log-probability of the completion given the prompt (length-normalised,
    so long answers are not punished for being long). mode="p_true": the probability the model gives to " True"
    over " False" when asked whether the answer above is correct (Kadavath et al. 2022).
    """

    P_TRUE_QUESTION = "\n\nIs the answer above correct? Answer True or False.\nAnswer:"

    def __init__(self, model, tokenizer, *, mode: str = "mean_logprob", name: str | None = None,
                 batch_size: int = 8) -> None:
        if mode not in ("mean_logprob", "p_true"):
            raise ValueError(f"mode must be 'mean_logprob' or 'p_true', got {mode!r}")
        self.model, self.tokenizer, self.mode = model.eval(), tokenizer, mode
        self.name = name or ("confidence" if mode == "mean_logprob" else "p_true")
        self.batch_size = batch_size

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> np.ndarray:
        check_batch(problems, completions)
        if self.mode == "mean_logprob":
            return np.array([self._mean_logprob(p, c) for p, c in zip(problems, completions)])
        return self._p_true(problems, completions)

    def _mean_logprob(self, problem: Problem, completion: str) -> float:
        import torch

        prompt_ids = self.tokenizer(_render(self.tokenizer, problem), add_special_tokens=False)["input_ids"]
        completion_ids = self.tokenizer(completion, add_special_tokens=False)["input_ids"]
        if not completion_ids:
            return float("-inf")
        ids = torch.tensor([prompt_ids + completion_ids], device=next(self.model.parameters()).device)
        with torch.no_grad():
            logits = self.model(ids).logits.float()
        logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
        targets = ids[0, 1:]
        token_lp = logprobs.gather(1, targets[:, None])[:, 0]
        return float(token_lp[len(prompt_ids) - 1 :].mean())

    def _p_true(self, problems: Sequence[Problem], completions: Sequence[str]) -> np.ndarray:
        import torch

        true_id = self.tokenizer(" True", add_special_tokens=False)["input_ids"][-1]
        false_id = self.tokenizer(" False", add_special_tokens=False)["input_ids"][-1]
        out = np.empty(len(completions))
        device = next(self.model.parameters()).device
        for i, (p, c) in enumerate(zip(problems, completions)):
            text = _render(self.tokenizer, p, c) + self.P_TRUE_QUESTION
            ids = torch.tensor([self.tokenizer(text, add_special_tokens=False)["input_ids"]], device=device)
            with torch.no_grad():
                last = self.model(ids).logits[0, -1].float()
            pair = torch.log_softmax(last[[true_id, false_id]], dim=-1)
            out[i] = float(pair[0].exp())
        return out
