"""Compute-optimal test-time scaling: per-difficulty choice of strategy, N and temperature under a budget.

Snell et al. 2024: bin prompts by difficulty, pick per bin the strategy that is most accurate for the compute, and an
adaptive plan matches uniform Best-of-N with several times less compute. Strategies and their per-prompt accuracies
come from ``strategies``, difficulty from ``difficulty``.

Per bin the choice is a knapsack (maximise mean accuracy subject to an average budget of B samples per prompt,
probes included, over equal-size bins), solved exactly by dynamic programming over integer budgets. Choices are
cross-validated: prompts are split into folds, and the strategy applied to a fold's prompts is chosen from the other
folds only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from infertune.planning.coscaling import best_temperature, coscaling_fit, pass_curves_by_temperature, plot_coscaling
from infertune.planning.difficulty import assign_bins, bin_edges, default_verifier, difficulty
from infertune.planning.strategies import Strategy, StrategyTable, strategy_costs, strategy_table

PLAN_FORMAT = "infertune-plan/1"


def choose_per_bin(acc: np.ndarray, costs: np.ndarray, weights: np.ndarray, budget: float) -> tuple[np.ndarray, float]:
    """Exact knapsack: pick one strategy per bin maximising Σ_b w_b acc[b, s_b] subject to Σ_b w_b cost(s_b) ≤ budget.

    acc: [bins, strategies]; weights: the share of prompts in each bin (sums to 1). Costs are integers; the weighted
    budget constraint is made integral by scaling with the bins' prompt counts. Returns the chosen strategy per bin
    and the expected accuracy.
    """
    counts = np.rint(weights * 10_000).astype(int)  # shares to integer weights (1e-4 resolution)
    capacity = int(np.floor(budget * counts.sum() + 1e-9))
    n_bins = acc.shape[0]
    cheapest = int(costs.min())
    if cheapest * counts.sum() > capacity:
        raise ValueError(f"budget {budget} is below the cheapest strategy ({cheapest} samples per prompt)")
    # Distinct costs: for each bin and cost keep only the best strategy of that cost (dominance).
    unique_costs = np.unique(costs)
    best_at_cost = np.full((n_bins, unique_costs.size), -1, dtype=int)
    for j, c in enumerate(unique_costs):
        idx = np.flatnonzero(costs == c)
        best_at_cost[:, j] = idx[np.argmax(acc[:, idx], axis=1)]
    neg = -np.inf
    value = np.full(capacity + 1, neg)
    value[0] = 0.0
    choice = np.zeros((n_bins, capacity + 1), dtype=int)
    for b in range(n_bins):
        new = np.full(capacity + 1, neg)
        for j, c in enumerate(unique_costs):
            w = int(c) * counts[b]
            if w > capacity:
                continue
            gain = counts[b] * acc[b, best_at_cost[b, j]]
            cand = np.full(capacity + 1, neg)
            cand[w:] = value[: capacity + 1 - w] + gain
            better = cand > new
            new[better] = cand[better]
            choice[b, better] = j
        value = new
    end = int(np.argmax(value))
    chosen = np.zeros(n_bins, dtype=int)
    for b in reversed(range(n_bins)):
        j = choice[b, end]
        chosen[b] = best_at_cost[b, j]
        end -= int(unique_costs[j]) * counts[b]
    return chosen, float(np.max(value) / counts.sum())


@dataclass
class PlanResult:
    budget: float
    bins: int
    difficulty: str
    adaptive_accuracy: float  # cross-validated
    adaptive_spend: float  # mean samples per prompt the cross-validated plan drew, probes included
    uniform_strategy: str
    uniform_accuracy: float  # cross-validated, at N = budget
    uniform_budget_to_match: float | None  # None: uniform Best-of-N never matches within n
    efficiency_ratio: float | None  # uniform_budget_to_match / adaptive_spend
    efficiency_ratio_ci: tuple[float, float] | None
    spec: dict  # the applicable plan (plan.json): bins, their strategies, probe, verifier
    probe: tuple[float, int] | None = None
    per_bin: list[dict] = field(default_factory=list)
    assignments: np.ndarray | None = None  # the strategy index each prompt got under cross-validation


def budget_to_match(uniform: dict[int, float], target: float) -> float | None:
    """The smallest average budget at which uniform Best-of-N reaches ``target``. A budget between two sample counts
    is spent by drawing the larger count for a random share of the prompts, so what a budget buys is the upper
    concave envelope of (N, accuracy) (mixing any two N, not only neighbours). None when even the best N falls
    short."""
    ns = sorted(uniform)
    hull: list[tuple[float, float]] = []
    for point in ((float(n), float(uniform[n])) for n in ns):
        # Upper hull: drop the last point while it lies on or below the chord to the new one.
        while len(hull) >= 2 and ((hull[-1][0] - hull[-2][0]) * (point[1] - hull[-2][1])
                                  >= (point[0] - hull[-2][0]) * (hull[-1][1] - hull[-2][1])):
            hull.pop()
        hull.append(point)
    if hull[0][1] >= target - 1e-12:
        return hull[0][0]
    for (n0, a0), (n1, a1) in zip(hull, hull[1:]):
        if a1 >= target - 1e-12:
            return n0 + (n1 - n0) * (target - a0) / (a1 - a0)
    return None


def _uniform_candidates(table: StrategyTable) -> list[int]:
    """Best-of-N strategies (any verifier and temperature): the uniform baseline picks among these. Without a
    verifier usable for Best-of-N (only agreement), uniform majority vote is the baseline."""
    bon = [i for i, s in enumerate(table.strategies) if s.rule.startswith("bon:")]
    return bon or [i for i, s in enumerate(table.strategies) if s.rule == "maj"]


def plan(table: StrategyTable, hardness: np.ndarray, budget: float, *, bins: int = 5, folds: int = 5,
         seed: int = 0, difficulty_kind: str = "predicted", probe: tuple[float, int] | None = None,
         resamples: int = 1000) -> PlanResult:
    """Cross-validated adaptive plan against uniform Best-of-N, and the final plan fitted on every prompt.

    ``budget`` is the average number of samples per prompt the plan may draw, probes included (``probe`` =
    (temperature, m) when difficulty is predicted from m probe samples). The efficiency ratio is the budget uniform
    Best-of-N needs to match the plan's cross-validated accuracy (``budget_to_match``), divided by what the plan
    really spent. Its interval is a percentile bootstrap over prompts that holds the fold split, each fold's fitted
    plan and the uniform baseline's choices fixed: it measures how the figure varies with the prompts evaluated, not
    with the prompts the plan was chosen on (a resample that uniform Best-of-N never matches within n counts at
    n / spend, so the upper end may be understated). Per-bin accuracies in ``per_bin`` are those of the plan fitted
    on every prompt, measured on the same prompts (in-sample, unlike ``adaptive_accuracy``)."""
    n_prompts = len(hardness)
    if n_prompts < folds * bins:
        raise ValueError(f"{n_prompts} prompts are too few for {folds} folds x {bins} bins")
    if not table.values.shape[0] == n_prompts:
        raise ValueError("difficulty and strategy table disagree on the number of prompts")
    costs = strategy_costs(table, probe)
    fold_of = np.random.default_rng(seed).permutation(n_prompts) % folds
    adaptive_correct = np.zeros(n_prompts)
    assignments = np.zeros(n_prompts, dtype=int)
    uniform_correct: dict[int, np.ndarray] = {}
    for f in range(folds):
        train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        chosen, edges = _fit(table, hardness, train, costs, budget, bins)
        test_bins = assign_bins(hardness[test], edges)
        assignments[test] = chosen[test_bins]
        adaptive_correct[test] = table.values[test, chosen[test_bins]]
        for n, best in _uniform_choice_by_n(table, train).items():
            uniform_correct.setdefault(n, np.zeros(n_prompts))[test] = table.values[test, best]
    spent = costs[assignments].astype(np.float64)
    adaptive, spend = float(adaptive_correct.mean()), float(spent.mean())
    uniform = {n: float(v.mean()) for n, v in uniform_correct.items()}
    # Uniform Best-of-N at the same budget (its N is an integer: the largest not above the budget).
    n_at_budget = max((n for n in uniform if n <= budget), default=min(uniform))
    match = budget_to_match(uniform, adaptive)
    ratio_ci = _ratio_interval(adaptive_correct, spent, uniform_correct, resamples, seed)
    chosen, edges = _fit(table, hardness, np.arange(n_prompts), costs, budget, bins)
    all_bins = assign_bins(hardness, edges)
    uniform_idx = [i for i in _uniform_candidates(table) if table.strategies[i].n == n_at_budget]
    best_uniform = uniform_idx[int(np.argmax(table.values[:, uniform_idx].mean(axis=0)))]
    per_bin = []
    for b in range(bins):
        members = all_bins == b
        s = table.strategies[chosen[b]]
        per_bin.append({"bin": b, "prompts": int(members.sum()),
                        "difficulty_range": [float(hardness[members].min()) if members.any() else None,
                                             float(hardness[members].max()) if members.any() else None],
                        "strategy": asdict(s), "label": s.label(), "cost": int(costs[chosen[b]]),
                        "accuracy_in_sample": float(table.values[members, chosen[b]].mean()) if members.any()
                        else None,
                        "uniform_accuracy_in_sample": float(table.values[members, best_uniform].mean()) if members.any()
                        else None})
    spec = {"difficulty": difficulty_kind, "bin_edges": [float(e) for e in edges],
              "strategies": [asdict(table.strategies[i]) for i in chosen], "budget": budget}
    return PlanResult(budget=budget, bins=bins, difficulty=difficulty_kind, adaptive_accuracy=adaptive,
                      adaptive_spend=spend, uniform_strategy=table.strategies[best_uniform].label(),
                      uniform_accuracy=uniform[n_at_budget], uniform_budget_to_match=match,
                      efficiency_ratio=(match / spend) if match is not None else None,
                      efficiency_ratio_ci=ratio_ci, spec=spec, probe=probe, per_bin=per_bin,
                      assignments=assignments)


def _ratio_interval(adaptive: np.ndarray, spent: np.ndarray, uniform: dict[int, np.ndarray], resamples: int,
                    seed: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap over prompts of (budget uniform Best-of-N needs to match) / (the plan's spend)."""
    if resamples < 1:
        return None
    ns = sorted(uniform)
    curve = np.stack([uniform[n] for n in ns], axis=1)
    rng = np.random.default_rng([seed, 99])
    counts = rng.multinomial(len(adaptive), np.full(len(adaptive), 1 / len(adaptive)), size=resamples)
    total = counts.sum(axis=1)
    acc, cost, curves = counts @ adaptive / total, counts @ spent / total, counts @ curve / total[:, None]
    ratios = np.empty(resamples)
    for i in range(resamples):
        match = budget_to_match(dict(zip(ns, curves[i])), acc[i])
        ratios[i] = (match if match is not None else float(ns[-1])) / cost[i]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return float(low), float(high)


