"""What a training run is: a recipe (how to sample, weigh and step) and the run around it (task, model, objective).

The recipe is its own dataclass so that other workflows (the demo) embed it instead of restating its fields; the
command line flattens both into one option per field.
"""

from __future__ import annotations

import math
import warnings

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from infertune.objectives import OBJECTIVES, get
from infertune.tasks import TaskSpec
from infertune.train.allocation import HISTORY_DECAY_DEFAULT, KEEPS_EXPECTATION_AT_ANY_N, allocation_value_is_flat
from infertune.verify import describe_verifiers


@dataclass
class TrainRecipe:
    """How to train: samples per prompt, the k trained for, optimisation and the KL penalty."""

    n: int = field(default=16, metadata={"help": "Samples per prompt."})
    k: int = field(default=8, metadata={"help": "The k (the N of Best-of-N) the objective trains for."})
    temperature: float = field(default=1.0, metadata={
        "help": "Sampling temperature T during training (> 0); samples are scored with log π_T, the tempered "
                "distribution they were drawn from (no nucleus truncation in training)."})
    max_new_tokens: int = field(default=32, metadata={"help": "Longest sampled completion."})
    steps: int = field(default=100, metadata={"help": "Optimizer steps."})
    batch_prompts: int = field(default=16, metadata={"help": "Prompts per step."})
    micro_batch: int = field(default=128, metadata={"help": "Sequences per forward/backward (gradient accumulation)."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate (AdamW)."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear learning-rate warmup."})
    lr_schedule: str = field(default="constant", metadata={"help": "After warmup: constant, or cosine decay to 0."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    grad_clip: float = field(default=1.0, metadata={"help": "Gradient norm clip (0: none)."})
    kl_start: float = field(default=0.0, metadata={
        "help": "Coefficient of the KL penalty to the EMA anchor at step 0 (paper: 1.0). The penalty is the k3 "
                "estimator on the policy's samples as a pathwise loss: its value estimates KL(π‖anchor); its "
                "gradient is that of the per-state KL(anchor‖π) at the states π visits, not ∇KL(π‖anchor)."})
    kl_end: float = field(default=0.0, metadata={"help": "KL coefficient at the last step (paper: 0.075)."})
    ema_rate: float = field(default=0.01, metadata={"help": "Anchor update rate: anchor ← (1−r)·anchor + r·policy."})

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"k must lie in 1..n, got k={self.k}, n={self.n}")
        for name in ("steps", "batch_prompts", "micro_batch", "n", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 in training (a greedy policy has no log-probabilities to "
                             f"follow), got {self.temperature}")
        if self.lr <= 0 or not 0 <= self.ema_rate <= 1:
            raise ValueError("lr must be > 0 and ema_rate in [0, 1]")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")


@dataclass
class RolloutRecipe:
    """Where a step's samples go (uniform or Knapsack RL) and how its sampling temperature moves (B-STaR)."""

    allocation: str = field(default="uniform", metadata={
        "help": "uniform: batch_prompts prompts with n samples each. knapsack: the same budget of "
                "batch_prompts x n samples spread over candidate_prompts prompts, each given 0 (skipped) or "
                "min_n..max_n samples, to maximise the samples' expected value to the objective given each "
                "prompt's success rate so far (Knapsack RL); needs --reward task."})
    candidate_prompts: int = field(default=0, metadata={
        "help": "Knapsack allocation: prompts drawn per step to spread the budget over (0: 2 x batch_prompts)."})
    min_n: int = field(default=0, metadata={
        "help": "Knapsack allocation: fewest samples a chosen prompt gets (0: the least the objective takes: k, or "
                "k + 1 when it needs n > k, and at least 2)."})
    max_n: int = field(default=0, metadata={"help": "Knapsack allocation: most samples one prompt gets (0: 4 x n)."})
    prior_strength: float = field(default=0.0, metadata={
        "help": "Knapsack allocation: the Beta prior on a prompt's success rate (an unseen prompt's whole estimate). "
                "0: fitted to the run's prompts by empirical Bayes (beta-binomial maximum likelihood over every "
                "prompt's history); > 0: that many pseudo-samples centred on the run's pooled success rate "
                "(smaller trusts a prompt's own history sooner)."})
    history_decay: float = field(default=HISTORY_DECAY_DEFAULT, metadata={
        "help": "Knapsack allocation: what a prompt's earlier visits count for in its success history. 1 (default): "
                "every visit alike; 0: only its latest visit (as Knapsack RL uses the previous epoch); between: each "
                "visit's counts are multiplied by this at every later visit of that prompt (visits, not steps). "
                "Chosen on the training prompts' own counts: in 300-step runs of the embedded default 1 found more "
                "prompts with a gradient than uniform allocation over the same draw, 0 fewer."})
    auto_temperature: bool = field(default=False, metadata={
        "help": "B-STaR's rule: every temperature_every steps, sample probe prompts at the current temperature and "
                "one temperature_step either side, and sample the next steps at the one whose samples have the highest "
                "balance score. Held-out checks keep --temperature."})
    temperature_step: float = field(default=0.1, metadata={"help": "Auto-temperature: distance between candidates."})
    min_temperature: float = field(default=0.3, metadata={"help": "Auto-temperature: lowest temperature."})
    max_temperature: float = field(default=1.5, metadata={"help": "Auto-temperature: highest temperature."})
    temperature_every: int = field(default=5, metadata={"help": "Auto-temperature: steps between probes."})
    probe_prompts: int = field(default=16, metadata={
        "help": "Auto-temperature: training prompts sampled (n each) at every candidate temperature."})
    balance_target: float = field(default=4.0, metadata={
        "help": "n* of B-STaR's balance score min(n'/n*, 1) * n'/n_selected: distinct correct samples per prompt "
                "that count as full exploration (B-STaR's released code: 8, with 64 samples per query)."})

    def __post_init__(self) -> None:
        if self.allocation not in ("uniform", "knapsack"):
            raise ValueError(f"allocation must be uniform or knapsack, got {self.allocation!r}")
        if min(self.candidate_prompts, self.min_n, self.max_n) < 0:
            raise ValueError("candidate_prompts, min_n and max_n must be >= 0 (0: the default)")
        if self.allocation == "uniform" and (self.candidate_prompts or self.min_n or self.max_n):
            raise ValueError("candidate_prompts, min_n and max_n apply to --allocation knapsack only")
        if not math.isfinite(self.prior_strength) or self.prior_strength < 0:
            raise ValueError(f"prior_strength must be >= 0 (0: fitted by empirical Bayes), got {self.prior_strength}")
        if not 0.0 <= self.history_decay <= 1.0:
            raise ValueError(f"history_decay must be in [0, 1] (0: the latest visit only), got {self.history_decay}")
        if self.allocation == "uniform" and self.history_decay != HISTORY_DECAY_DEFAULT:
            raise ValueError("history_decay applies to --allocation knapsack only")
        if not 0 < self.min_temperature <= self.max_temperature or self.temperature_step <= 0:
            raise ValueError("need 0 < min_temperature <= max_temperature and temperature_step > 0")
        if self.temperature_every < 1 or self.probe_prompts < 1 or self.balance_target <= 0:
            raise ValueError("temperature_every and probe_prompts must be >= 1 and balance_target > 0")


@dataclass
class TrainConfig(TaskSpec, TrainRecipe, RolloutRecipe):
    """A training run. Defaults suit the tiny model on arith on a laptop CPU."""

    model: str = field(default="tiny", metadata={"help": "Model: tiny, smollm2 or a local transformers directory."})
    lora_rank: int = field(default=0, metadata={"help": "LoRA rank (0: full fine-tuning)."})
    objective: str = field(default="bon-exact", metadata={"help": f"Objective: {OBJECTIVES.describe()}."})
    reward: str = field(default="task", metadata={
        "help": "What the objective is told the reward is: task (the task's checker, what the user is judged on) or "
                "verifier (the verifier's score, as when only a reward model is available; the log still reports "
                "the task's reward, so reward hacking shows)."})
    verifier: str = field(default="reward", metadata={
        "help": "What objectives that select by a verifier use: reward (the verifier is the reward: pass@k), "
                f"confidence (the policy's mean token log-prob), or a verifier: {describe_verifiers()}."})
    eval_every: int = field(default=0, metadata={"help": "Held-out evaluation every this many steps (0: at the end)."})
    eval_prompts: int = field(default=100, metadata={"help": "Held-out prompts (a fixed random subset of the task)."})
    eval_n: int = field(default=32, metadata={"help": "Samples per held-out prompt."})
    checkpoint_every: int = field(default=50, metadata={"help": "Checkpoint every this many steps (0: only at the end)."})
    seed: int = field(default=0, metadata={"help": "Seed of prompt order, sampling and initialisation."})
    out: str | None = field(default=None, metadata={"help": "Run folder (default: runs/train-<task>-<objective>)."})

    def __post_init__(self) -> None:
        objective = get(self.objective)  # unknown names fail here, before any work
        super().__post_init__()
        if objective.needs_more_samples_than_k and self.k >= self.n:
            raise ValueError(f"{self.objective} needs n > k (its baseline is the mean reward of the samples outside "
                             f"each k-subset); got n={self.n}, k={self.k}")
        if self.eval_n < 1:
            raise ValueError("eval_n must be at least 1")
        if self.reward not in ("task", "verifier"):
            raise ValueError(f"reward must be task or verifier, got {self.reward!r}")
        if not objective.draws_samples and (self.kl_start or self.kl_end):
            raise ValueError(f"{self.objective} samples nothing, and the KL penalty is estimated on the policy's own "
                             "samples; use kl_start = kl_end = 0")
        RolloutRecipe.__post_init__(self)
        if self.auto_temperature and not objective.draws_samples:
            raise ValueError(f"{self.objective} samples nothing: there is no sampling temperature to adjust")
        if self.auto_temperature and not self.min_temperature <= self.temperature <= self.max_temperature:
            raise ValueError(f"temperature {self.temperature} lies outside [min_temperature, max_temperature] = "
                             f"[{self.min_temperature}, {self.max_temperature}]")
        if self.allocation == "knapsack":
            self._check_knapsack(objective)

    def _check_knapsack(self, objective) -> None:
        if not objective.draws_samples or objective.needs_reference:
            raise ValueError(f"--allocation knapsack spreads samples by their value to the objective; {self.objective} "
                             "learns from reference answers: use uniform")
        if self.objective == "tang-loo":
            raise ValueError("tang-loo is defined at k = n only, so it cannot take a different n per prompt")
        if self.reward != "task":
            raise ValueError("--allocation knapsack models each prompt's success rate from the task's binary reward; "
                             "use --reward task")
        least = self.least_n
        if self.min_n and self.min_n < least:
            raise ValueError(f"min_n = {self.min_n} is fewer samples than {self.objective} takes with k = {self.k} "
                             f"(at least {least})")
        if self.max_n and self.max_n < self.samples_min_n:
            raise ValueError(f"max_n = {self.max_n} is below min_n = {self.samples_min_n}")
        budget = self.batch_prompts * self.n
        if self.pool_size * self.samples_max_n < budget:
            raise ValueError(f"{self.pool_size} candidate prompts x max_n = {self.samples_max_n} cannot spend the "
                             f"step's {budget} samples; raise candidate_prompts or max_n")
        if allocation_value_is_flat(self.objective, self.k, self.samples_min_n, self.samples_max_n):
            raise ValueError(f"--allocation knapsack values n samples by the chance that {self.objective}'s weights on "
                             f"them are not all zero; with k = {self.k} they are not all zero at every outcome for n = "
                             f"{self.samples_min_n}..{self.samples_max_n}, so every allocation is worth the same: use "
                             "uniform")
        if self.objective not in KEEPS_EXPECTATION_AT_ANY_N:
            warnings.warn(f"{self.objective}'s expected weight for a prompt changes with its number of samples, so "
                          "under --allocation knapsack the prompts given more samples also weigh differently; "
                          f"{', '.join(KEEPS_EXPECTATION_AT_ANY_N)} keep their expectation at any per-prompt n",
                          stacklevel=4)

    @property
    def least_n(self) -> int:
        """The fewest samples per prompt the objective's weights take (and 2: one sample has no baseline)."""
        return max(2, self.k + 1 if get(self.objective).needs_more_samples_than_k else self.k)

    @property
    def pool_size(self) -> int:
        """Candidate prompts per step under knapsack allocation."""
        return self.candidate_prompts or 2 * self.batch_prompts

    @property
    def samples_min_n(self) -> int:
        return self.min_n or self.least_n

    @property
    def samples_max_n(self) -> int:
        return self.max_n or 4 * self.n

    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / f"train-{self.task}-{self.objective}".replace(":", "-")

    @property
    def recipe(self) -> TrainRecipe:
        from dataclasses import fields

        return TrainRecipe(**{f.name: getattr(self, f.name) for f in fields(TrainRecipe)})


def kl_coefficient(config: TrainRecipe, step: int) -> float:
    """Linear anneal from kl_start to kl_end over the run."""
    frac = step / max(1, config.steps - 1)
    return config.kl_start + (config.kl_end - config.kl_start) * frac


def fill_fields_missing_from(saved: dict) -> dict:
    """A saved configuration (a checkpoint's config.json) as the run it describes would be configured today.

    A field added since it was written takes what the run did before the field existed: its default then, which is
    its default now except for ``history_decay``, whose default moved from 0 (the latest visit only) to 1, so a
    knapsack run saved before the field existed kept the latest visit only. Under uniform allocation the decay is
    unused and can only be at its default, so a uniform run saved while the default was 0 resumes too.
    """
    before = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    if saved.get("allocation") == "knapsack":
        before["history_decay"] = 0.0
    filled = {**{k: v for k, v in before.items() if k not in saved}, **saved}
    if filled.get("allocation", "uniform") == "uniform":
        filled["history_decay"] = HISTORY_DECAY_DEFAULT
    return filled
