"""One training loop for every objective: sample n per prompt, score, weight, ascend Σ w_i log π(y_i|x).

Per step: draw a batch of training prompts, sample n completions each with the current policy, compute rewards and
verifier scores, turn them into per-sample weights with the chosen objective (``infertune.objectives``), and take a
step on −Σ w_i log π(y_i|x) plus β·KL(π‖anchor), where the anchor is an exponential moving average of the policy and β
is annealed linearly (Chow et al.). Objectives on reference answers (sft, dco, bon-sft) add the reference as an extra
sequence. Sampling is seeded per step, so a run resumed from a checkpoint reproduces the uninterrupted one exactly.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from infertune.estimators import bon_curve, maj_curve, pass_curve
from infertune.models.base import SamplingParams
from infertune.objectives import bon_sft_weights, dco_factor, get, sample_weights
from infertune.scoring import parse_options
from infertune.tasks import Problem, Task, load

REFERENCE_OBJECTIVES = ("sft", "dco", "bon-sft")
LOG_FIELDS = ["step", "loss", "objective_loss", "kl", "kl_coef", "lr", "grad_norm", "reward", "pass_at_k", "bon_at_k",
              "entropy", "sequences", "tokens", "collect_seconds", "update_seconds", "seconds"]


@dataclass
class Batch:
    """One step's samples and the sequences to push on: prompt ids, completion ids, weight, DCO flag."""

    completions: list
    rewards: np.ndarray
    scores: np.ndarray
    row_prompts: list[list[int]] = field(default_factory=list)  # prompt ids of each row of completions
    prompts: list[list[int]] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    dco: list[bool] = field(default_factory=list)
    collect_seconds: float = 0.0

    def add(self, prompt: list[int], tokens: list[int], weight: float, dco: bool = False) -> None:
        self.prompts.append(prompt)
        self.tokens.append(tokens)
        self.weights.append(weight)
        self.dco.append(dco)


