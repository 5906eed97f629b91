"""The knapsack allocation on a simulated policy, against uniform allocation and priors. Prints JSON last.

Each training prompt of the embedded default (``benchmarks/rollouts.py``) gets a success rate measured from the SFT base
with ``--measure-n`` samples; then steps are simulated from those rates (outcomes drawn as Bernoulli trials, no
training): uniform allocation (batch_prompts × n), uniform over the pool (its ``--candidate-prompts`` prompts with the
budget's even share each), and the knapsack allocation of the same budget over that pool and over uniform's own prompts
(same pool), through the trainer's own ``allocate`` and ``SuccessHistory``, at several priors (0: empirical Bayes, the
trainer's default; > 0: pseudo-samples centred on the pooled rate), and the same two knapsacks given every prompt's true
rate at that step (``oracle``, ``oracle-same-pool``: in expected prompts with a gradient per step no allocation of the
same candidates under the same constraints can beat them, so they bound what any estimate of the rates can add there;
they do not maximise, and do not bound, the share of samples). ``--drifts`` move every prompt's rate by that much in
logits per step, as a learning policy's might, so that the history goes stale; ``--history-decays`` runs the knapsack
arms at each history decay (the trainer's ``history_decay``: what a prompt's earlier visits count for; 0 keeps its
latest visit only, the trainer's default until 2026-11-22, and is this script's default so that its arm names mean
what they meant in earlier result files; the trainer's default is now 1). Figures, averaged over steps and seeds:
prompts with a GRPO gradient (a group not all-equal) per step as drawn, and its expectation given the true rates and the allocation (``expected_...``: what the
oracle maximises and the knapsack maximises by its estimates, without the outcomes' noise; per seed too, for paired
comparisons), and the share of samples in such groups (Knapsack RL's effective-gradient ratio, which uneven allocation
raises at low success rates), each with a t interval over seeds. It isolates the allocation from learning: cheap, and a
guide for the defaults only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.special import expit, logit
from scipy.stats import binom

from infertune.train import TrainConfig, Trainer
from infertune.train.allocation import SuccessHistory, allocate, outcome_values, solve

from rollouts import TASK_OPTIONS, base_model, commit, t_interval  # noqa: E402  (the script's own folder)


def oracle_allocation(rates: np.ndarray, budget: int, min_n: int, max_n: int) -> np.ndarray:
    """The knapsack allocation with every prompt's true success rate known: no allocation of the same candidates under
    the same constraints has a higher expected count of prompts with a gradient (the share of samples it does not
    bound)."""
    table = outcome_values("grpo", 1, max_n)
    sizes, correct = np.arange(max_n + 1)[None, :, None], np.arange(max_n + 1)[None, None, :]
    pmf = binom.pmf(correct, sizes, np.asarray(rates)[:, None, None])
    return solve((pmf * table[None]).sum(axis=2), budget, min_n)


def simulate(p: np.ndarray, *, arm: str, strength: float, steps: int, batch_prompts: int, n: int, pool: int,
             drift: float, seed: int, decay: float = 0.0) -> tuple[float, float, float]:
    """(prompts with a gradient per step, share of samples in them, expected prompts with a gradient per step) of
    one simulated run: the first two as drawn, the third computed from the true rates and the allocation, without
    the outcomes' noise. Arms ``oracle`` and ``oracle-same-pool`` are the knapsack over the pool and over uniform's
    prompts with the true rates."""
    ids = [str(i) for i in range(p.size)]
    outcomes = np.random.default_rng([seed, 1])
    history = SuccessHistory(decay=decay)
    base_logits = logit(np.clip(p, 1e-4, 1 - 1e-4))
    informative, shares, expected = [], [], []
    for step in range(steps):
        rates = expit(base_logits + drift * step) if drift else p
        draw = np.random.default_rng([seed, step])
        chosen = draw.choice(p.size, size=pool if arm in ("knapsack", "uniform-pool", "oracle") else batch_prompts,
                             replace=False)
        if arm == "uniform":
            sizes = np.full(batch_prompts, n)
        elif arm == "uniform-pool":
            sizes = np.full(pool, batch_prompts * n // pool)
        elif arm in ("oracle", "oracle-same-pool"):
            sizes = oracle_allocation(rates[chosen], batch_prompts * n, 2, 4 * n)
            chosen, sizes = chosen[sizes > 0], sizes[sizes > 0]
        else:
            sizes = allocate([ids[i] for i in chosen], history, objective="grpo", k=1, budget=batch_prompts * n,
                             min_n=2, max_n=4 * n, prior_strength=strength)
            chosen, sizes = chosen[sizes > 0], sizes[sizes > 0]
        rows = [(outcomes.random(s) < rates[i]).astype(float) for i, s in zip(chosen, sizes)]
        history.record([ids[i] for i in chosen], rows)
        mixed = np.array([0 < r.sum() < r.size for r in rows])
        informative.append(mixed.sum())
        shares.append(sizes[mixed].sum() / sizes.sum())
        q = rates[chosen]
        expected.append(float(np.sum(1 - q**sizes - (1 - q) ** sizes)))
    return float(np.mean(informative)), float(np.mean(shares)), float(np.mean(expected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--measure-n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--candidate-prompts", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.5, 1.0, 4.0, 16.0])
    parser.add_argument("--drifts", type=float, nargs="+", default=[0.0, 0.03])
    parser.add_argument("--history-decays", type=float, nargs="+", default=[0.0],
                        help="the knapsack arms' history decay (0: the latest visit only; the trainer's default is "
                             "now 1); arms at another decay than 0 are named '<arm> history_decay=<d>'")
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
    results = {}
    for drift in args.drifts:
        def mean_over_seeds(arm: str, strength: float, decay: float = 0.0) -> dict:
            runs = np.array([simulate(p, arm=arm, strength=strength, drift=drift, seed=s, decay=decay, **common)
                             for s in range(args.seeds)])
            return {"informative_prompts_per_step": t_interval(runs[:, 0]),
                    "nonzero_gradient_share": t_interval(runs[:, 1]),
                    "expected_informative_prompts_per_step": t_interval(runs[:, 2]),
                    "per_seed": {"informative_prompts_per_step": runs[:, 0].tolist(),
                                 "expected_informative_prompts_per_step": runs[:, 2].tolist()}}

        row = {arm: mean_over_seeds(arm, 0.0) for arm in ("uniform", "uniform-pool", "oracle", "oracle-same-pool")}
        for decay in args.history_decays:
            for arm in ("knapsack", "knapsack-same-pool"):
                name = arm if decay == 0 else f"{arm} history_decay={decay:g}"
                row[name] = {str(strength): mean_over_seeds(arm, strength, decay) for strength in args.strengths}
        results[str(drift)] = row
        print(f"drift {drift}: {json.dumps(row)}", flush=True)
    print(json.dumps({"commit": commit(), "prompts": int(p.size), "mean_success_rate": float(p.mean()),
                      "never_solved_share": float((p == 0).mean()), "by_drift_arm_prior_strength": results, **common,
                      "min_n": 2, "max_n": 4 * args.n, "seeds": args.seeds, "measure_n": args.measure_n,
                      "strengths": args.strengths, "drifts": args.drifts, "history_decays": args.history_decays,
                      "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
