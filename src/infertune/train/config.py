"""What a training run is: a recipe (how to sample, weigh and step) and the run around it (task, model, objective).

The recipe is its own dataclass so that other workflows (the demo) embed it instead of restating its fields; the
command line flattens both into one option per field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infertune.objectives import OBJECTIVES, get
from infertune.tasks import TaskSpec
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
class TrainConfig(TaskSpec, TrainRecipe):
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