@dataclass
class TrainConfig:
    """A training run. Defaults suit the tiny model on arith on a laptop CPU."""

    task: str = field(default="arith", metadata={"help": "Task to train on (see infertune eval --help)."})
    task_option: list[str] = field(default_factory=list, metadata={"help": "Task option key=value, repeatable."})
    model: str = field(default="tiny", metadata={"help": "Model: tiny, smollm2 or a local transformers directory."})
    lora_rank: int = field(default=0, metadata={"help": "LoRA rank (0: full fine-tuning)."})
    objective: str = field(default="bon-exact", metadata={
        "help": "Objective: rloo, grpo, dr-grpo, star, bon-exact, bon-rl-v, bon-rl-s, bon-rlb, bon-rlbp, "
                "passk-chen, tang-loo, sft, dco, bon-sft."})
    verifier: str = field(default="reward", metadata={
        "help": "What objectives that select by a verifier use: reward (the verifier is the reward: pass@k), "
                "confidence (the policy's mean token log-prob), agreement, or rm=PATH."})
    n: int = field(default=16, metadata={"help": "Samples per prompt."})
    k: int = field(default=8, metadata={"help": "The k (the N of Best-of-N) the objective trains for."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature during training."})
    max_new_tokens: int = field(default=32, metadata={"help": "Longest sampled completion."})
    steps: int = field(default=100, metadata={"help": "Optimizer steps."})
    batch_prompts: int = field(default=16, metadata={"help": "Prompts per step."})
    micro_batch: int = field(default=128, metadata={"help": "Sequences per forward/backward (gradient accumulation)."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate (AdamW)."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear learning-rate warmup."})
    lr_schedule: str = field(default="constant", metadata={"help": "After warmup: constant, or cosine decay to 0."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    grad_clip: float = field(default=1.0, metadata={"help": "Gradient norm clip (0: none)."})
    kl_start: float = field(default=0.0, metadata={"help": "KL-to-anchor coefficient at step 0 (paper: 1.0)."})
    kl_end: float = field(default=0.0, metadata={"help": "KL coefficient at the last step (paper: 0.075)."})
    ema_rate: float = field(default=0.01, metadata={"help": "Anchor update rate: anchor ← (1−r)·anchor + r·policy."})
    eval_every: int = field(default=0, metadata={"help": "Held-out evaluation every this many steps (0: at the end)."})
    eval_prompts: int = field(default=100, metadata={"help": "Held-out prompts (a fixed random subset of the task)."})
    eval_n: int = field(default=32, metadata={"help": "Samples per held-out prompt."})
    checkpoint_every: int = field(default=50, metadata={"help": "Checkpoint every this many steps (0: only at the end)."})
    seed: int = field(default=0, metadata={"help": "Seed of prompt order, sampling and initialisation."})
    out: str | None = field(default=None, metadata={"help": "Run folder (default: runs/train-<task>-<objective>)."})

    def __post_init__(self) -> None:
        if self.objective not in REFERENCE_OBJECTIVES:
            get(self.objective)  # unknown names fail here, before any work
        if not 1 <= self.k <= self.n:
            raise ValueError(f"k must lie in 1..n, got k={self.k}, n={self.n}")
        for name in ("steps", "batch_prompts", "micro_batch", "n", "eval_n", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.lr <= 0 or not 0 <= self.ema_rate <= 1:
            raise ValueError("lr must be > 0 and ema_rate in [0, 1]")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")

    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / f"train-{self.task}-{self.objective}".replace(":", "-")


def kl_coefficient(config: TrainConfig, step: int) -> float:
    """Linear anneal from kl_start to kl_end over the run."""
    frac = step / max(1, config.steps - 1)
    return config.kl_start + (config.kl_end - config.kl_start) * frac


HELD_OUT_SEED = 20241220  # fixed, so every run of a task holds out the same problems whatever its own seed


def split_problems(task: Task, eval_prompts: int) -> tuple[list[Problem], list[Problem]]:
    """Training problems and held-out ones: a fixed random subset of ``eval_prompts``; they never overlap.

    A random subset, not the task's last problems: generators that deduplicate as they go (arith) leave rarer,
    harder problems at the end, and a held-out set drawn from there would not measure the training distribution.
    """
    problems = task.problems()
    if len(problems) <= eval_prompts:
        raise ValueError(f"task {task.name} has {len(problems)} problems; need more than eval_prompts={eval_prompts}")
    held = set(np.random.default_rng(HELD_OUT_SEED).permutation(len(problems))[:eval_prompts].tolist())
    return ([p for i, p in enumerate(problems) if i not in held], [p for i, p in enumerate(problems) if i in held])


def sequence_logprobs(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """Σ_t log π(y_t | x, y_<t) for each (prompt, completion) pair, with gradients; also the per-token values."""
    import torch

    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    target_mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        ids[b, : len(p) + len(c)] = torch.tensor(p + c)
        mask[b, : len(p) + len(c)] = 1
        target_mask[b, len(p) : len(p) + len(c)] = True
    device = next(model.parameters()).device
    ids, mask, target_mask = ids.to(device), mask.to(device), target_mask.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    token_lp = torch.log_softmax(logits, dim=-1).gather(2, ids[:, 1:, None])[..., 0]
    token_lp = token_lp * target_mask[:, 1:]
    return token_lp.sum(dim=1), token_lp, target_mask[:, 1:]


class Trainer:
    """Holds the policy, its anchor, the optimizer and the run folder; ``run()`` trains to ``config.steps``."""

    def __init__(self, config: TrainConfig, *, model=None, tokenizer=None, task: Task | None = None,
                 verifier=None, log: Callable[[str], None] | None = None) -> None:
        import torch

        self.config = config
        self.log = log or (lambda message: None)
        self.dir = config.run_dir()
        self.task = task or load(config.task, **parse_options(config.task_option))
        self.train_problems, self.eval_problems = split_problems(self.task, config.eval_prompts)
        if model is None:
            from infertune.models.loading import load as load_model

            torch.manual_seed(config.seed)
            loaded = load_model(config.model)
            model, tokenizer = loaded.model, loaded.tokenizer
        if config.lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                                                     target_modules="all-linear"))
        self.model, self.tokenizer = model, tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        # The anchor is a frozen copy of the policy whose trainable weights follow it by an exponential moving average.
        self.anchor_model = copy.deepcopy(model).eval()
        anchor_named = dict(self.anchor_model.named_parameters())
        self.anchor = [anchor_named[name] for name, _ in named]
        for p in self.anchor_model.parameters():
            p.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.step = 0
        # A verifier object (any callable on problems and completions) overrides the --verifier name.
        self.verifier = verifier if verifier is not None else self._build_verifier()
        from infertune.models.hf import HFSampler

        self.sampler = HFSampler(model, tokenizer, name=config.model)

    # -- pieces -------------------------------------------------------------------------------------------------
    def _build_verifier(self):
        kind = self.config.verifier
        if kind in ("reward", "confidence"):
            return None
        from infertune.scoring import build_verifier

        built = build_verifier(kind, self.task)
        # Verifiers from infertune.verify score texts; the trainer hands them Completion objects.
        return lambda problems, completions: built(problems, [c.text for c in completions])

    def _lr(self, step: int) -> float:
        config = self.config
        if config.warmup_steps and step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        if config.lr_schedule == "cosine":
            progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
            return config.lr * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0)))
        return config.lr

    def _prompt_ids(self, problems: list[Problem]) -> list[list[int]]:
        return self.sampler.encode([p.prompt for p in problems])

    def _scores(self, problems, completions, rewards) -> np.ndarray:
        kind = self.config.verifier
        if self.verifier is not None:
            flat_p = [p for p, row in zip(problems, completions) for _ in row]
            return np.asarray(self.verifier(flat_p, [c for row in completions for c in row])).reshape(rewards.shape)
        if kind == "reward":
            return rewards
        return np.array([[np.mean(c.logprobs) if c.logprobs else -1e9 for c in row] for row in completions])

    # -- one step -------------------------------------------------------------------------------------------------
    def collect(self) -> "Batch":
        """Sample this step's prompts with the current policy, score them, and weight every sequence to push on."""
        config, step = self.config, self.step
        started = time.perf_counter()
        rng = np.random.default_rng([config.seed, step])
        chosen = rng.choice(len(self.train_problems), size=min(config.batch_prompts, len(self.train_problems)),
                            replace=False)
        problems = [self.train_problems[i] for i in chosen]
        prompt_ids = self._prompt_ids(problems)
        objective = config.objective
        if objective == "sft":
            # Plain supervised learning on the references: nothing to sample.
            completions = [[] for _ in problems]
            rewards = scores = np.full((len(problems), 1), np.nan)
        else:
            self.model.eval()
            completions = self.sampler.sample([p.prompt for p in problems], SamplingParams(
                n=config.n, temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                seed=config.seed * 1_000_003 + step))
            texts = [c.text for row in completions for c in row]
            flat_problems = [p for p in problems for _ in range(config.n)]
            rewards = np.asarray(self.task.rewards(flat_problems, texts), dtype=np.float64).reshape(len(problems), -1)
            scores = self._scores(problems, completions, rewards)

        batch = Batch(completions=completions, rewards=rewards, scores=scores, row_prompts=prompt_ids)
        for b, (problem, row) in enumerate(zip(problems, completions)):
            if objective in REFERENCE_OBJECTIVES:
                ref_ids = self.tokenizer(problem.reference or "", add_special_tokens=False)["input_ids"]
                ref_ids = ref_ids + ([self.sampler.eos_ids[0]] if self.sampler.eos_ids else [])
                if objective == "bon-sft":
                    expert_score = 1.0 if config.verifier == "reward" else float(np.max(scores[b]))
                    w_expert, w = bon_sft_weights(expert_score, scores[b], config.k)
                else:
                    w_expert, w = 1.0, np.zeros(len(row))
                batch.add(prompt_ids[b], ref_ids, w_expert / len(problems), dco=objective == "dco")
            else:
                w = sample_weights(objective, rewards[b], scores[b] if get(objective).needs_scores else None,
                                   None, k=config.k)
            for c, wi in zip(row, w):
                # A sequence with weight 0 moves nothing unless the KL term needs it.
                if wi != 0.0 or config.kl_start or config.kl_end:
                    batch.add(prompt_ids[b], c.token_ids, float(wi) / len(problems))
        batch.collect_seconds = time.perf_counter() - started
        return batch

    def update(self, batch: "Batch") -> dict:
        """One optimizer step on −Σ w log π(y|x) + β·KL(π‖anchor), over micro-batches of sequences."""
        import torch

        config = self.config
        started = time.perf_counter()
        lr = self._lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        beta = kl_coefficient(config, self.step)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        objective_loss = kl_total = 0.0
        tokens = 0
        n_seq = max(1, len(batch.prompts))
        order = sorted(range(len(batch.prompts)), key=lambda i: len(batch.prompts[i]) + len(batch.tokens[i]))
        for start in range(0, len(order), config.micro_batch):
            part = order[start : start + config.micro_batch]
            prompts = [batch.prompts[i] for i in part]
            completions = [batch.tokens[i] for i in part]
            seq_lp, token_lp, mask = sequence_logprobs(self.model, prompts, completions, self.pad_id)
            weights = torch.tensor([batch.weights[i] for i in part], dtype=seq_lp.dtype, device=seq_lp.device)
            if any(batch.dco[i] for i in part):
                # DCO scales a reference's cross-entropy by how much one more sample of it would still matter.
                factor = dco_factor(seq_lp.detach().cpu().numpy(), config.k)
                scale = [factor[j] if batch.dco[i] else 1.0 for j, i in enumerate(part)]
                weights = weights * torch.tensor(scale, dtype=weights.dtype, device=weights.device)
            loss = -(weights * seq_lp).sum()
            objective_loss += float(loss.detach())
            if beta > 0:
                anchor_lp = self._anchor_token_logprobs(prompts, completions)
                log_ratio = (anchor_lp - token_lp) * mask
                kl = ((torch.exp(log_ratio) - log_ratio - 1) * mask).sum(dim=1)
                loss = loss + beta * kl.sum() / n_seq
                kl_total += float(kl.detach().sum()) / n_seq
            loss.backward()
            tokens += int(mask.sum())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip if config.grad_clip > 0
                                                         else float("inf")))
        self.optimizer.step()
        with torch.no_grad():
            for a, p in zip(self.anchor, self.params):
                a.mul_(1 - config.ema_rate).add_(p.detach(), alpha=config.ema_rate)
        self.step += 1
        return {"loss": objective_loss + beta * kl_total, "objective_loss": objective_loss, "kl": kl_total,
                "kl_coef": beta, "lr": lr, "grad_norm": grad_norm, "tokens": tokens,
                "update_seconds": time.perf_counter() - started}

    def train_step(self) -> dict:
        batch = self.collect()
        stats = self.update(batch)
        k, sampled = self.config.k, self.config.objective != "sft"
        all_lp = [lp for row in batch.completions for c in row for lp in c.logprobs]
        rewards, scores = batch.rewards, batch.scores
        return {
            "step": self.step, **stats, "reward": float(rewards.mean()) if sampled else float("nan"),
            "pass_at_k": float(bon_curve(rewards, rewards)[:, k - 1].mean()) if sampled else float("nan"),
            "bon_at_k": float(bon_curve(scores, rewards)[:, k - 1].mean()) if sampled else float("nan"),
            "entropy": float(-np.mean(all_lp)) if all_lp else 0.0, "sequences": len(batch.prompts),
            "collect_seconds": batch.collect_seconds, "seconds": batch.collect_seconds + stats["update_seconds"],
        }

    def _anchor_token_logprobs(self, prompts, completions):
        """Per-token log-probs under the anchor, without gradient."""
        import torch

        with torch.no_grad():
            _, token_lp, _ = sequence_logprobs(self.anchor_model, prompts, completions, self.pad_id)
        return token_lp

    # -- evaluation -----------------------------------------------------------------------------------------------
    def evaluate(self, problems: list[Problem] | None = None, n: int | None = None) -> dict:
        """pass@k, BoN@k (training verifier) and maj@k on held-out problems, every k that is a power of two."""
        problems = problems or self.eval_problems
        n = n or self.config.eval_n
        self.model.eval()
        completions = self.sampler.sample([p.prompt for p in problems], SamplingParams(
            n=n, temperature=self.config.temperature, max_new_tokens=self.config.max_new_tokens,
            seed=self.config.seed + 7919))
        texts = [c.text for row in completions for c in row]
        flat = [p for p in problems for _ in range(n)]
        rewards = np.asarray(self.task.rewards(flat, texts), dtype=np.float64).reshape(len(problems), n)
        scores = self._scores(problems, completions, rewards)
        answers = np.empty((len(problems), n), dtype=object)
        answers[:] = [[self.task.extract(c.text) for c in row] for row in completions]
        curves = {"pass": pass_curve(rewards), "bon": bon_curve(scores, rewards),
                  "maj": np.asarray(maj_curve(answers, rewards))}
        result = {"step": self.step}
        for name, curve in curves.items():
            for k in [2**i for i in range(n.bit_length()) if 2**i <= n]:
                result[f"{name}@{k}"] = float(curve[:, k - 1].mean())
        result["distinct"] = float(np.mean([len({c.text for c in row}) for row in completions]))
        return result

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        import torch

        folder = self.dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-step-{self.step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        torch.save({"params": [p.detach().cpu() for p in self.params], "anchor": [a.cpu() for a in self.anchor],
                    "optimizer": self.optimizer.state_dict(), "step": self.step,
                    "torch_rng": torch.random.get_rng_state(), "numpy_rng": np.random.get_state(),
                    "python_rng": random.getstate()}, tmp / "state.pt")
        (tmp / "config.json").write_text(json.dumps(asdict(self.config), indent=1))
        final = folder / f"step-{self.step:06d}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        (folder / "latest").write_text(final.name)
        return final

    def load_checkpoint(self, path: Path | None = None) -> bool:
        """Restore the newest checkpoint (or ``path``); False when there is none."""
        import torch

        folder = self.dir / "checkpoints"
        if path is None:
            pointer = folder / "latest"
            if not pointer.exists():
                return False
            path = folder / pointer.read_text().strip()
        state = torch.load(path / "state.pt", weights_only=False)
        saved = json.loads((path / "config.json").read_text())
        if {k: v for k, v in saved.items() if k != "steps"} != {k: v for k, v in asdict(self.config).items()
                                                              if k != "steps"}:
            raise ValueError(f"{path}: this checkpoint was written with a different configuration; use another "
                             "--out or the same options (only --steps may change, and it also stretches the "
                             "KL annealing schedule)")
        with torch.no_grad():
            for p, s in zip(self.params, state["params"]):
                p.copy_(s)
            for a, s in zip(self.anchor, state["anchor"]):
                a.copy_(s)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        torch.random.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        return True

    def save_model(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        model = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
        model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    # -- the loop -------------------------------------------------------------------------------------------------
    def run(self, progress: Callable[[dict], None] | None = None) -> list[dict]:
        """Train to config.steps, resuming from the newest checkpoint; returns the step log of this call."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.load_checkpoint():
            self.log(f"resumed from step {self.step}")
        log_path = self.dir / "train_log.csv"
        _truncate_log(log_path, self.step)
        rows = []
        with open(log_path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            if fh.tell() == 0:
                writer.writeheader()
            while self.step < self.config.steps:
                row = self.train_step()
                writer.writerow({k: row[k] for k in LOG_FIELDS})
                fh.flush()
                rows.append(row)
                if progress:
                    progress(row)
                every = self.config.eval_every
                if every and self.step % every == 0 and self.step < self.config.steps:
                    self._log_eval(self.evaluate())
                if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                    self.save_checkpoint()
        if self.config.checkpoint_every == 0 or self.step % self.config.checkpoint_every:
            self.save_checkpoint()
        return rows

    def _log_eval(self, result: dict) -> None:
        path = self.dir / "eval_log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(result))
            if new:
                writer.writeheader()
            writer.writerow(result)
        self.log("eval " + ", ".join(f"{k} {v:.3f}" for k, v in result.items() if k != "step"))


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows past the checkpoint a run resumes from (they will be written again)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
