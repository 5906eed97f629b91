"""Knapsack against uniform rollout allocation on the embedded default: the share of non-zero gradients, and
held-out pass@1 and pass@k after a fixed number of steps, over several seeds. Prints a JSON object as its last line.

The embedded default is the tiny model on ``arith`` (3 numbers up to 9, targets up to 60), taught by supervised
learning as the trainer's tests do, then trained from that same base with ``--objective`` (default GRPO, Knapsack
RL's setting) under four arms with the same total samples per step (batch_prompts x n), seed numbers and steps:

- ``uniform`` draws batch_prompts prompts per step and gives each n samples;
- ``knapsack`` draws a pool of ``--candidate-prompts`` (default twice batch_prompts) and spreads the same budget
  over it from their success history: choosing from a larger pool together with reallocating n;
- ``uniform-pool`` draws the pool ``knapsack`` draws (same seed, same draw) and gives each of its prompts the
  budget's even share (64 / 16 = 4): what sampling more prompts with fewer samples each gives without any history,
  the control that tells the allocation's own contribution apart from the pool's;
- ``knapsack-same-pool`` draws the very prompts uniform draws (same seed, same draw) and only reallocates n among
  them: the like-for-like control. It may skip a prompt (n_i = 0) but never adds one, and since it sees half as many
  prompts per step as ``knapsack`` its prompts come back about half as often, so it allocates from less history:
  ``knapsack`` minus this arm is not the pool's effect alone.

With GRPO a prompt's expected weight grows with its n, so under knapsack allocation prompts given more samples also
weigh more; ``--objective rloo`` keeps every prompt's expectation at any n. The task is kept small (``--size``) so
that prompts come back several times in a run, as they do over the epochs of the paper's runs, which is where a
history exists to allocate from; ``--history-decay`` sets what the knapsack arms' history keeps of a prompt's earlier
visits (the trainer's ``history_decay``: 1, the default, every visit alike; 0, its latest visit only, the default
until 2026-11-22 and in the result files written before then).

Figures: ``nonzero_gradient_share_*`` is the share of a step's samples that belong to prompts whose GRPO weights are
not all zero (Knapsack RL's effective-gradient ratio: the part of the sampled data that contributes to the update),
averaged over steps, then over seeds with a t interval over seeds; ``relative_gain`` is knapsack / uniform − 1 per
seed, averaged with a t interval (paired by seed), and ``relative_gain_same_pool`` the same for the control arm.
``nonzero_prompt_share_*`` counts prompts instead of samples (the two agree under uniform allocation; knapsack over
the larger pool also spreads part of the budget thinly over more prompts, which lowers the share of prompts but not
their number; over the same pool it can only concentrate samples or skip a prompt) and
``informative_prompts_per_step_*`` counts them. At low success rates the share of samples rises with any uneven
allocation, informed or not (8 prompts at p = 0.056 given 4 x 14 + 4 x 2 samples instead of 8 x 8 raise it from
0.37 to 0.50 with fewer prompts that have a gradient), and spreading samples thinly lowers it, so the count is the
figure to read: ``informative_prompts_per_step_difference`` (knapsack − uniform, per seed, t interval over seeds)
also grows with the pool's size alone, and ``informative_prompts_per_step_knapsack_minus_uniform_pool`` (knapsack −
uniform over the same draw of the pool) is the allocation's own contribution; ``..._difference_same_pool`` compares
reallocation over uniform's own prompts. Held-out pass@1 and pass@k are measured on the held-out problems with
``--eval-n`` samples each, with method-level intervals over seeds and problems
(``infertune.estimators.method_interval``; differences paired by problem).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from scipy import stats

from provenance import commit  # noqa: F401  (rollouts_simulated imports it from here)

from infertune.estimators import method_difference, method_interval
from infertune.evaluation import per_prompt_curves
from infertune.models.base import SamplingParams
from infertune.store import scored_from_arrays
from infertune.train import TrainConfig, Trainer
from infertune.train.allocation import HISTORY_DECAY_DEFAULT

TASK_OPTIONS = ["numbers=3", "max_number=9", "max_target=60"]


def base_model(folder: Path, steps: int) -> str:
    """The SFT base of the trainer's tests (reused when already built)."""
    model = folder / f"base-{steps}"
    if not (model / "config.json").exists():
        trainer = Trainer(TrainConfig(task_option=["size=1200", *TASK_OPTIONS], objective="sft", steps=steps,
                                      batch_prompts=64, lr=3e-3, eval_prompts=100, n=1, k=1, max_new_tokens=12,
                                      out=str(folder / "base-run"), checkpoint_every=0))
        trainer.run()
        trainer.save_model(model)
    return str(model)