def _uniform_choice_by_n(table: StrategyTable, train: np.ndarray) -> dict[int, int]:
    """For each N, the uniform Best-of-N strategy (verifier, temperature) that is best on the training prompts."""
    result = {}
    candidates = _uniform_candidates(table)
    for n in sorted({table.strategies[i].n for i in candidates}):
        idx = [i for i in candidates if table.strategies[i].n == n]
        result[n] = idx[int(np.argmax(table.values[np.ix_(train, idx)].mean(axis=0)))]
    return result


def _fit(table: StrategyTable, hardness: np.ndarray, train: np.ndarray, costs: np.ndarray, budget: float,
         bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges and one strategy per bin, from the training prompts only."""
    edges = bin_edges(hardness[train], bins)
    train_bins = assign_bins(hardness[train], edges)
    acc = np.zeros((bins, len(table.strategies)))
    weights = np.zeros(bins)
    for b in range(bins):
        members = train[train_bins == b]
        weights[b] = len(members) / len(train)
        if len(members):
            acc[b] = table.values[members].mean(axis=0)
    chosen, _ = choose_per_bin(acc, costs, weights, budget)
    return chosen, edges


@dataclass
class PlanConfig:
    """How to plan test-time compute for a run."""

    budget: float = field(default=4.0, metadata={
        "help": "Average samples per prompt the plan may draw, probe samples included."})
    difficulty: str = field(default="predicted", metadata={
        "help": "predicted (from verifier scores, usable on unlabelled prompts) or oracle (pass@1 from rewards)."})
    verifier: str | None = field(default=None, metadata={"help": "Verifier whose scores predict difficulty "
                                                                 "(default: the first score column)."})
    probe_samples: int = field(default=4, metadata={
        "help": "Predicted difficulty uses each prompt's first PROBE_SAMPLES samples, as eval --plan does on new "
                "prompts."})
    probe_temperature: float | None = field(default=None, metadata={
        "help": "Temperature of the probe samples (default: the run's lowest)."})
    bins: int = field(default=5, metadata={"help": "Difficulty quantile bins."})
    folds: int = field(default=5, metadata={"help": "Cross-validation folds over prompts."})
    seed: int = field(default=0, metadata={"help": "Seed of the fold split and Monte-Carlo estimates."})

    def __post_init__(self) -> None:
        if self.difficulty not in ("predicted", "oracle"):
            raise ValueError(f"difficulty must be predicted or oracle, got {self.difficulty!r}")
        if self.budget <= 0 or self.bins < 1 or self.folds < 2:
            raise ValueError("budget must be > 0, bins >= 1 and folds >= 2")
        if self.probe_samples < 1:
            raise ValueError("probe_samples must be at least 1")


@dataclass
class PlanRun:
    """What ``infertune plan`` computes for a stored run."""

    result: PlanResult
    coscaling: list[dict]
    best_temperature: list[dict]
    pass_curves: dict
    prompts: int
    n: int


def plan_run(store, config: PlanConfig) -> PlanRun:
    """Plan a stored run: the plan, its cross-validated accuracy against uniform Best-of-N, and co-scaling."""
    from infertune.store import iter_tasks_and_temperatures

    table_all = store.read()
    pairs = list(iter_tasks_and_temperatures(table_all))
    tasks_seen = sorted({task for task, _ in pairs})
    if len(tasks_seen) != 1:
        raise ValueError(f"{store.path}: plan needs a run of one task, found {tasks_seen}")
    samples = {t: store.scored(temperature=t, task=tasks_seen[0]) for _, t in pairs}
    common = set.intersection(*(set(s.prompt_ids) for s in samples.values()))
    if any(len(common) != len(s.prompt_ids) for s in samples.values()):
        raise ValueError(f"{store.path}: every temperature must cover the same prompts")
    probe = None
    if config.difficulty == "predicted":
        probe = (min(samples) if config.probe_temperature is None else float(config.probe_temperature),
                 config.probe_samples)
    table = strategy_table(samples, seed=config.seed, skip=probe[1] if probe else 0)
    if probe is not None and config.budget < probe[1] + 1:
        raise ValueError(f"budget {config.budget:g} leaves nothing beyond the {probe[1]} probe samples predicted "
                         "difficulty draws per prompt (the budget counts them); raise --budget or lower "
                         "--probe-samples")
    hardness = difficulty(samples, config.difficulty, config.verifier, probe=probe)
    result = plan(table, hardness, config.budget, bins=config.bins, folds=config.folds, seed=config.seed,
                  difficulty_kind=config.difficulty, probe=probe)
    verifier = config.verifier or (default_verifier(next(iter(samples.values())))
                                   if config.difficulty == "predicted" else None)
    result.spec.update(verifier=verifier, task=tasks_seen[0], format=PLAN_FORMAT,
                       cross_validated_accuracy=result.adaptive_accuracy)
    if probe is not None:
        result.spec["probe"] = {"temperature": probe[0], "samples": probe[1]}
    pass_curves = pass_curves_by_temperature(samples)
    fits = coscaling_fit(pass_curves)
    n = next(iter(samples.values())).n
    return PlanRun(result, fits, best_temperature(fits, [2**i for i in range(12) if 2**i <= 16 * n]), pass_curves,
                   len(hardness), n)


def write_plan(run: PlanRun, folder: Path) -> dict[str, Path]:
    """RUN/plan/plan.json (the plan ``eval --plan`` applies), summary.json and coscaling.png; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"plan": folder / "plan.json", "summary": folder / "summary.json", "plot": folder / "coscaling.png"}
    paths["plan"].write_text(json.dumps(run.result.spec, indent=1))
    summary = {k: v for k, v in asdict(run.result).items() if k not in ("assignments",)}
    paths["summary"].write_text(json.dumps({"plan": summary, "coscaling": run.coscaling,
                                            "best_temperature": run.best_temperature}, indent=1, default=float))
    plot_coscaling(run.pass_curves, run.coscaling, run.best_temperature, paths["plot"])
    return paths
