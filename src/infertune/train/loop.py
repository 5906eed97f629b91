"""One training loop for every objective: sample n per prompt, score, weight, ascend Σ w_i log π_T(y_i|x).

Per step: draw a batch of training prompts, sample n completions each with the current policy at temperature T,
compute rewards and verifier scores, turn them into per-sample weights with the chosen objective
(``infertune.objectives``), and take a step on −Σ w_i log π_T(y_i|x) plus β times a KL penalty to an anchor, an
exponential moving average of the policy, with β annealed linearly (Chow et al.).

log π_T is the log-probability under the distribution the samples were drawn from, softmax(logits / T): the
objectives' weights are unbiased only with the score of that distribution, which is also the one deployed at T.
Training samples from the whole tempered distribution (no nucleus truncation), so log π_T is exact.

The KL penalty is the k3 estimator r − log r − 1, r = π_anchor,T(y_t)/π_T(y_t), summed over the tokens of the
policy's own samples (never of reference answers) and used as a pathwise loss. Its value, averaged over those
samples, estimates the sequence-level KL(π_T ‖ anchor_T) (what the log's ``kl`` column reports). Its gradient, with
the samples held fixed, is Σ_s d_π(s) ∇KL(anchor_T(·|s) ‖ π_T(·|s)): the per-state KL(anchor ‖ π) at the states
the policy visits, weighted by how often it visits them (per token, E_π[(1 − r) ∇log π] = −E_anchor[∇log π]). So
the update pulls π towards covering what the anchor covers (the mass-covering direction); it is neither
∇KL(π‖anchor) nor the gradient of the sequence-level KL(anchor‖π).

Objectives on reference answers (sft, dco, bon-sft) add the reference as an extra sequence; BoN-SFT scores it with
the verifier, as Lemma 1 requires. Sampling is seeded per step, so a run resumed from a checkpoint reproduces the
uninterrupted one exactly.
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

from infertune.evaluation import EvalConfig, per_prompt_curves
from infertune.models.base import SamplingParams
from infertune.objectives import dco_factor, get, sample_weights
from infertune.progress import NullProgress, Progress
from infertune.store import scored_from_arrays
from infertune.tasks import Problem, Task
from infertune.tasks.splits import split_problems
from infertune.train.config import TrainConfig, kl_coefficient
from infertune.train.logprobs import sequence_logprobs

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
    sampled: list[bool] = field(default_factory=list)  # False for reference answers, which π did not sample
    collect_seconds: float = 0.0

    def add(self, prompt: list[int], tokens: list[int], weight: float, dco: bool = False, sampled: bool = True) -> None:
        self.prompts.append(prompt)
        self.tokens.append(tokens)
        self.weights.append(weight)
        self.dco.append(dco)
        self.sampled.append(sampled)


class Trainer:
    """Holds the policy, its anchor, the optimizer and the run folder; ``run()`` trains to ``config.steps``."""

    def __init__(self, config: TrainConfig, *, model=None, tokenizer=None, task: Task | None = None,
                 verifier=None, log: Callable[[str], None] | None = None) -> None:
        import torch

        self.config = config
        self.log = log or (lambda message: None)
        self.dir = config.run_dir()
        self.task = task or config.load_task()
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
        from infertune.verify import build_verifier

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

    def _reference_ids(self, problem: Problem) -> list[int]:
        """The reference answer's tokens, ended by the end-of-sequence token the model itself emits."""
        if problem.reference is None:
            raise ValueError(f"{self.config.objective} learns from reference answers, but problem {problem.id} of "
                             f"task {self.task.name} has none")
        ids = self.tokenizer(problem.reference, add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        end = eos if eos in self.sampler.eos_ids else (self.sampler.eos_ids[0] if self.sampler.eos_ids else None)
        return ids + ([end] if end is not None else [])

    def _reference_score(self, problem: Problem, ref_ids: list[int], row: list, rewards: np.ndarray) -> float:
        """The verifier's score of a problem's reference answer, computed as a sample's is: with the same verifier
        and, for a verifier that compares samples (agreement), among the prompt's samples as one more of them."""
        import torch

        from infertune.models.base import Completion
        from infertune.verify import compares_samples

        with torch.no_grad():  # temperature-1 token log-probs, as the sampler reports them for samples
            _, token_lp, mask = sequence_logprobs(self.model, self._prompt_ids([problem]), [ref_ids], self.pad_id)
        completion = Completion(text=problem.reference or "", token_ids=ref_ids, logprobs=token_lp[mask].tolist(),
                                finish_reason="stop")
        reward = float(self.task.reward(problem, completion.text))
        if compares_samples(self.config.verifier) and self.verifier is not None:
            joint = np.append(rewards, reward)[None, :]
            return float(self._scores([problem], [list(row) + [completion]], joint)[0, -1])
        return float(self._scores([problem], [[completion]], np.array([[reward]]))[0, 0])

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
        objective = get(config.objective)
        if not objective.draws_samples:
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
        # What the objective optimises: the task's reward, or (reward="verifier") the verifier's score in its place.
        targets = scores if config.reward == "verifier" else rewards
        for b, (problem, row) in enumerate(zip(problems, completions)):
            sample_scores = scores[b, : len(row)] if objective.needs_scores else None
            if objective.needs_reference:
                ref_ids = self._reference_ids(problem)
                # Lemma 1 compares the expert answer with the samples by the verifier's score of each.
                expert = (self._reference_score(problem, ref_ids, row, rewards[b]) if objective.needs_scores
                          else None)
                weights = sample_weights(config.objective, targets[b, : len(row)], sample_scores, None, k=config.k,
                                         expert_score=expert)
                batch.add(prompt_ids[b], ref_ids, float(weights[0]) / len(problems),
                          dco=objective.scales_reference_by_dco, sampled=False)
                w = weights[1:]
            else:
                w = sample_weights(config.objective, targets[b], sample_scores, None, k=config.k)
            for c, wi in zip(row, w):
                # A sequence with weight 0 moves nothing unless the KL term needs it.
                if wi != 0.0 or config.kl_start or config.kl_end:
                    batch.add(prompt_ids[b], c.token_ids, float(wi) / len(problems))
        batch.collect_seconds = time.perf_counter() - started
        return batch

    def update(self, batch: "Batch") -> dict:
        """One optimizer step on −Σ w log π_T(y|x) + β·k3(π_T, anchor_T), over micro-batches of sequences."""
        import torch

        config = self.config
        started = time.perf_counter()
        lr = self._lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        beta = kl_coefficient(config, self.step)
        # Scored in eval mode, as sampled: dropout would make the log-probs those of another distribution.
        self.model.eval()
        self.optimizer.zero_grad(set_to_none=True)
        objective_loss = kl_total = 0.0
        tokens = 0
        n_sampled = max(1, sum(batch.sampled))  # the KL estimate averages over the policy's own samples only
        order = sorted(range(len(batch.prompts)), key=lambda i: len(batch.prompts[i]) + len(batch.tokens[i]))
        for start in range(0, len(order), config.micro_batch):
            part = order[start : start + config.micro_batch]
            prompts = [batch.prompts[i] for i in part]
            completions = [batch.tokens[i] for i in part]
            seq_lp, token_lp, mask = sequence_logprobs(self.model, prompts, completions, self.pad_id,
                                                       temperature=config.temperature)
            weights = torch.tensor([batch.weights[i] for i in part], dtype=seq_lp.dtype, device=seq_lp.device)
            if any(batch.dco[i] for i in part):
                # DCO scales a reference's cross-entropy by how much one more sample of it would still matter.
                factor = dco_factor(seq_lp.detach().cpu().numpy(), config.k)
                scale = [factor[j] if batch.dco[i] else 1.0 for j, i in enumerate(part)]
                weights = weights * torch.tensor(scale, dtype=weights.dtype, device=weights.device)
            loss = -(weights * seq_lp).sum()
            objective_loss += float(loss.detach())
            if beta > 0 and any(batch.sampled[i] for i in part):
                # k3 on the policy's samples only: a reference answer is not a sample of π, so k3 on it estimates
                # no KL and its gradient is that of none.
                anchor_lp = self._anchor_token_logprobs(prompts, completions)
                log_ratio = (anchor_lp - token_lp) * mask
                own = torch.tensor([batch.sampled[i] for i in part], dtype=token_lp.dtype, device=token_lp.device)
                kl = ((torch.exp(log_ratio) - log_ratio - 1) * mask).sum(dim=1) * own
                loss = loss + beta * kl.sum() / n_sampled
                kl_total += float(kl.detach().sum()) / n_sampled
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
        k, sampled = self.config.k, get(self.config.objective).draws_samples
        all_lp = [lp for row in batch.completions for c in row for lp in c.logprobs]
        rewards, scores = batch.rewards, batch.scores
        return {
            "step": self.step, **stats, "reward": float(rewards.mean()) if sampled else float("nan"),
            **self._batch_curves(rewards, scores, k, sampled),
            "entropy": float(-np.mean(all_lp)) if all_lp else 0.0, "sequences": len(batch.prompts),
            "collect_seconds": batch.collect_seconds, "seconds": batch.collect_seconds + stats["update_seconds"],
        }

    def _anchor_token_logprobs(self, prompts, completions):
        """Per-token log-probs under the anchor, without gradient."""
        import torch

        with torch.no_grad():
            _, token_lp, _ = sequence_logprobs(self.anchor_model, prompts, completions, self.pad_id,
                                               temperature=self.config.temperature)
        return token_lp

    # -- evaluation -----------------------------------------------------------------------------------------------
    def _batch_curves(self, rewards: np.ndarray, scores: np.ndarray, k: int, sampled: bool) -> dict:
        """pass@k and BoN@k of this step's own samples (through the evaluation core)."""
        if not sampled:
            return {"pass_at_k": float("nan"), "bon_at_k": float("nan")}
        answers = np.full(rewards.shape, None, dtype=object)
        samples = scored_from_arrays([str(i) for i in range(len(rewards))], rewards, answers, {"train": scores})
        curves = per_prompt_curves(samples, rules=["pass", "bon:train"])
        return {"pass_at_k": float(curves["pass"].values[:, k - 1].mean()),
                "bon_at_k": float(curves["bon:train"].values[:, k - 1].mean())}

    # -- evaluation -----------------------------------------------------------------------------------------------
    def evaluate(self, problems: list[Problem] | None = None, n: int | None = None) -> dict:
        """pass@k, BoN@k (training verifier) and maj@k on held-out problems, every k that is a power of two, through
        the evaluation core that ``infertune eval`` uses."""
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
        samples = scored_from_arrays([p.id for p in problems], rewards, answers, {"train": scores})
        curves = per_prompt_curves(samples, EvalConfig(), rules=["pass", "bon:train", "maj"])
        result = {"step": self.step}
        for name, curve in (("pass", curves["pass"]), ("bon", curves["bon:train"]), ("maj", curves["maj"])):
            for k in [2**i for i in range(n.bit_length()) if 2**i <= n]:
                result[f"{name}@{k}"] = float(curve.values[:, k - 1].mean())
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
