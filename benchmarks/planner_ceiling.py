"""How much a stop rule could save on the planner benchmark's policy at best: in-sample ceilings, for context.

``planner.py`` reports the cross-validated efficiency ratio of its plan. This script asks what the best stop rule
could show on the same stored pool if every choice were made on the very prompts it is judged on (in-sample, so an
upper bound on a held-out plan of that family), twice:

- with the learned outcome verifier the benchmark uses: the best threshold (quantiles of its scores) and cap N
  within each budget, against uniform Best-of-N by that verifier;
- with a perfect verifier (the task's checker: stop at the first correct sample, answer correctly if one came),
  against uniform Best-of-N by the same checker (pass@N). This bounds what better verification could add to
  per-prompt adaptation on this policy's spread of difficulty: easy prompts stop early, so the ceiling is high
  only where many prompts are easy.

Costs are in sample-equivalents (the pool's mean generated tokens of one sample), as in planner.py; no probes are
charged (a stop rule needs none). Prints a JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import planner_parts as parts
from provenance import commit

from infertune.evaluation import per_prompt_curves, stop_rule_curves
from infertune.models.loading import cache_dir
from infertune.planning.efficiency import efficiency
from infertune.planning.sequential import score_thresholds
from infertune.store import SampleStore


def ceiling(pools: dict, verifier: str, thresholds: dict, unit: float, budget: float) -> dict:
    """The best in-sample efficiency ratio of a stop rule spending at most ``budget`` per prompt."""
    uniform_acc, uniform_cost = {}, {}
    for t, s in pools.items():
        rule = "pass" if verifier == "oracle" else f"bon:{verifier}"
        curve = per_prompt_curves(s, rules=[rule])[rule].values.mean(axis=0)
        per_sample = s.tokens.mean() / unit
        for k in range(1, s.n + 1):
            uniform_acc[(t, k)], uniform_cost[(t, k)] = curve[k - 1], k * per_sample
    best = {"efficiency_ratio": None}
    for t, s in pools.items():
        for tau in thresholds[t]:
            values, _, spent = stop_rule_curves(s, verifier, tau)
            accuracy, cost = values.mean(axis=0), spent.mean(axis=0) / unit
            for cap in range(1, s.n + 1):
                if cost[cap - 1] > budget + 1e-9:
                    break
                match, ratio = efficiency(accuracy[cap - 1], cost[cap - 1], uniform_acc, uniform_cost)
                if ratio is not None and (best["efficiency_ratio"] is None or ratio > best["efficiency_ratio"]):
                    best = {"efficiency_ratio": round(ratio, 3), "temperature": t, "threshold": round(tau, 4),
                            "cap": cap, "accuracy": round(float(accuracy[cap - 1]), 4),
                            "spend": round(float(cost[cap - 1]), 3), "uniform_budget_to_match": round(match, 3)}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["validation", "test"], default="test")
    parser.add_argument("--run", default=None, help="The planner benchmark's run folder (default: its cache folder)")
    parser.add_argument("--curve", default="2,4,8,16,32,64")
    parser.add_argument("--quantiles", default="0.5,0.75,0.9,0.95,0.98,0.99")
    args = parser.parse_args()
    _, validation, test = parts.splits()
    problems = test if args.split == "test" else validation
    store = SampleStore(args.run or cache_dir() / f"planner-bench-{args.split}-{len(problems)}")
    task = parts.arith()
    pools = {}
    for t in (0.6, 1.0):
        s = store.scored(temperature=t, task=task.name)
        pools[t] = replace(s, scores={"learned": s.scores["learned"], "oracle": s.rewards})
    unit = float(np.mean([s.tokens.mean() for s in pools.values()]))
    quantiles = [float(q) for q in args.quantiles.split(",")]
    learned = {t: score_thresholds(s.scores["learned"], quantiles) for t, s in pools.items()}
    oracle = {t: [1.0] for t in pools}
    rows = []
    for budget in (float(b) for b in args.curve.split(",")):
        rows.append({"budget": budget, "learned_verifier": ceiling(pools, "learned", learned, unit, budget),
                     "perfect_verifier": ceiling(pools, "oracle", oracle, unit, budget)})
        print(f"budget {budget:g}: learned verifier {rows[-1]['learned_verifier']['efficiency_ratio']}, "
              f"perfect verifier {rows[-1]['perfect_verifier']['efficiency_ratio']}")
    pass1 = {t: round(float(s.rewards.mean()), 4) for t, s in pools.items()}
    easy = {t: round(float(np.mean(s.rewards.mean(axis=1) >= 0.5)), 4) for t, s in pools.items()}
    print(json.dumps({"split": args.split, "prompts": len(pools[0.6].prompt_ids), "n": pools[0.6].n,
                      "unit_tokens": round(unit, 3), "in_sample": True, "pass_at_1": pass1,
                      "share_of_prompts_solved_half_the_time": easy, "curve": rows, "store": str(store.path),
                      "commit": commit()}))


if __name__ == "__main__":
    main()