def held_out(trainer: Trainer, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per held-out problem: pass@1 and pass@k of n samples at the run's temperature (through the evaluation core)."""
    problems = trainer.eval_problems
    trainer.model.eval()
    completions = trainer.sampler.sample([p.prompt for p in problems], SamplingParams(
        n=n, temperature=trainer.config.temperature, max_new_tokens=trainer.config.max_new_tokens, seed=7919))
    texts = [c.text for row in completions for c in row]
    rewards = np.asarray(trainer.task.rewards([p for p in problems for _ in range(n)], texts)).reshape(-1, n)
    answers = np.full(rewards.shape, None, dtype=object)
    curve = per_prompt_curves(scored_from_arrays([p.id for p in problems], rewards, answers), rules=["pass"])["pass"]
    return curve.values[:, 0], curve.values[:, k - 1]


def t_interval(values, confidence: float = 0.95) -> dict:
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "low": None, "high": None, "seeds": int(x.size)}
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "seeds": int(x.size)}


def interval(result) -> dict:
    return {"mean": float(result.mean), "low": float(result.low), "high": float(result.high)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--candidate-prompts", type=int, default=16)
    parser.add_argument("--objective", default="grpo")
    parser.add_argument("--size", type=int, default=300, help="arith problems (100 held out, the rest trained on)")
    parser.add_argument("--eval-n", type=int, default=16)
    parser.add_argument("--k", type=int, default=8, help="the k of the held-out pass@k")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--base-steps", type=int, default=400)
    parser.add_argument("--prior-strength", type=float, default=0.0,
                        help="knapsack arms' prior (0: empirical Bayes, the trainer's default)")
    parser.add_argument("--history-decay", type=float, default=HISTORY_DECAY_DEFAULT,
                        help="knapsack arms' weight of a prompt's earlier visits (1, the trainer's default: every "
                             "visit alike; 0: the latest only)")
    parser.add_argument("--work", default=os.environ.get("INFERTUNE_BENCH_DIR", "/tmp/infertune-bench-rollouts"))
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()
    work = Path(args.work)
    base = base_model(work, args.base_steps)
    base_seconds = time.perf_counter() - started

    pool = args.candidate_prompts or 2 * args.batch_prompts
    prior = {"prior_strength": args.prior_strength, "history_decay": args.history_decay}
    budget = args.batch_prompts * args.n
    if budget % pool:
        raise SystemExit(f"the uniform-pool arm needs the budget ({budget}) to be a multiple of the pool ({pool})")
    shape = {"batch_prompts": args.batch_prompts, "n": args.n}
    arms = {"uniform": ("uniform", shape), "knapsack": ("knapsack", {**shape, "candidate_prompts": pool, **prior}),
            "knapsack-same-pool": ("knapsack", {**shape, "candidate_prompts": args.batch_prompts, **prior}),
            "uniform-pool": ("uniform", {"batch_prompts": pool, "n": budget // pool})}

    def config_of(arm: str, seed: int) -> TrainConfig:
        allocation, extra = arms[arm]
        return TrainConfig(task_option=[f"size={args.size}", *TASK_OPTIONS], model=base, objective=args.objective,
                           steps=args.steps, k=1, lr=args.lr, eval_prompts=100, max_new_tokens=12, seed=seed,
                           checkpoint_every=0, out=str(work / f"{arm}-seed{seed}"), allocation=allocation, **extra)

    for arm in arms:  # an objective or option that an arm refuses fails here, before any run
        config_of(arm, 0)
    knapsack_config = config_of("knapsack", 0)
    per_seed = {arm: {"prompt_share": [], "sample_share": [], "informative": [], "pass1": [], "passk": [],
                      "seconds": []} for arm in arms}
    for seed in range(args.seeds):
        for arm in arms:
            config = config_of(arm, seed)
            shutil.rmtree(work / f"{arm}-seed{seed}", ignore_errors=True)  # a fresh run, not a resumed one
            t = time.perf_counter()
            trainer = Trainer(config)
            rows = trainer.run()
            pass1, passk = held_out(trainer, args.eval_n, args.k)
            got = per_seed[arm]
            got["prompt_share"].append(np.mean([r["nonzero_prompts"] for r in rows]))
            got["sample_share"].append(np.mean([r["nonzero_samples"] for r in rows]))
            got["informative"].append(np.mean([r["nonzero_prompts"] * r["prompts"] for r in rows]))
            got["pass1"].append(pass1)
            got["passk"].append(passk)
            got["seconds"].append(time.perf_counter() - t)
            print(f"seed {seed} {arm}: non-zero gradient share {got['sample_share'][-1]:.3f} (of prompts "
                  f"{got['prompt_share'][-1]:.3f}), held-out pass@1 {pass1.mean():.3f} pass@{args.k} "
                  f"{passk.mean():.3f}, {got['seconds'][-1]:.0f} s", flush=True)

    u, kn, same = per_seed["uniform"], per_seed["knapsack"], per_seed["knapsack-same-pool"]
    up = per_seed["uniform-pool"]
    gain = np.array(kn["sample_share"]) / np.array(u["sample_share"]) - 1
    prompt_gain = np.array(kn["prompt_share"]) / np.array(u["prompt_share"]) - 1
    same_gain = np.array(same["sample_share"]) / np.array(u["sample_share"]) - 1
    informative_gain = np.array(kn["informative"]) - np.array(u["informative"])
    informative_gain_same = np.array(same["informative"]) - np.array(u["informative"])
    result = {
        "informative_prompts_per_step_difference": t_interval(informative_gain),
        "informative_prompts_per_step_difference_same_pool": t_interval(informative_gain_same),
        "informative_prompts_per_step_uniform_pool": t_interval(up["informative"]),
        "informative_prompts_per_step_knapsack_minus_uniform_pool": t_interval(np.array(kn["informative"])
                                                                               - np.array(up["informative"])),
        "nonzero_gradient_share_uniform_pool": t_interval(up["sample_share"]),
        "held_out_pass_at_1_knapsack_minus_uniform_pool": interval(method_difference(np.array(kn["pass1"]),
                                                                                     np.array(up["pass1"]))),
        f"held_out_pass_at_{args.k}_knapsack_minus_uniform_pool": interval(method_difference(
            np.array(kn["passk"]), np.array(up["passk"]))),
        "setting": {"commit": commit(), "lr": args.lr, "prior_strength": args.prior_strength,
                    "history_decay": args.history_decay,
                    "min_n": knapsack_config.samples_min_n, "max_n": knapsack_config.samples_max_n,
                    "task": "arith", "task_options": [f"size={args.size}", *TASK_OPTIONS], "model": "tiny (SFT base, "
                    f"{args.base_steps} steps)", "objective": args.objective, "steps": args.steps,
                    "batch_prompts": args.batch_prompts, "n": args.n, "samples_per_step": args.batch_prompts * args.n,
                    "candidate_prompts": pool, "prompts_drawn_per_step": {"uniform": args.batch_prompts,
                    "knapsack": pool, "knapsack-same-pool": args.batch_prompts, "uniform-pool": pool},
                    "seeds": args.seeds, "eval_n": args.eval_n,
                    "held_out_problems": 100, "k": args.k},
        "nonzero_gradient_share_uniform": t_interval(u["sample_share"]),
        "nonzero_gradient_share_knapsack": t_interval(kn["sample_share"]),
        "relative_gain": t_interval(gain),
        "relative_gain_target": 0.2,
        "target_met": bool(gain.mean() >= 0.2),
        "nonzero_gradient_share_knapsack_same_pool": t_interval(same["sample_share"]),
        "relative_gain_same_pool": t_interval(same_gain),
        "target_met_same_pool": bool(same_gain.mean() >= 0.2),
        "relative_gain_prompts_same_pool": t_interval(np.array(same["prompt_share"]) / np.array(u["prompt_share"]) - 1),
        "nonzero_prompt_share_knapsack_same_pool": t_interval(same["prompt_share"]),
        "informative_prompts_per_step_knapsack_same_pool": t_interval(same["informative"]),
        "nonzero_prompt_share_uniform": t_interval(u["prompt_share"]),
        "nonzero_prompt_share_knapsack": t_interval(kn["prompt_share"]),
        "relative_gain_prompts": t_interval(prompt_gain),
        "informative_prompts_per_step_uniform": t_interval(u["informative"]),
        "informative_prompts_per_step_knapsack": t_interval(kn["informative"]),
        "held_out_pass_at_1_uniform": interval(method_interval(np.array(u["pass1"]))),
        "held_out_pass_at_1_knapsack": interval(method_interval(np.array(kn["pass1"]))),
        "held_out_pass_at_1_difference": interval(method_difference(np.array(kn["pass1"]), np.array(u["pass1"]))),
        f"held_out_pass_at_{args.k}_uniform": interval(method_interval(np.array(u["passk"]))),
        f"held_out_pass_at_{args.k}_knapsack": interval(method_interval(np.array(kn["passk"]))),
        f"held_out_pass_at_{args.k}_difference": interval(method_difference(np.array(kn["passk"]),
                                                                              np.array(u["passk"]))),
        "held_out_pass_at_1_knapsack_same_pool": interval(method_interval(np.array(same["pass1"]))),
        f"held_out_pass_at_{args.k}_knapsack_same_pool": interval(method_interval(np.array(same["passk"]))),
        "held_out_pass_at_1_difference_same_pool": interval(method_difference(np.array(same["pass1"]),
                                                                              np.array(u["pass1"]))),
        f"held_out_pass_at_{args.k}_difference_same_pool": interval(method_difference(np.array(same["passk"]),
                                                                                        np.array(u["passk"]))),
        "run_seconds": {arm: float(np.sum(per_seed[arm]["seconds"])) for arm in arms},
        "base_seconds": base_seconds,
        "total_seconds": time.perf_counter() - started,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
