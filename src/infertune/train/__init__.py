"""Training for the inference strategy: one loop for every objective (``loop``), its configuration (``config``),
and the log-probabilities it follows (``logprobs``)."""

from infertune.tasks.splits import HELD_OUT_SEED, split_problems
from infertune.train.config import TrainConfig, TrainRecipe, kl_coefficient
from infertune.train.logprobs import sequence_logprobs
from infertune.train.loop import LOG_FIELDS, Batch, Trainer

__all__ = ["Batch", "HELD_OUT_SEED", "LOG_FIELDS", "TrainConfig", "TrainRecipe", "Trainer", "kl_coefficient",
           "sequence_logprobs", "split_problems"]
