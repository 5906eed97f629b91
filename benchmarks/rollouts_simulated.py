"""The knapsack allocation on a frozen policy: where its default prior strength comes from. Prints JSON last.

Each training prompt of the embedded default (``benchmarks/rollouts.py``) gets a success rate measured from the SFT
base with ``--measure-n`` samples; then steps are simulated with those rates held fixed (outcomes drawn as Bernoulli
trials, no training): uniform allocation (batch_prompts × n) against the knapsack allocation of the same budget over
``--candidate-prompts`` prompts, through the trainer's own ``allocate`` and ``SuccessHistory``, at several prior
strengths. The figure is the share of samples in groups that are not all-equal (GRPO's non-zero gradients),
averaged over steps and seeds. It isolates the allocation from learning: cheap, and a guide for the defaults only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from infertune.train import TrainConfig, Trainer
from infertune.train.allocation import SuccessHistory, allocate

from rollouts import TASK_OPTIONS, base_model  # noqa: E402  (benchmarks/ is the script's own folder)


def simulate(p: np.ndarray, *, knapsack: bool, strength: float, steps: int, batch_prompts: int, n: int, pool: int,
             seed: int) -> float:
    ids = [str(i) for i in range(p.size)]
    outcomes = np.random.default_rng([seed, 1])
    history = SuccessHistory()
    shares = []
    for step in range(steps):
        draw = np.random.default_rng([seed, step])
        if knapsack:
            chosen = draw.choice(p.size, size=pool, replace=False)
            sizes = allocate([ids[i] for i in chosen], history, objective="grpo", k=1, budget=batch_prompts * n,
                             min_n=2, max_n=4 * n, prior_strength=strength)
            chosen, sizes = chosen[sizes > 0], sizes[sizes > 0]
        else:
            chosen = draw.choice(p.size, size=batch_prompts, replace=False)
            sizes = np.full(batch_prompts, n)
        rows = [(outcomes.random(s) < p[i]).astype(float) for i, s in zip(chosen, sizes)]
        history.record([ids[i] for i in chosen], rows)
        informative = np.array([0 < r.sum() < r.size for r in rows])
        shares.append(sizes[informative].sum() / sizes.sum())
    return float(np.mean(shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--measure-n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--candidate-prompts", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--base-steps", type=int, default=400)
    parser.add_argument("--work", default="/tmp/infertune-bench-rollouts")
    args = parser.parse_args()
    started = time.perf_counter()
    base = base_model(Path(args.work), args.base_steps)
    trainer = Trainer(TrainConfig(task_option=[f"size={args.size}", *TASK_OPTIONS], model=base, objective="grpo", n=8,
                                  k=1, eval_prompts=100, max_new_tokens=12, checkpoint_every=0,
                                  out=str(Path(args.work) / "simulated")))
    problems = trainer.train_problems
    completions = trainer._sample(problems, [args.measure_n] * len(problems), 1.0, seed=1)
    p = np.array([r.mean() for r in trainer._rewards(problems, completions)])
    common = dict(steps=args.steps, batch_prompts=args.batch_prompts, n=args.n, pool=args.candidate_prompts)
    uniform = np.mean([simulate(p, knapsack=False, strength=1.0, seed=s, **common) for s in range(args.seeds)])
    knapsack = {str(strength): float(np.mean([simulate(p, knapsack=True, strength=strength, seed=s, **common)
                                              for s in range(args.seeds)])) for strength in args.strengths}
    print(json.dumps({"prompts": int(p.size), "mean_success_rate": float(p.mean()),
                      "never_solved_share": float((p == 0).mean()), "nonzero_gradient_share_uniform": float(uniform),
                      "nonzero_gradient_share_knapsack_by_prior_strength": knapsack, **common, "seeds": args.seeds,
                      "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
