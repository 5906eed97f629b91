"""Compute-optimal planning on the embedded default: parallel sampling, PRM search and revisions, per difficulty bin.

Builds (or reuses, cached under infertune's cache dir; see planner_parts.py) the base policy (the tiny model taught
arith by supervised learning with the Trainer), its learned outcome verifier, a process reward model from
Monte-Carlo rollouts and a revision model fine-tuned on its own attempts. On held-out problems (``--split test``,
400 problems never used for any choice; ``validation``, 200 others, for trying things) it samples the parallel pool,
runs every search and revision strategy (stores under the run folder, resumable), and plans with ``infertune
plan``'s code: budgets in sample-equivalents (the mean tokens of one sample), counting probes, every generated
token, lookahead rollouts and re-read revision contexts; difficulty predicted from probe samples; cross-validated
with the never-worse guard.

Prints a JSON object as its last line: efficiency_ratio at --budget (the compute uniform Best-of-N needs to match
the plan, divided by the plan's real spend), its bootstrap interval over prompts (each resample re-runs the whole
cross-validated plan, guard included), the ratio for every budget of the curve, the accuracy of each method family
and the quality of the verifiers, with the machine's load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import planner_parts as parts
from provenance import commit

from infertune.models.loading import cache_dir
from infertune.planning import PlanConfig, plan_run, write_plan
from infertune.planning.plots import plot_efficiency_curve
from infertune.sampling import SampleConfig, sample_run
from infertune.scoring import score_store
from infertune.store import SampleStore
from infertune.verify import build_verifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["validation", "test"], default="test")
    parser.add_argument("--task-options", default=",".join(parts.TASK_OPTIONS),
                        help="The arith task of the policy (the embedded default: 4 numbers); another setting gets "
                             "its own base, verifiers and cache folders.")
    parser.add_argument("--budget", type=float, default=8.0, help="Reference budget (sample-equivalents).")
    parser.add_argument("--curve", default="2,4,8,16,32,64")
    parser.add_argument("--prompts", type=int, default=None, help="Use only the first PROMPTS of the split.")
    parser.add_argument("--n", type=int, default=66, help="Parallel samples per prompt and temperature.")
    parser.add_argument("--temperatures", default="0.6,1.0")
    parser.add_argument("--probe-samples", type=int, default=1,
                        help="Probe samples per prompt (1 had the higher unguarded ratio than 2 or 4 on validation; "
                             "0: one bin, no probes).")
    parser.add_argument("--stop-rule", action=argparse.BooleanOptionalAction, default=True,
                        help="Value Best-of-N with a verifier stop rule (plan --stop-rule).")
    parser.add_argument("--keep-probes", action=argparse.BooleanOptionalAction, default=True,
                        help="Offer Best-of-N and its stop rule keeping the probes as candidates (plan "
                             "--keep-probes).")
    parser.add_argument("--stop-quantiles", default="0.5,0.75,0.9,0.95,0.98")
    parser.add_argument("--stop-caps", default="2,4,8,16,32,64")
    parser.add_argument("--search-budgets", default="4,8,16,32,64")
    parser.add_argument("--lookahead-budgets", default="4,8")
    parser.add_argument("--search-runs", type=int, default=2)
    parser.add_argument("--search-select", default="wmaj:learned",
                        help="Final choice of search: the outcome verifier (AUC 0.83 on training problems' samples) "
                             "rather than the PRM's last step (0.66 there); wmaj:prm to use the PRM.")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--attempts", type=int, default=4)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--prm-view", default="arith-partial", help="What the PRM reads (a task view).")
    parser.add_argument("--prm-answers", type=int, default=8, help="Policy answers labelled per PRM training problem.")
    parser.add_argument("--prm-steps", type=int, default=1500)
    parser.add_argument("--no-search", action="store_true")
    parser.add_argument("--no-revisions", action="store_true")
    parser.add_argument("--bootstrap", type=int, default=400,
                        help="Resamples of the ratio's interval, each re-running the whole cross-validated plan.")
    parser.add_argument("--guard-confidence", type=float, default=0.95,
                        help="Share of bootstrap resamples in which the guard needs the plan to win (0: the mean).")
    parser.add_argument("--fallback-se", type=float, default=1.0,
                        help="The guard's uniform fallback: the smallest N within this many standard errors of the "
                             "best (0: the best N on the training prompts).")
    parser.add_argument("--out", default=None, help="Run folder (default: in the cache, per split)")
    args = parser.parse_args()
    started, load_start = time.perf_counter(), os.getloadavg()
    options = args.task_options.split(",")
    base = parts.base_model(options=options)
    orm = parts.outcome_verifier(base, options=options)
    reviser = parts.revision_model(base, options=options)
    prm = parts.process_verifier(base, view=args.prm_view, answers=args.prm_answers, steps=args.prm_steps,
                                 options=options)
    _, validation, test = parts.splits(options)
    problems = (test if args.split == "test" else validation)[: args.prompts]
    task = parts.arith(options)
    variant = "" if options == parts.TASK_OPTIONS else "-" + hashlib.sha256(",".join(options).encode()).hexdigest()[:8]
    run = Path(args.out or cache_dir() / f"planner-bench-{args.split}-{len(problems)}{variant}")
    temperatures = [float(t) for t in args.temperatures.split(",")]
    sample_run(SampleConfig(task="arith", task_option=options, model=str(base), n=args.n,
                            temperatures=temperatures, max_new_tokens=16, out=str(run), batch_prompts=64),
               only={p.id for p in problems}, task=task)
    verifiers = [f"learned={orm}", f"prm={prm}"]
    store = SampleStore(run)
    score_store(store, task, [build_verifier(v, task) for v in verifiers])
    sampled = time.perf_counter() - started
    config = PlanConfig(budget=args.budget, curve=[float(b) for b in args.curve.split(",")], verifier="learned",
                        probe_samples=args.probe_samples, prm=None if args.no_search else str(prm),
                        stop_rule=args.stop_rule, keep_probes=args.keep_probes,
                        stop_quantiles=[float(q) for q in args.stop_quantiles.split(",")],
                        stop_caps=[int(c) for c in args.stop_caps.split(",")],
                        search_budgets=[int(b) for b in args.search_budgets.split(",")], width=4, lookahead=1,
                        lookahead_budgets=[int(b) for b in args.lookahead_budgets.split(",") if b],
                        search_runs=args.search_runs, search_select=args.search_select, max_steps=8,
                        max_step_tokens=16,
                        revision_model=None if args.no_revisions else str(reviser), chains=args.chains,
                        attempts=args.attempts, window=args.window, score_with=verifiers,
                        bootstrap=args.bootstrap, guard_confidence=args.guard_confidence,
                        fallback_se=args.fallback_se)
    result = plan_run(store, config, log=print)
    # For context only: the same plan with oracle difficulty (pass@1 from the rewards), which no new prompt has.
    oracle = plan_run(store, replace(config, difficulty="oracle", curve=[]), log=print).result
    paths = write_plan(result, run / "plan")
    plot_efficiency_curve(result.curve, run / "plan" / "curve.png",
                          title=f"embedded default, {args.split} split, {len(problems)} prompts")
    r = result.result
    for row in result.curve:
        if "skipped" not in row:
            print(f"budget {row['budget']:g}: adaptive {row['adaptive_accuracy']:.3f} at {row['adaptive_spend']:.2f} "
                  f"vs uniform {row['uniform_accuracy']:.3f}; ratio {row['efficiency_ratio']} "
                  f"{row['efficiency_ratio_ci']}; {', '.join(row['strategies'])}")
    quality = {name: json.loads((Path(path).parent / "quality.json").read_text()) for name, path in
               (("orm", orm), ("prm", prm))}
    print(json.dumps({
        "efficiency_ratio": r.efficiency_ratio, "efficiency_ratio_ci": r.efficiency_ratio_ci,
        "efficiency_ratio_ci_capped": r.efficiency_ratio_ci_capped,
        "efficiency_ratio_ci_over_budget": r.efficiency_ratio_ci_over_budget, "budget": args.budget,
        "adaptive_accuracy": round(r.adaptive_accuracy, 4), "adaptive_spend": round(r.adaptive_spend, 3),
        "uniform_accuracy_at_budget": round(r.uniform_accuracy, 4), "uniform_strategy": r.uniform_strategy,
        "uniform_budget_to_match": r.uniform_budget_to_match, "plan": [b["label"] for b in r.per_bin],
        "plan_is_uniform": r.guard["plan_is_uniform"], "folds_uniform": r.guard["folds_uniform"],
        "unguarded_ratio": r.guard["unguarded_ratio"], "methods_served": r.methods,
        "curve": [{k: row.get(k) for k in ("budget", "efficiency_ratio", "efficiency_ratio_ci",
                                           "efficiency_ratio_ci_capped", "efficiency_ratio_ci_over_budget",
                                           "adaptive_accuracy",
                                           "adaptive_spend", "uniform_accuracy", "plan_is_uniform", "methods",
                                           "skipped")} for row in result.curve],
        "efficiency_ratio_oracle_difficulty": oracle.efficiency_ratio,
        "efficiency_ratio_oracle_difficulty_ci": oracle.efficiency_ratio_ci,
        "oracle_difficulty_note": "not a held-out figure: prompts are binned by the rewards their strategies are "
                                  "valued on; context only",
        "unit": r.unit, "tokens_per_sample_equivalent": round(r.unit_size, 3),
        "strategies": result.strategies, "probe_samples": args.probe_samples, "stop_rule": args.stop_rule,
        "keep_probes": args.keep_probes,
        "stop_quantiles": args.stop_quantiles, "stop_caps": args.stop_caps,
        "orm_auc": round(quality["orm"]["auc"], 3), "prm_auc_by_step": quality["prm"]["auc_by_step"],
        "prm_aggregate_auc": quality["prm"]["aggregate_auc"], "commit": commit(), "split": args.split,
        "task_options": options,
        "prompts": len(problems),
        "n": args.n, "temperatures": temperatures, "run": str(run), "plan_files": {k: str(v) for k, v in paths.items()},
        "bootstrap_resamples": args.bootstrap, "guard_confidence": args.guard_confidence,
        "fallback_se": args.fallback_se, "seconds": round(time.perf_counter() - started, 1),
        "seconds_sampling_pool": round(sampled, 1),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }, default=float))


if __name__ == "__main__":
    main()
