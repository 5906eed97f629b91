"""Compute-optimal planning on the embedded default: the demo's base model on held-out arithmetic problems.

Samples the base model at three temperatures (n=32 each), scores every sample with the demo's learned reward model,
writes a sample store, and plans it with `infertune plan`'s code at an average budget of 4 samples per prompt.
Prints a JSON object as its last line: efficiency_ratio (the N uniform Best-of-N needs to match the cross-validated
adaptive policy, divided by the policy's budget; predicted difficulty, no labels used to bin), and the same for
oracle difficulty. Predicted difficulty is the mean verifier score of each prompt's first --probe-samples samples at
the lowest temperature, as `infertune eval --policy` computes it on new prompts. Trains the demo's base model and verifier first if they are not cached (about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from infertune.demo.pipeline import TASK_OPTIONS, DemoConfig, _load, base_model, fit_verifier, sample_problems
from infertune.planning import PlanConfig, plan_run
from infertune.store import Sample, SampleStore
from infertune.tasks import load
from infertune.tasks.splits import split_problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=4.0)
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--temperatures", default="0.6,0.8,1.0")
    parser.add_argument("--probe-samples", type=int, default=PlanConfig.probe_samples,
                        help="Probe samples per prompt for predicted difficulty (at the lowest temperature).")
    parser.add_argument("--out", default=None, help="Run folder (default: a temporary one)")
    args = parser.parse_args()
    started = time.perf_counter()
    config = DemoConfig()
    task = load("arith", **{k: int(v) for k, v in (o.split("=") for o in TASK_OPTIONS)})
    train, held_out = split_problems(task, config.eval_prompts)
    base = base_model(config, task, print)
    verifier_dir = Path(tempfile.gettempdir()) / "infertune-planner-bench-verifier"
    verifier_dir.mkdir(exist_ok=True)
    verifier, quality = fit_verifier(config, task, base, train, verifier_dir)
    model, tok = _load(base)
    problems = held_out[: args.prompts]
    run = Path(args.out or tempfile.mkdtemp(prefix="infertune-plan-"))
    store = SampleStore(run)
    store.init(task_spec=task.spec(), model="demo-base")
    with store.writer(flush_rows=100_000) as writer:
        for t in (float(x) for x in args.temperatures.split(",")):
            rows = sample_problems(model, tok, problems, args.n, t, seed=11)
            flat_p = [p for p, row in zip(problems, rows) for _ in row]
            flat_c = [c for row in rows for c in row]
            rewards = task.rewards(flat_p, [c.text for c in flat_c])
            scores = verifier(flat_p, flat_c)
            for p, c, r, s in zip(flat_p, flat_c, rewards, scores):
                writer.write(Sample(task=task.name, prompt_id=p.id, sample_index=c.index, temperature=t,
                                    prompt=p.prompt, completion=c.text, answer=task.extract(c.text), reward=r,
                                    num_tokens=c.num_tokens, logprob_sum=c.logprob_sum,
                                    scores={"learned": float(s)}))
    results = {}
    for kind in ("predicted", "oracle"):
        r = plan_run(store, PlanConfig(budget=args.budget, difficulty=kind, verifier="learned",
                                       probe_samples=args.probe_samples)).result
        results[kind] = r
        print(f"{kind}: adaptive {r.adaptive_accuracy:.3f} vs uniform {r.uniform_strategy} {r.uniform_accuracy:.3f}; "
              f"uniform needs N={r.uniform_budget_to_match}; policy "
              + ", ".join(b["label"] for b in r.per_bin))
    predicted, oracle = results["predicted"], results["oracle"]
    print(json.dumps({
        "efficiency_ratio": predicted.efficiency_ratio, "efficiency_ratio_ci": predicted.efficiency_ratio_ci,
        "adaptive_spend": round(predicted.adaptive_spend, 3), "budget": args.budget,
        "adaptive_accuracy": round(predicted.adaptive_accuracy, 4),
        "uniform_accuracy_at_budget": round(predicted.uniform_accuracy, 4),
        "uniform_budget_to_match": predicted.uniform_budget_to_match,
        "efficiency_ratio_oracle": oracle.efficiency_ratio,
        "adaptive_accuracy_oracle": round(oracle.adaptive_accuracy, 4), "probe_samples": args.probe_samples,
        "verifier_auc": round(quality["auc"], 3), "prompts": len(problems), "n": args.n,
        "temperatures": args.temperatures, "run": str(run), "seconds": round(time.perf_counter() - started, 1),
    }))


if __name__ == "__main__":
    main()
