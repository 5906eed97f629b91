"""How much a stop rule could save on the planner benchmark's policy, chosen in-sample: context for planner.py.

``planner.py`` reports the cross-validated efficiency ratio of its plan. This script asks what stop rules could show
on the same stored pool if every choice were made on the very prompts they are judged on (in-sample, so optimistic
against a held-out plan of the same form, though not a strict bound: a cross-validated ratio also divides by a
cross-validated baseline):

- one stop rule for every prompt, with the learned outcome verifier the benchmark uses: the best of 101 thresholds
  (the percentiles of its scores at both temperatures), every cap N and temperature within each budget, against
  uniform Best-of-N by that verifier;
- the same with a perfect verifier (the task's checker: stop at the first correct sample, answer correctly if one
  came), against uniform Best-of-N by the same checker (pass@N). This bounds what better verification could add to
  per-prompt stopping on this policy's spread of difficulty: easy prompts stop early, so it is high only where many
  prompts are easy;
- a perfect verifier with one probe sample (index 0 at the lowest temperature, charged) that splits the prompts into
  those whose probe was right and the rest, each group with its own stop rule (cap and temperature) on the samples
  after the probe: the planner's form as it was until af9ac93 (difficulty bins from a probe, a strategy per bin,
  probes never the answer) with two bins; and the same where a right probe may also be the answer (as a plan that
  keeps its probes can do now).

A stop rule that uniform Best-of-N never matches within the pool's n is counted at uniform's largest cost over its
spend, a lower bound on its ratio, as planner.py's bootstrap counts such a resample (its point estimate is then
None; ``uniform_never_matches``). Costs are in
sample-equivalents, planner.py's unit (mean generated tokens of one sample at the lowest temperature); the
single-rule rows charge no probe (a stop rule needs none). Prints a JSON object as its last line.
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
from infertune.planning.strategies import reference_sample_cost
from infertune.store import SampleStore, sample_columns


def uniform_points(pools: dict, verifier: str, unit: float) -> tuple[dict, dict]:
    """Uniform Best-of-N at every N and temperature: ({(T, N): accuracy}, {(T, N): cost})."""
    acc, cost = {}, {}
    rule = "pass" if verifier == "oracle" else f"bon:{verifier}"
    for t, s in pools.items():
        curve = per_prompt_curves(s, rules=[rule])[rule].values.mean(axis=0)
        for k in range(1, s.n + 1):
            acc[(t, k)], cost[(t, k)] = curve[k - 1], k * s.tokens.mean() / unit
    return acc, cost


def best_ratio(candidates: list[tuple[float, float, dict]], uniform: tuple[dict, dict], budget: float) -> dict:
    """The candidate (accuracy, spend, description) with the highest efficiency ratio among those spending at most
    ``budget``; at one spend only the most accurate can be best, so only the frontier is valued."""
    acc_u, cost_u = uniform
    top_cost = max(cost_u.values())
    feasible = sorted((c for c in candidates if c[1] <= budget + 1e-9), key=lambda c: (c[1], -c[0]))
    best, best_ratio_exact = {"efficiency_ratio": None}, -np.inf
    reached = -np.inf
    for accuracy, spend, what in feasible:
        if accuracy <= reached:
            continue
        reached = accuracy
        match, ratio = efficiency(accuracy, spend, acc_u, cost_u)
        never = match is None
        ratio = top_cost / spend if never else ratio
        if ratio > best_ratio_exact:  # compared exactly; rounded only where written
            best_ratio_exact = ratio
            best = {"efficiency_ratio": round(float(ratio), 3), "uniform_never_matches": never, **what,
                    "accuracy": round(float(accuracy), 4), "spend": round(float(spend), 3),
                    "uniform_budget_to_match": None if never else round(float(match), 3)}
    return best


def single_rules(pools: dict, verifier: str, thresholds: list[float], unit: float) -> list:
    out = []
    for t, s in pools.items():
        for tau in thresholds:
            values, _, spent = stop_rule_curves(s, verifier, tau)
            accuracy, cost = values.mean(axis=0), spent.mean(axis=0) / unit
            out += [(accuracy[c], cost[c], {"temperature": t, "threshold": round(float(tau), 4), "cap": c + 1})
                    for c in range(s.n)]
    return out


def probe_split_rules(pools: dict, unit: float, keep_probe_answer: bool = False) -> list:
    """Perfect verifier, one charged probe, a stop rule per group (probe right / wrong) on the samples after it.
    With ``keep_probe_answer`` the group whose probe was right may also stop there and answer with the probe (what
    a plan that keeps its probes as candidates can do; plans did not before af9ac93)."""
    low = min(pools)
    probe = pools[low]
    right = probe.rewards[:, 0] == 1
    probe_cost = probe.tokens[:, 0].mean() / unit
    groups = {}  # per group: accuracy and cost [strategies], and the strategies
    for name, members in (("probe_right", right), ("probe_wrong", ~right)):
        acc, cost, what = [], [], []
        for t, s in pools.items():
            after = sample_columns(s, 1)
            values, _, spent = stop_rule_curves(after, "oracle", 1.0)
            acc += list(values[members].mean(axis=0)) if members.any() else [0.0] * after.n
            cost += list(spent[members].mean(axis=0) / unit) if members.any() else [0.0] * after.n
            what += [f"stop@{c} T={t:g}" for c in range(1, after.n + 1)]
        if keep_probe_answer and name == "probe_right":
            acc, cost, what = acc + [1.0], cost + [0.0], what + ["the probe's answer"]
        groups[name] = (np.array(acc), np.array(cost), what)
    share = right.mean()
    (acc_r, cost_r, what_r), (acc_w, cost_w, what_w) = groups["probe_right"], groups["probe_wrong"]
    accuracy = share * acc_r[:, None] + (1 - share) * acc_w[None, :]
    spend = probe_cost + share * cost_r[:, None] + (1 - share) * cost_w[None, :]
    return [(accuracy[i, j], spend[i, j], {"probe_right": what_r[i], "probe_wrong": what_w[j],
                                           "share_probe_right": round(float(share), 4)})
            for i in range(len(what_r)) for j in range(len(what_w))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["validation", "test"], default="test")
    parser.add_argument("--run", default=None, help="The planner benchmark's run folder (default: its cache folder)")
    parser.add_argument("--curve", default="2,4,8,16,32,64")
    args = parser.parse_args()
    _, validation, test = parts.splits()
    problems = test if args.split == "test" else validation
    store = SampleStore(args.run or cache_dir() / f"planner-bench-{args.split}-{len(problems)}")
    task = parts.arith()
    pools = {}
    for t in (0.6, 1.0):
        s = store.scored(temperature=t, task=task.name)
        pools[t] = replace(s, scores={"learned": s.scores["learned"], "oracle": s.rewards})
    unit = reference_sample_cost(pools)
    pooled = np.concatenate([s.scores["learned"].ravel() for s in pools.values()])
    thresholds = sorted({float(v) for v in np.quantile(pooled, np.linspace(0, 1, 101))})
    families = {"learned_verifier": (single_rules(pools, "learned", thresholds, unit),
                                     uniform_points(pools, "learned", unit)),
                "perfect_verifier": (single_rules(pools, "oracle", [1.0], unit),
                                     uniform_points(pools, "oracle", unit)),
                "perfect_verifier_probe_bins": (probe_split_rules(pools, unit), uniform_points(pools, "oracle", unit)),
                "perfect_verifier_probe_bins_probe_answer_kept": (
                    probe_split_rules(pools, unit, keep_probe_answer=True), uniform_points(pools, "oracle", unit))}
    rows = []
    for budget in (float(b) for b in args.curve.split(",")):
        row = {"budget": budget, **{name: best_ratio(c, u, budget) for name, (c, u) in families.items()}}
        rows.append(row)
        print(f"budget {budget:g}: " + ", ".join(f"{name} {row[name]['efficiency_ratio']}"
                                                 f"{'+' if row[name].get('uniform_never_matches') else ''}"
                                                 for name in families))
    pass1 = {t: round(float(s.rewards.mean()), 4) for t, s in pools.items()}
    easy = {t: round(float(np.mean(s.rewards.mean(axis=1) >= 0.5)), 4) for t, s in pools.items()}
    print(json.dumps({"split": args.split, "prompts": len(pools[0.6].prompt_ids), "n": pools[0.6].n,
                      "unit_tokens": round(unit, 4), "in_sample": True, "thresholds": len(thresholds),
                      "pass_at_1": pass1, "share_of_prompts_solved_half_the_time": easy, "curve": rows,
                      "store": str(store.path), "commit": commit()}))


if __name__ == "__main__":
    main()
