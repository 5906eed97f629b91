"""A small learned reward model: a character-level transformer classifier fitted on a policy's own samples.

This is the outcome reward model of the Best-of-N literature at laptop scale: it reads the prompt and the
completion and predicts whether the completion is correct, having learned only from labelled samples: an imperfect
verifier for the right reasons, unlike a hand-made noisy score. What it reads is a *view* of the pair, registered by
the task it belongs to (``infertune.tasks.base.VIEWS``): ``plain`` (prompt and completion), or a task's own, such as
arith's calculator view.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy.stats import rankdata

from infertune.tasks.base import VIEWS, Problem


@dataclass
class RewardModelConfig:
    hidden_size: int = 96
    layers: int = 2
    heads: int = 4
    steps: int = 400
    batch: int = 128
    lr: float = 2e-3
    seed: int = 0


def _view(name: str):
    from infertune import tasks  # noqa: F401 - every task registers its views

    return VIEWS.get(name)


class LearnedRewardModel:
    """Scores in (0, 1): the classifier's probability that a completion is correct."""

    name = "learned"

    def __init__(self, model, tokenizer, view: str = "plain", config: RewardModelConfig | None = None) -> None:
        _view(view)  # an unknown view fails here, listing the known ones
        self.model, self.tokenizer, self.view = model.eval(), tokenizer, view
        self.config = config  # how it was fitted (None when loaded from a folder that did not record it)

    def __call__(self, problems: Sequence[Problem], completions: Sequence, batch_size: int = 1024) -> np.ndarray:
        import torch

        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        texts = [_view(self.view)(p, c) for p, c in zip(problems, completions)]
        out = np.empty(len(texts))
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True)
                logits = self.model(**enc).logits[:, 0].float()
                out[start : start + batch_size] = torch.sigmoid(logits).numpy()
        return out

    @classmethod
    def fit(cls, problems: Sequence[Problem], completions: Sequence, rewards,
            config: RewardModelConfig | None = None, view: str = "plain",
            progress: Callable[[int], None] | None = None) -> "LearnedRewardModel":
        """Binary cross-entropy on (prompt + completion, reward), positives re-weighted to balance the classes."""
        import torch
        from transformers import LlamaForSequenceClassification

        from infertune.models.tiny import TinyConfig, build_tiny, char_tokenizer

        config = config or RewardModelConfig()
        y = np.asarray(rewards, dtype=np.float32)
        if y.min() == y.max():
            raise ValueError("cannot fit a reward model: every training sample has the same reward")
        tok = char_tokenizer()
        tok.padding_side = "right"
        model = build_tiny(LlamaForSequenceClassification,
                           TinyConfig(hidden_size=config.hidden_size, layers=config.layers, heads=config.heads,
                                      intermediate_size=3 * config.hidden_size, max_positions=256, seed=config.seed),
                           tok, num_labels=1)
        texts = [_view(view)(p, c) for p, c in zip(problems, completions)]
        enc = tok(texts, return_tensors="pt", padding=True)
        labels = torch.tensor(y)
        pos_weight = torch.tensor(float((1 - y).sum() / max(y.sum(), 1.0)))
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
        rng = np.random.default_rng(config.seed)
        model.train()
        for step in range(config.steps):
            idx = torch.as_tensor(rng.choice(len(texts), size=min(config.batch, len(texts)), replace=False))
            logits = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx]).logits[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[idx], pos_weight=pos_weight)
            lr = config.lr * 0.5 * (1 + np.cos(np.pi * step / config.steps))
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress(1)
        return cls(model, tok, view=view, config=config)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / "view.txt").write_text(self.view)
        if self.config is not None:
            (folder / "fit_config.json").write_text(json.dumps(asdict(self.config)))

    @classmethod
    def load(cls, folder: Path) -> "LearnedRewardModel":
        from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        view = (folder / "view.txt").read_text().strip() if (folder / "view.txt").exists() else "plain"
        fitted = folder / "fit_config.json"
        config = RewardModelConfig(**json.loads(fitted.read_text())) if fitted.exists() else None
        return cls(AutoModelForSequenceClassification.from_pretrained(folder),
                   PreTrainedTokenizerFast.from_pretrained(folder), view=view, config=config)

    def describe(self) -> dict:
        return {"kind": "character-level transformer classifier", "view": self.view,
                "parameters": int(sum(p.numel() for p in self.model.parameters())),
                "config": asdict(self.config) if self.config is not None else None}


def verifier_quality(scores, rewards) -> dict:
    """Accuracy at 0.5, precision and recall of 'correct', and ROC AUC (ties counted half)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(rewards, dtype=np.float64).ravel() > 0.5
    predicted = s >= 0.5
    pos, neg = s[y], s[~y]
    if pos.size and neg.size:
        ranks = rankdata(np.concatenate([neg, pos]))  # average ranks over ties
        auc = (ranks[neg.size:].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size)
    else:
        auc = float("nan")
    return {
        "accuracy": float(np.mean(predicted == y)),
        "precision": float(np.mean(y[predicted])) if predicted.any() else float("nan"),
        "recall": float(np.mean(predicted[y])) if y.any() else float("nan"),
        "auc": float(auc),
        "positives": int(y.sum()),
        "samples": int(y.size),
    }
