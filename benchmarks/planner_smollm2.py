"""SmolLM2-135M-Instruct through the planner's whole path, with its own chat format and steps at blank lines.

A small, slow run that shows the path works on a real pretrained chat model, not a measurement of what it saves:
sample a parallel pool with the chat template, fit a PRM from Monte-Carlo rollouts of SmolLM2 (a small character-level
classifier reading the question and the partial answer, steps at blank lines), run beam search against it and
revision chains (the reviser is SmolLM2 itself, prompted with the question and its earlier attempts: fine-tuning a
revision model is out of reach on this machine's CPU), plan with cross-validation and the guard, and apply the plan
to new prompts with ``eval --plan``. Prints a JSON object as its last line, with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from infertune.models.loading import cache_dir, smollm2_dir
from infertune.planning import PlanConfig, plan_run, write_plan
from infertune.planning.runs import open_policy
from infertune.sampling import SampleConfig, sample_run
from infertune.scoring import score_store
from infertune.store import SampleStore
from infertune.tasks import load
from infertune.tasks.steps import step_format
from infertune.tasks.splits import split_problems
from infertune.verify import build_verifier
from infertune.verify.prm_labels import PRMTrainConfig, fit_prm

TASK = "reasoning-gym:basic_arithmetic"
OPTIONS = ["size=400", "min_terms=2", "max_terms=3", "max_digits=2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--prm-prompts", type=int, default=12)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--task-option", action="append", default=None,
                        help=f"Options of {TASK}, repeatable (default: {' '.join(OPTIONS)}).")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    options = args.task_option or OPTIONS
    started, load_start = time.perf_counter(), os.getloadavg()
    out = Path(args.out or cache_dir() / ("planner-smollm2" + ("" if options == OPTIONS else "-" + "-".join(options))))
    task = load(TASK, **{k: int(v) for k, v in (o.split("=") for o in options)})
    train, held_out = split_problems(task, args.prompts)
    plan_prompts = held_out[: args.prompts]  # the plan is applied to new prompts: the generator's seed 1

    prm_dir = out / "prm"
    if not (prm_dir / "prm.json").exists():
        policy = open_policy("smollm2", chat=True, max_rows=64)
        prm, report = fit_prm(task, train[: args.prm_prompts], train[args.prm_prompts : 2 * args.prm_prompts],
                              policy.sampler, PRMTrainConfig(answers=2, rollouts=2, temperature=0.7,
                                                             max_new_tokens=args.max_new_tokens, train_steps=150),
                              render=policy.render, log=print)
        prm.save(prm_dir)
        (prm_dir / "quality.json").write_text(json.dumps(report, indent=1))
    quality = json.loads((prm_dir / "quality.json").read_text())
    print(f"PRM fitted ({time.perf_counter() - started:.0f} s)", flush=True)

    run = out / "run"
    sample_run(SampleConfig(task=TASK, task_option=options, model="smollm2", n=args.n, temperatures=[0.7],
                            max_new_tokens=args.max_new_tokens, out=str(run), batch_prompts=4),
               only={p.id for p in plan_prompts}, task=task)
    verifiers = [f"prm={prm_dir}"]
    score_store(SampleStore(run), task, [build_verifier(v, task) for v in verifiers])
    steps = [len(step_format("blank-line").split(c or "")) for c in SampleStore(run).read()
             .column("completion").to_pylist()]
    print(f"pool sampled ({time.perf_counter() - started:.0f} s)", flush=True)

    config = PlanConfig(budget=4, curve=[4.0], verifier="prm", probe_samples=1, bins=2, folds=2,
                        prm=str(prm_dir), search_budgets=[4], width=2, lookahead=0, search_runs=1,
                        max_steps=4, max_step_tokens=args.max_new_tokens, revision_model=str(smollm2_dir()),
                        chains=2, attempts=2, window=1, score_with=verifiers)
    result = plan_run(SampleStore(run), config, log=print)
    paths = write_plan(result, run / "plan")
    print(f"planned ({time.perf_counter() - started:.0f} s)", flush=True)

    from infertune.workflows import EvalRunConfig, eval_run

    applied = out / "applied"
    outcome = eval_run(EvalRunConfig(task=TASK, task_option=options + ["seed=1"], model="smollm2", out=str(applied),
                                     max_new_tokens=args.max_new_tokens, plan=str(paths["plan"]),
                                     verifier=verifiers, batch_prompts=4, limit=args.prompts))
    r = result.result
    print(json.dumps({
        "model": "SmolLM2-135M-Instruct (chat template)", "task": TASK, "task_options": options,
        "plan_prompts": len(plan_prompts), "n": args.n, "mean_steps_per_answer": sum(steps) / max(1, len(steps)),
        "prm_auc_by_step": quality["auc_by_step"], "prm_prefixes": quality["prefixes"],
        "strategies": result.strategies, "adaptive_accuracy": r.adaptive_accuracy,
        "adaptive_spend": r.adaptive_spend, "uniform_accuracy": r.uniform_accuracy,
        "efficiency_ratio": r.efficiency_ratio, "efficiency_ratio_ci": r.efficiency_ratio_ci,
        "plan": [b["label"] for b in r.per_bin], "plan_is_uniform": r.guard["plan_is_uniform"],
        "applied": outcome.applied_plan, "seconds": round(time.perf_counter() - started, 1),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }, default=float))


if __name__ == "__main__":
    main()
