"""Training for the inference strategy: one loop for every objective (``loop``), its configuration (``config``),
the log-probabilities it follows (``logprobs``), where each step's samples go (``allocation``: Knapsack RL), what
its samples say about the run (``telemetry``) and how its sampling temperature moves (``temperature``: B-STaR)."""

from infertune.tasks.splits import HELD_OUT_SEED, split_problems
from infertune.train.config import RolloutRecipe, TrainConfig, TrainRecipe, kl_coefficient
from infertune.train.logprobs import sequence_logprobs
from infertune.train.loop import LOG_FIELDS, Batch, Trainer
from infertune.train.telemetry import TELEMETRY_FIELDS, progress_line

__all__ = ["Batch", "HELD_OUT_SEED", "LOG_FIELDS", "RolloutRecipe", "TELEMETRY_FIELDS", "TrainConfig", "TrainRecipe",
           "Trainer", "kl_coefficient", "progress_line", "sequence_logprobs", "split_problems"]
