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

Rollouts (``allocation``, ``telemetry``, ``temperature``): with ``allocation="knapsack"`` a step draws a larger pool of
candidate prompts and spreads the same budget of batch_prompts × n samples over it, prompt i getting n_i samples
(0: skipped) chosen from the prompts' success history alone. Each sampled prompt's weights come from its own n_i
samples and are unbiased for its own gradient ∇J_x at that n_i, because n_i does not depend on the samples it
draws (for rloo and bon-exact, including pass@k; bon-rl-v/-s keep Lemma 2's expectation at any n_i; for the other
objectives a prompt's expected weight changes with n_i, see ``allocation.KEEPS_EXPECTATION_AT_ANY_N``). Every
chosen prompt then counts once: its weights are divided by the number m of chosen prompts, as under uniform
allocation, so the update estimates (1/m) Σ_{x chosen} ∇J_x; a prompt with more samples gets a less noisy estimate,
not a larger share. What changes is which prompts are chosen: the expected update is Σ_x q_x ∇J_x with
q_x proportional to how often prompt x is chosen (and weighted by 1/m), which favours prompts whose success rate so
far makes their samples informative over the uniform mean over training prompts. Every step logs the telemetry of
its samples (``telemetry``); with ``auto_temperature`` the sampling temperature T moves between steps by B-STaR's
rule, and a step's samples are always scored with log π_T at the T they were drawn at (``Batch.temperature``).
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
from infertune.store import scored_from_arrays
from infertune.tasks import Problem, Task
from infertune.tasks.splits import split_problems
from infertune.train.allocation import SuccessHistory, allocate
from infertune.train.config import TrainConfig, fill_fields_missing_from, kl_coefficient
from infertune.train.logprobs import sequence_logprobs
from infertune.train.telemetry import TELEMETRY_FIELDS, balance_score, empty_telemetry, step_telemetry
from infertune.train.temperature import bstar_step

LOG_FIELDS = ["step", "loss", "objective_loss", "kl", "kl_coef", "lr", "grad_norm", *TELEMETRY_FIELDS, "sequences",
              "tokens", "collect_seconds", "update_seconds", "probe_seconds", "seconds"]


@dataclass
class Batch:
    """One step's samples and the sequences to push on: prompt ids, completion ids, weight, DCO flag.

    Per prompt (rows may differ in length under knapsack allocation): its completions, rewards, verifier scores and
    the weights its samples got. ``idle`` holds the sampled sequences pushed with no weight (kept only for the
    entropy telemetry). ``temperature`` is the one the samples were drawn at, and so the one they are scored at."""

    completions: list
    rewards: list[np.ndarray]
    scores: list[np.ndarray]
    row_prompts: list[list[int]] = field(default_factory=list)  # prompt ids of each row of completions
    prompts: list[list[int]] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    dco: list[bool] = field(default_factory=list)
    sampled: list[bool] = field(default_factory=list)  # False for reference answers, which π did not sample
    sample_weights: list[np.ndarray] = field(default_factory=list)  # per prompt: the weights on its samples
    idle: list[tuple[list[int], list[int]]] = field(default_factory=list)
    problems: list = field(default_factory=list)
    temperature: float = 1.0
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
        self.temperature = config.temperature  # of the next step's samples; auto-temperature moves it
        # Each prompt's successes and trials so far, for knapsack allocation.
        self.history = SuccessHistory(decay=config.history_decay)
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

    def _rewards(self, problems, completions) -> list[np.ndarray]:
        """The task's reward of every completion, one array per prompt."""
        texts = [c.text for row in completions for c in row]
        flat_problems = [p for p, row in zip(problems, completions) for _ in row]
        flat = np.asarray(self.task.rewards(flat_problems, texts), dtype=np.float64)
        return _split(flat, [len(row) for row in completions])

    def _scores(self, problems, completions, rewards: list[np.ndarray]) -> list[np.ndarray]:
        """The training verifier's score of every completion, one array per prompt."""
        kind = self.config.verifier
        if self.verifier is not None:
            flat_p = [p for p, row in zip(problems, completions) for _ in row]
            flat = np.asarray(self.verifier(flat_p, [c for row in completions for c in row]), dtype=np.float64)
            return _split(flat, [len(row) for row in completions])
        if kind == "reward":
            return [np.array(r, dtype=np.float64) for r in rewards]
        return [np.array([np.mean(c.logprobs) if c.logprobs else -1e9 for c in row]) for row in completions]

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
            joint = np.append(rewards, reward)
            return float(self._scores([problem], [list(row) + [completion]], [joint])[0][-1])
        return float(self._scores([problem], [[completion]], [np.array([reward])])[0][0])

    # -- one step -------------------------------------------------------------------------------------------------
    def _draw(self) -> tuple[list[Problem], list[int]]:
        """This step's prompts and how many samples each gets: batch_prompts × n (uniform), or the knapsack
        allocation of that budget over a pool of candidates, from their success history only (prompts given 0
        samples are dropped)."""
        config = self.config
        rng = np.random.default_rng([config.seed, self.step])
        if config.allocation == "uniform" or not get(config.objective).draws_samples:
            chosen = rng.choice(len(self.train_problems), size=min(config.batch_prompts, len(self.train_problems)),
                                replace=False)
            return [self.train_problems[i] for i in chosen], [config.n] * len(chosen)
        pool = rng.choice(len(self.train_problems), size=min(config.pool_size, len(self.train_problems)),
                          replace=False)
        candidates = [self.train_problems[i] for i in pool]
        sizes = allocate([p.id for p in candidates], self.history, objective=config.objective, k=config.k,
                         budget=config.batch_prompts * config.n, min_n=config.samples_min_n,
                         max_n=config.samples_max_n, prior_strength=config.prior_strength)
        return [p for p, n in zip(candidates, sizes) if n > 0], [int(n) for n in sizes if n > 0]

    def _sample(self, problems: list[Problem], sizes: list[int], temperature: float, seed: int) -> list[list]:
        """sizes[i] completions of problem i at ``temperature``: one sampler call per distinct size. Sample j of a
        prompt depends only on the seed, the prompt and j, so a prompt's samples do not depend on the others'."""
        completions: list = [None] * len(problems)
        for size in sorted(set(sizes)):
            rows = [i for i, s in enumerate(sizes) if s == size]
            out = self.sampler.sample([problems[i].prompt for i in rows], SamplingParams(
                n=size, temperature=temperature, max_new_tokens=self.config.max_new_tokens, seed=seed))
            for i, row in zip(rows, out):
                completions[i] = row
        return completions

    def collect(self) -> "Batch":
        """Sample this step's prompts with the current policy, score them, and weight every sequence to push on."""
        config, step = self.config, self.step
        started = time.perf_counter()
        problems, sizes = self._draw()
        prompt_ids = self._prompt_ids(problems)
        objective = get(config.objective)
        temperature = self.temperature
        if not objective.draws_samples:
            # Plain supervised learning on the references: nothing to sample.
            completions = [[] for _ in problems]
            rewards = scores = [np.full(1, np.nan) for _ in problems]
        else:
            self.model.eval()
            completions = self._sample(problems, sizes, temperature, seed=config.seed * 1_000_003 + step)
            rewards = self._rewards(problems, completions)
            scores = self._scores(problems, completions, rewards)
            if config.allocation == "knapsack":
                self.history.record([p.id for p in problems], rewards)

        batch = Batch(completions=completions, rewards=rewards, scores=scores, row_prompts=prompt_ids,
                      problems=problems, temperature=temperature)
        # What the objective optimises: the task's reward, or (reward="verifier") the verifier's score in its place.
        targets = scores if config.reward == "verifier" else rewards
        keeps_all = bool(config.kl_start or config.kl_end)
        if not objective.needs_reference:
            own_weights = prompt_weights(config.objective, targets, scores if objective.needs_scores else None,
                                         config.k)
        for b, (problem, row) in enumerate(zip(problems, completions)):
            sample_scores = scores[b][: len(row)] if objective.needs_scores else None
            if objective.needs_reference:
                ref_ids = self._reference_ids(problem)
                # Lemma 1 compares the expert answer with the samples by the verifier's score of each.
                expert = (self._reference_score(problem, ref_ids, row, rewards[b]) if objective.needs_scores
                          else None)
                weights = sample_weights(config.objective, targets[b][: len(row)], sample_scores, None, k=config.k,
                                         expert_score=expert)
                batch.add(prompt_ids[b], ref_ids, float(weights[0]) / len(problems),
                          dco=objective.scales_reference_by_dco, sampled=False)
                w = weights[1:]
            else:
                w = own_weights[b]
            batch.sample_weights.append(np.asarray(w, dtype=np.float64))
            for c, wi in zip(row, w):
                # A sequence with weight 0 moves nothing unless the KL term needs it.
                if wi != 0.0 or keeps_all:
                    batch.add(prompt_ids[b], c.token_ids, float(wi) / len(problems))
                else:
                    batch.idle.append((prompt_ids[b], c.token_ids))
        batch.collect_seconds = time.perf_counter() - started
        return batch

    def update(self, batch: "Batch") -> dict:
        """One optimizer step on −Σ w log π_T(y|x) + β·k3(π_T, anchor_T), over micro-batches of sequences, T the
        temperature the batch was sampled at. Also the entropy of π_T over every sampled token (telemetry)."""
        import torch

        config = self.config
        started = time.perf_counter()
        temperature = batch.temperature
        lr = self._lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        beta = kl_coefficient(config, self.step)
        # Scored in eval mode, as sampled: dropout would make the log-probs those of another distribution.
        self.model.eval()
        self.optimizer.zero_grad(set_to_none=True)
        objective_loss = kl_total = 0.0
        tokens = 0
        entropy_sum = entropy_tokens = 0.0
        n_sampled = max(1, sum(batch.sampled))  # the KL estimate averages over the policy's own samples only
        order = sorted(range(len(batch.prompts)), key=lambda i: len(batch.prompts[i]) + len(batch.tokens[i]))
        for start in range(0, len(order), config.micro_batch):
            part = order[start : start + config.micro_batch]
            prompts = [batch.prompts[i] for i in part]
            completions = [batch.tokens[i] for i in part]
            seq_lp, token_lp, mask, entropy = sequence_logprobs(self.model, prompts, completions, self.pad_id,
                                                                temperature=temperature, entropy=True)
            own = torch.tensor([batch.sampled[i] for i in part], dtype=token_lp.dtype, device=token_lp.device)
            entropy_sum += float((entropy.sum(dim=1) * own).sum())
            entropy_tokens += float((mask.sum(dim=1) * own).sum())
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
                anchor_lp = self._anchor_token_logprobs(prompts, completions, temperature)
                log_ratio = (anchor_lp - token_lp) * mask
                kl = ((torch.exp(log_ratio) - log_ratio - 1) * mask).sum(dim=1) * own
                loss = loss + beta * kl.sum() / n_sampled
                kl_total += float(kl.detach().sum()) / n_sampled
            loss.backward()
            tokens += int(mask.sum())
        idle_sum, idle_tokens = self._idle_entropy(batch.idle, temperature)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip if config.grad_clip > 0
                                                         else float("inf")))
        self.optimizer.step()
        with torch.no_grad():
            for a, p in zip(self.anchor, self.params):
                a.mul_(1 - config.ema_rate).add_(p.detach(), alpha=config.ema_rate)
        self.step += 1
        total_tokens = entropy_tokens + idle_tokens
        return {"loss": objective_loss + beta * kl_total, "objective_loss": objective_loss, "kl": kl_total,
                "kl_coef": beta, "lr": lr, "grad_norm": grad_norm, "tokens": tokens,
                "entropy": (entropy_sum + idle_sum) / total_tokens if total_tokens else float("nan"),
                "update_seconds": time.perf_counter() - started}

    def _idle_entropy(self, idle: list, temperature: float) -> tuple[float, float]:
        """Σ of the per-position entropy of π_T and the token count over sampled sequences the update skipped (weight
        0): one forward pass without gradient, for the telemetry only."""
        import torch

        total = count = 0.0
        with torch.no_grad():
            for start in range(0, len(idle), self.config.micro_batch):
                part = idle[start : start + self.config.micro_batch]
                _, _, mask, entropy = sequence_logprobs(self.model, [p for p, _ in part], [t for _, t in part],
                                                        self.pad_id, temperature=temperature, entropy=True)
                total += float(entropy.sum())
                count += float(mask.sum())
        return total, count

    def train_step(self) -> dict:
        """Collect, update, measure the step's telemetry and, every temperature_every steps with auto-temperature,
        choose the next steps' sampling temperature."""
        config = self.config
        batch = self.collect()
        stats = self.update(batch)
        if get(config.objective).draws_samples:
            answers = [[self.task.extract(c.text) for c in row] for row in batch.completions]
            texts = [[c.text for c in row] for row in batch.completions]
            telemetry = step_telemetry(batch.rewards, batch.scores, answers, texts, batch.sample_weights, k=config.k,
                                       balance_target=config.balance_target)
        else:
            telemetry = empty_telemetry()
        probe_seconds = 0.0
        if config.auto_temperature and self.step % config.temperature_every == 0:
            started = time.perf_counter()
            self.adjust_temperature()
            probe_seconds = time.perf_counter() - started
        return {
            "step": self.step, **stats, **telemetry, "entropy": stats["entropy"], "temperature": batch.temperature,
            "sequences": len(batch.prompts), "collect_seconds": batch.collect_seconds, "probe_seconds": probe_seconds,
            "seconds": batch.collect_seconds + stats["update_seconds"] + probe_seconds,
        }

    def adjust_temperature(self):
        """B-STaR's rule (``infertune.train.temperature``): sample probe prompts at the current temperature and its
        neighbours with one seed, and sample the next steps at the one whose samples have the best balance score."""
        config = self.config
        rng = np.random.default_rng([config.seed, self.step, 7])
        chosen = rng.choice(len(self.train_problems), size=min(config.probe_prompts, len(self.train_problems)),
                            replace=False)
        problems = [self.train_problems[i] for i in chosen]
        seed = (config.seed + 1) * 2_000_003 + self.step  # not a training step's seed; shared by the candidates
        self.model.eval()

        def balance_at(temperature: float) -> float:
            completions = self._sample(problems, [config.n] * len(problems), temperature, seed)
            rewards = self._rewards(problems, completions)
            scores = self._scores(problems, completions, rewards)
            texts = [[c.text for c in row] for row in completions]
            return balance_score(rewards, scores, texts, config.balance_target)[0]

        choice = bstar_step(self.temperature, balance_at, step=config.temperature_step, low=config.min_temperature,
                            high=config.max_temperature)
        self.log("auto-temperature: balance " + ", ".join(f"{b:.3f} at T={t:g}" for t, b in
                                                          zip(choice.candidates, choice.balances))
                 + f"; sampling at T={choice.temperature:g}")
        self.temperature = choice.temperature
        return choice

    def _anchor_token_logprobs(self, prompts, completions, temperature: float):
        """Per-token log-probs under the anchor at the samples' temperature, without gradient."""
        import torch

        with torch.no_grad():
            _, token_lp, _ = sequence_logprobs(self.anchor_model, prompts, completions, self.pad_id,
                                               temperature=temperature)
        return token_lp

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
        rewards = np.array(self._rewards(problems, completions))
        scores = np.array(self._scores(problems, completions, list(rewards)))
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
                    "python_rng": random.getstate(), "temperature": self.temperature,
                    "history": self.history.state()}, tmp / "state.pt")
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
        saved = fill_fields_missing_from(saved)  # fields added since the checkpoint was written
        current = asdict(self.config)
        differ = sorted(k for k in set(saved) | set(current) if k != "steps" and saved.get(k) != current.get(k))
        if differ:
            raise ValueError(f"{path}: this checkpoint was written with a different configuration ("
                             + ", ".join(f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in differ)
                             + "); use another --out or the same options (only --steps may change, and it also "
                             "stretches the KL annealing schedule)")
        with torch.no_grad():
            for p, s in zip(self.params, state["params"]):
                p.copy_(s)
            for a, s in zip(self.anchor, state["anchor"]):
                a.copy_(s)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.temperature = float(state.get("temperature", self.config.temperature))
        self.history = SuccessHistory.from_state(state.get("history", {}), self.config.history_decay)
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


def prompt_weights(objective: str, targets, scores, k: int) -> list[np.ndarray]:
    """Each prompt's weights on its own samples, at its own n (rows may differ in length), before the batch divides
    them by the number of prompts. Every objective's weights are computed from the n of the row they are given, so
    an objective unbiased for ∇J_x at any n stays unbiased for each prompt under knapsack allocation (tested by
    enumeration)."""
    rows = scores if scores is not None else [None] * len(targets)
    return [sample_weights(objective, t, s, None, k=k) for t, s in zip(targets, rows)]


def _split(flat: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Consecutive pieces of ``flat`` of the given sizes."""
    return np.split(flat, np.cumsum(sizes)[:-1]) if sizes else []


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
