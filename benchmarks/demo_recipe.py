"""How the demo's fine-tuning recipe was chosen: a small grid on validation problems only, never on test problems.

For each arm of the demo (RLOO on the reward, RLOO on the verifier's score, the exact Best-of-k gradient selecting by
the verifier, and by the reward) it fine-tunes the demo's base model with each learning rate of the grid (and, for
the Best-of-k arms, each k), evaluates on the validation problems, and reports the metric each arm is compared on in
the demo (pass@32 for the reward-trained arms, BoN@32 for the verifier ones). It prints one JSON object as its last
line: every run's figures, the best learning rate per arm and the `--arm-lrs` value they make.

    python benchmarks/demo_recipe.py [--setting forms] [--seed 0] [--lrs 5e-5,1e-4,2e-4] [--ks 8] [--steps 25]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from infertune.demo.run import ARMS, DemoConfig, Stages, base_model, evaluate, fine_tune, fit_verifier
from infertune.demo.settings import get_setting
from infertune.progress import NullProgress


TUNING_SEED_INDEX = 100  # the demo fine-tunes with seed indices 0, 1, 2: tuning never reuses their seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="forms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lrs", default="1e-4,2e-4,4e-4,8e-4")
    parser.add_argument("--ks", default="8")
    parser.add_argument("--steps", type=int, default=None, help="Fine-tuning steps (default: the demo's).")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out or tempfile.mkdtemp(prefix="infertune-recipe-"))
    config = DemoConfig(out=str(out), setting=args.setting, seed=args.seed)
    if args.steps:
        config = replace(config, recipe=replace(config.recipe, steps=args.steps))
    setting = get_setting(config.setting)
    problems = setting.problems(config.seed, config.validation_prompts, config.eval_prompts)
    progress, stages = NullProgress(), Stages()
    base = base_model(config, setting, problems, progress, stages)
    verifier, quality = fit_verifier(config, setting, problems, base, out, progress, stages)
    k_eval = config.summary_k
    runs = []
    for arm in ARMS:
        label, objective = arm[0], arm[1]
        metric = "bon" if "verifier" in label or label == "rl-v" else "pass"
        ks = [int(x) for x in args.ks.split(",")] if objective == "bon-exact" else [config.recipe.k]
        for lr in (float(x) for x in args.lrs.split(",")):
            for k in ks:
                trial = replace(config, recipe=replace(config.recipe, k=k), arm_lrs=f"{label}={lr}")
                name = f"{label.replace('/', '-')}-lr{lr:g}-k{k}"
                model, tok = fine_tune(trial, setting, problems, base, verifier, arm, TUNING_SEED_INDEX,
                                       out / "train" / name, progress)
                curves = evaluate(model, tok, problems.validation, problems.validation_task, verifier, trial, setting,
                                  trial.recipe.temperature, out / "evals" / name, progress, name)
                runs.append({"arm": label, "lr": lr, "k": k, "steps": trial.recipe.steps, "metric": metric,
                             "validation": float(curves[metric][:, k_eval - 1].mean()),
                             "pass@32": float(curves["pass"][:, k_eval - 1].mean()),
                             "bon@32": float(curves["bon"][:, k_eval - 1].mean())})
                print(json.dumps(runs[-1]), flush=True)
    best = {}
    for label in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == label]
        best[label] = max(mine, key=lambda r: r["validation"])
    arm_lrs = ",".join(f"{label}={b['lr']:g}" for label, b in best.items())
    print(json.dumps({"setting": args.setting, "seed": args.seed, "validation_problems": len(problems.validation),
                      "verifier_auc": quality["auc"], "runs": runs, "best": best,
                      "arm_lrs": arm_lrs, "demo_default_arm_lrs": config.arm_lrs,
                      "seconds": round(time.perf_counter() - started, 1), "out": str(out)}))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
