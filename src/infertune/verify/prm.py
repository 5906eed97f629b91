"""A process reward model: the chance that a partial answer (a prefix ending at a step) will end correct.

Trained without human labels from Monte-Carlo rollouts (``prm_labels``): a prefix's label is the fraction of the
policy's completions from it that are correct (Math-Shepherd's soft estimate), so the model learns the policy's own
value function V(prefix) = P(correct | prefix). Any ``transformers`` sequence classifier with one output can be the
model; by default it is the same small character-level classifier as the outcome reward model (``learned_rm``), which
is what the embedded default uses.

As a verifier of a whole answer it scores every step prefix (``infertune.tasks.steps``) and aggregates: ``last``
(the value of the whole answer, an outcome score), ``min`` (the weakest step) or ``prod`` (the product of step values).
Search uses ``score_prefixes`` directly on the partial answers it is choosing between.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from infertune.tasks.base import VIEWS, Problem, completion_text
from infertune.tasks.steps import step_format

AGGREGATES = ("last", "min", "prod")


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """One score for a whole answer from its step scores (in step order)."""
    if how not in AGGREGATES:
        raise ValueError(f"PRM aggregate must be one of {AGGREGATES}, got {how!r}")
    s = np.asarray(step_scores, dtype=np.float64)
    if s.size == 0:
        return 0.0
    return float(s[-1] if how == "last" else s.min() if how == "min" else np.prod(s))


@dataclass
class PRMConfig:
    """Shape and training of the default (character-level) process reward model."""

    hidden_size: int = 96
    layers: int = 2
    heads: int = 4
    steps: int = 600
    batch: int = 128
    lr: float = 2e-3
    seed: int = 0


class ProcessRewardModel:
    """Scores in (0, 1): the predicted probability that a prefix leads to a correct answer."""

    def __init__(self, model, tokenizer, *, view: str = "plain", steps: str = "blank-line",
                 aggregate: str = "last") -> None:
        from infertune import tasks  # noqa: F401 - every task registers its views

        VIEWS.get(view)
        step_format(steps)
        if aggregate not in AGGREGATES:
            raise ValueError(f"PRM aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.view, self.steps, self.aggregate = view, steps, aggregate
        self.name = "prm" if aggregate == "last" else f"prm-{aggregate}"
        self.calls = 0  # prefixes scored by the model (after de-duplication), for cost reports

    def with_aggregate(self, how: str) -> "ProcessRewardModel":
        """The same model aggregating whole answers another way (named prm, prm-min, prm-prod)."""
        return ProcessRewardModel(self.model, self.tokenizer, view=self.view, steps=self.steps, aggregate=how)

    def score_prefixes(self, problems: Sequence[Problem], prefixes: Sequence[str],
                       batch_size: int = 1024) -> np.ndarray:
        """V(prefix) for each (problem, prefix); identical pairs are scored once."""
        import torch

        if len(problems) != len(prefixes):
            raise ValueError(f"{len(problems)} problems but {len(prefixes)} prefixes")
        render = VIEWS.get(self.view)
        texts = [render(p, x) for p, x in zip(problems, prefixes)]
        unique = list(dict.fromkeys(texts))
        values: dict[str, float] = {}
        with torch.no_grad():
            for start in range(0, len(unique), batch_size):
                chunk = unique[start : start + batch_size]
                enc = self.tokenizer(chunk, return_tensors="pt", padding=True)
                logits = self.model(**enc).logits[:, 0].float()
                values.update(zip(chunk, torch.sigmoid(logits).tolist()))
        self.calls += len(unique)
        return np.array([values[t] for t in texts], dtype=np.float64)

    def step_scores(self, problems: Sequence[Problem], completions: Sequence) -> list[np.ndarray]:
        """Per answer, the value of each of its step prefixes (one batched call for all of them)."""
        fmt = step_format(self.steps)
        prefixes = [fmt.prefixes(completion_text(c)) or [""] for c in completions]
        flat_p = [p for p, row in zip(problems, prefixes) for _ in row]
        flat = self.score_prefixes(flat_p, [x for row in prefixes for x in row])
        cuts = np.cumsum([len(row) for row in prefixes])[:-1]
        return np.split(flat, cuts)

    def __call__(self, problems: Sequence[Problem], completions: Sequence) -> np.ndarray:
        """Verifier interface: one aggregated score per whole answer."""
        return np.array([aggregate(s, self.aggregate) for s in self.step_scores(problems, completions)])

    @classmethod
    def fit(cls, problems: Sequence[Problem], prefixes: Sequence[str], labels, config: PRMConfig | None = None, *,
            view: str = "plain", steps: str = "blank-line", model=None, tokenizer=None,
            progress: Callable[[int], None] | None = None) -> "ProcessRewardModel":
        """Cross-entropy against soft labels in [0, 1] (the Monte-Carlo success fractions). ``model`` and
        ``tokenizer``: any sequence classifier with one output (default: a fresh character-level one)."""
        import torch

        config = config or PRMConfig()
        y = np.asarray(labels, dtype=np.float32)
        if y.size == 0 or y.min() < 0 or y.max() > 1:
            raise ValueError("PRM labels must be a non-empty set of fractions in [0, 1]")
        if model is None:
            from transformers import LlamaForSequenceClassification

            from infertune.models.tiny import TinyConfig, build_tiny, char_tokenizer

            tokenizer = char_tokenizer()
            tokenizer.padding_side = "right"
            model = build_tiny(LlamaForSequenceClassification,
                               TinyConfig(hidden_size=config.hidden_size, layers=config.layers, heads=config.heads,
                                          intermediate_size=3 * config.hidden_size, max_positions=512,
                                          seed=config.seed), tokenizer, num_labels=1)
        elif tokenizer is None:
            raise ValueError("a PRM model needs its tokenizer")
        render = VIEWS.get(view)
        enc = tokenizer([render(p, x) for p, x in zip(problems, prefixes)], return_tensors="pt", padding=True)
        targets = torch.tensor(y)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
        rng = np.random.default_rng(config.seed)
        model.train()
        for step in range(config.steps):
            idx = torch.as_tensor(rng.choice(len(y), size=min(config.batch, len(y)), replace=False))
            logits = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx]).logits[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[idx])
            for group in optimizer.param_groups:
                group["lr"] = config.lr * 0.5 * (1 + np.cos(np.pi * step / config.steps))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress(1)
        return cls(model, tokenizer, view=view, steps=steps)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / "prm.json").write_text(json.dumps({"view": self.view, "steps": self.steps,
                                                     "aggregate": self.aggregate}))

    @classmethod
    def load(cls, folder: Path, aggregate: str | None = None) -> "ProcessRewardModel":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        folder = Path(folder)
        if not (folder / "prm.json").exists():
            raise FileNotFoundError(f"{folder}: not a process reward model (no prm.json; infertune prm writes one)")
        hf_logging.disable_progress_bar()
        meta = json.loads((folder / "prm.json").read_text())
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.padding_side = "right"
        return cls(AutoModelForSequenceClassification.from_pretrained(folder), tokenizer, view=meta["view"],
                   steps=meta["steps"], aggregate=aggregate or meta.get("aggregate", "last"))

    def describe(self) -> dict:
        return {"view": self.view, "steps": self.steps, "aggregate": self.aggregate,
                "parameters": int(sum(p.numel() for p in self.model.parameters())),
                "default_config": asdict(PRMConfig())}


def auc_by_step(step_values: Sequence[np.ndarray], rewards, max_steps: int = 8) -> list[dict]:
    """How well the PRM's value at step j predicts the answer's final correctness: ROC AUC per step position over
    answers that have that step (ties counted half), j = 1 .. max_steps, and the last step."""
    from infertune.verify.learned_rm import verifier_quality

    y = np.asarray(rewards, dtype=np.float64)
    rows = []
    for j in list(range(max_steps)) + ["last"]:
        has = [i for i, s in enumerate(step_values) if (len(s) > j if j != "last" else len(s) > 0)]
        if not has:
            continue
        s = np.array([step_values[i][-1 if j == "last" else j] for i in has])
        q = verifier_quality(s, y[has])
        rows.append({"step": j if j == "last" else j + 1, "answers": len(has), "positives": q["positives"],
                     "auc": q["auc"]})
    return rows
