"""Compute-optimal test-time scaling: per-difficulty choice of method, strategy, N and temperature under a budget.

Snell et al. 2024: bin prompts by difficulty, pick per bin the strategy that is most accurate for the compute (parallel
sampling with a selection rule, search against a process reward model, sequential revisions), and an adaptive plan
can match uniform Best-of-N with less compute. Strategies, their per-prompt accuracies and costs come from
``strategies``, difficulty from ``difficulty``, the exact per-bin choice from ``knapsack``.

The budget is an average per prompt in sample-equivalents, everything counted: with predicted difficulty the m probe
samples, and in the tokens unit every generated token (rollouts included) and every re-read revision context token,
one sample-equivalent being the mean tokens of one sample (``StrategyTable.unit_size``). Uniform Best-of-N is costed
in the same unit.

Choices are cross-validated: prompts are split into folds, and the strategy applied to a fold's prompts is chosen
from the other folds only. A guard keeps the plan from being worse than the baseline it is compared with: within
each fold's training prompts an inner cross-validation asks whether the adaptive plan beats uniform Best-of-N at
its spend (on the mean and, with a confidence, in that share of bootstrap resamples), and where it does not, the
fold gets uniform Best-of-N at the cheapest affordable N within ``fallback_se`` standard errors of the most
accurate one on its training prompts. The reported
accuracy is that of the whole procedure, guard included; the saved plan applies the same rule to every prompt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from infertune.planning.difficulty import assign_bins, bin_edges
from infertune.planning.efficiency import beats_uniform, budget_to_match, efficiency, win_share
from infertune.planning.knapsack import BudgetTooSmall, choose_per_bin
from infertune.planning.strategies import Strategy, StrategyTable

PLAN_FORMAT = "infertune-plan/4"  # /3: stop rules (a threshold), plans without probes; /4: strategies keeping probes


@dataclass
class PlanResult:
    budget: float  # sample-equivalents per prompt
    bins: int
    difficulty: str
    adaptive_accuracy: float  # cross-validated, guard included
    adaptive_spend: float  # sample-equivalents per prompt the cross-validated plan spent, probes included
    uniform_strategy: str
    uniform_accuracy: float  # cross-validated, at the largest N within the budget
    uniform_budget_to_match: float | None  # sample-equivalents; None: uniform Best-of-N never matches within n
    efficiency_ratio: float | None  # uniform_budget_to_match / adaptive_spend
    efficiency_ratio_ci: tuple[float, float] | None
    spec: dict  # the applicable plan (plan.json): bins, their strategies, probe, verifier
    probe: tuple[float, int] | None = None
    per_bin: list[dict] = field(default_factory=list)
    assignments: np.ndarray | None = None  # the strategy index each prompt got under cross-validation
    unit: str = "samples"
    unit_size: float = 1.0
    guard: dict = field(default_factory=dict)
    methods: dict = field(default_factory=dict)  # share of prompts each method served under cross-validation
    uniform_curve: list = field(default_factory=list)  # [N, cost (sample-equivalents), cross-validated accuracy]
    efficiency_ratio_ci_capped: float = 0.0  # share of resamples uniform never matched (ratio counted at a bound)
    efficiency_ratio_ci_over_budget: float = 0.0  # share of resamples left out: a fold there afforded no plan


@dataclass
class _Problem:
    """What every fit needs: values, total costs (probes included), uniform candidates, difficulty."""

    table: StrategyTable
    values: np.ndarray
    total: np.ndarray  # [prompts, strategies] cost with probes, in the table's unit
    plain: np.ndarray  # the same without probes (uniform Best-of-N draws none)
    uniform: list[int]
    hardness: np.ndarray
    budget: float  # in the table's unit
    bins: int
    guard_confidence: float = 0.0  # share of bootstrap resamples in which a plan must win to pass the guard
    fallback_se: float = 0.0  # the uniform fallback's N: the cheapest within this many standard errors of the best
    uniform_by_count: dict[int, np.ndarray] = field(init=False)  # N -> its uniform candidates (verifier, T)

    def __post_init__(self) -> None:
        counts = np.array([self.table.strategies[i].n for i in self.uniform])
        self.uniform_by_count = {int(n): np.asarray(self.uniform)[counts == n] for n in sorted(set(counts))}


def _uniform_candidates(table: StrategyTable) -> list[int]:
    """Parallel Best-of-N strategies (any verifier and temperature): the uniform baseline picks among these.
    Without a verifier usable for Best-of-N (only agreement), uniform majority vote is the baseline."""
    parallel = [i for i, s in enumerate(table.strategies) if s.method == "parallel" and not s.keeps_probes]
    bon = [i for i in parallel if table.strategies[i].rule.startswith("bon:")]
    return bon or [i for i in parallel if table.strategies[i].rule == "maj"]


def _fit(pb: _Problem, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges and one strategy per bin, from the training prompts only."""
    edges = bin_edges(pb.hardness[train], pb.bins)
    train_bins = assign_bins(pb.hardness[train], edges)
    acc = np.zeros((pb.bins, pb.values.shape[1]))
    cost = np.zeros_like(acc)
    weights = np.zeros(pb.bins)
    for b in range(pb.bins):
        members = train[train_bins == b]
        weights[b] = len(members) / len(train)
        if len(members):
            acc[b] = pb.values[members].mean(axis=0)
            cost[b] = pb.total[members].mean(axis=0)
    chosen, _ = choose_per_bin(acc, cost, weights, pb.budget)
    # A bin no training prompt fell in (an edge interpolated inside a gap between tied difficulties) has nothing to
    # choose by; a new prompt landing there takes the strategy of the nearest bin that had prompts, the harder one
    # on a tie.
    filled = np.flatnonzero(weights > 0)
    for b in np.flatnonzero(weights == 0):
        if filled.size:
            distance = np.abs(filled - b) - 0.5 * (filled > b)
            chosen[b] = chosen[filled[np.argmin(distance)]]
    return chosen, edges


def _uniform_by_n(pb: _Problem, train: np.ndarray) -> dict[int, int]:
    """For each N, the uniform Best-of-N strategy (verifier, temperature) that is best on the training prompts."""
    mean = pb.values[train].mean(axis=0)
    return {n: int(idx[np.argmax(mean[idx])]) for n, idx in pb.uniform_by_count.items()}


def _uniform_fallback(pb: _Problem, train: np.ndarray) -> int:
    """Uniform Best-of-N at the smallest N whose accuracy on the training prompts is within ``pb.fallback_se``
    paired standard errors of the most accurate N that fits the budget (N = 1 if none fits). With an imperfect
    verifier Best-of-N flattens or falls as N grows, so the largest affordable N need not be the best, and on a flat
    stretch the most accurate N on the training prompts is mostly noise: the one-standard-error rule takes the
    cheapest N that is as good within its error."""
    by_n = _uniform_by_n(pb, train)
    fits = [n for n, i in by_n.items() if pb.plain[train, i].mean() <= pb.budget * (1 + 1e-9)] or [min(by_n)]
    values = pb.values[np.ix_(train, [by_n[n] for n in fits])]
    mean = values.mean(axis=0)
    best = int(np.argmax(mean))
    spread = (values - values[:, [best]]).std(axis=0, ddof=1) if len(train) > 1 else np.zeros(len(fits))
    tolerance = pb.fallback_se * spread / np.sqrt(len(train)) + 1e-12
    return by_n[min(n for n, m, t in zip(fits, mean, tolerance) if m >= mean[best] - t)]


@dataclass
class _Outcome:
    """Per-prompt results of a cross-validation over ``index``."""

    index: np.ndarray
    accuracy: np.ndarray
    spent: np.ndarray
    assignment: np.ndarray
    uniform_acc: dict[int, np.ndarray]
    uniform_cost: dict[int, np.ndarray]
    folds_uniform: int
    folds_over_budget: int = 0  # folds whose training prompts no plan fitted the budget on (uniform Best-of-N used)

    def wins(self, confidence: float = 0.0, seed: int = 0, resamples: int = 200) -> bool:
        """Whether the plan beats uniform Best-of-N at its spend: on the mean, and with ``confidence`` > 0 also in
        that share of bootstrap resamples of the prompts (a one-sided test, the choices held fixed)."""
        if not beats_uniform(float(self.accuracy.mean()), float(self.spent.mean()),
                             {n: float(v.mean()) for n, v in self.uniform_acc.items()},
                             {n: float(v.mean()) for n, v in self.uniform_cost.items()}):
            return False
        return confidence <= 0 or win_share(self.accuracy, self.spent, self.uniform_acc, self.uniform_cost,
                                            resamples, seed) >= confidence


def _fold_of(index: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each entry's fold, drawn over distinct prompts so that every copy of a prompt lands in the same fold."""
    distinct, copy_of = np.unique(index, return_inverse=True)
    return (np.random.default_rng(seed).permutation(len(distinct)) % folds)[copy_of]


def _cross_validate(pb: _Problem, index: np.ndarray, folds: int, seed: int, inner_folds: int | None) -> _Outcome:
    """Fit on all folds but one, apply to that one. With ``inner_folds``, each fit is guarded by an inner
    cross-validation on its own training prompts. ``index`` may repeat a prompt (a bootstrap resample): folds are
    drawn over distinct prompts, so every copy of a prompt lands in one fold and no prompt is scored by a fit that
    saw it."""
    fold_of = _fold_of(index, folds, seed)
    accuracy, spent = np.zeros(len(index)), np.zeros(len(index))
    assignment = np.zeros(len(index), dtype=np.int64)
    uniform_acc: dict[int, np.ndarray] = {}
    uniform_cost: dict[int, np.ndarray] = {}
    folds_uniform = folds_over_budget = 0
    for f in range(folds):
        train, test_pos = index[fold_of != f], np.flatnonzero(fold_of == f)
        test = index[test_pos]
        inner_seed = seed * 7919 + f + 1
        try:
            chosen, edges = _fit(pb, train)
        except BudgetTooSmall:
            # Probes counted in tokens cost each prompt something else, so a budget just above their mean can lie
            # below some training prompts'. ``plan`` refuses such a budget for its own folds; inside the guard's inner
            # cross-validation (the guard then judges the plan with this fold uniform: conservative) and in bootstrap
            # resamples (which ``refit_ratio_interval`` leaves out and counts) the fold answers as the baseline does.
            chosen = edges = None
            folds_over_budget += 1
        inner = (_cross_validate(pb, train, inner_folds, inner_seed, None)
                 if inner_folds and chosen is not None else None)
        if chosen is None or (inner is not None and not inner.wins(pb.guard_confidence, inner_seed)):
            folds_uniform += 1
            picks = np.full(len(test), _uniform_fallback(pb, train))
            spent[test_pos] = pb.plain[test, picks]  # uniform Best-of-N draws no probes
        else:
            picks = chosen[assign_bins(pb.hardness[test], edges)]
            spent[test_pos] = pb.total[test, picks]
        assignment[test_pos] = picks
        accuracy[test_pos] = pb.values[test, picks]
        for n, best in _uniform_by_n(pb, train).items():
            uniform_acc.setdefault(n, np.zeros(len(index)))[test_pos] = pb.values[test, best]
            uniform_cost.setdefault(n, np.zeros(len(index)))[test_pos] = pb.plain[test, best]
    return _Outcome(index, accuracy, spent, assignment, uniform_acc, uniform_cost, folds_uniform, folds_over_budget)


def _outcome_ratio(outcome: _Outcome) -> tuple[float, bool]:
    """The efficiency ratio of one cross-validated outcome against its own cross-validated uniform curve, and
    whether uniform never matched it within the run's N (then the ratio is counted at uniform's largest cost: a
    lower bound)."""
    uniform_acc = {n: float(v.mean()) for n, v in outcome.uniform_acc.items()}
    uniform_cost = {n: float(v.mean()) for n, v in outcome.uniform_cost.items()}
    match, ratio = efficiency(float(outcome.accuracy.mean()), float(outcome.spent.mean()), uniform_acc, uniform_cost)
    if match is None:
        return max(uniform_cost.values()) / float(outcome.spent.mean()), True
    return ratio, False


def refit_ratio_interval(pb: _Problem, folds: int, seed: int, inner_folds: int | None, resamples: int,
                         confidence: float = 0.95) -> tuple[tuple[float, float] | None, float, float]:
    """Percentile bootstrap over prompts of the whole procedure: each resample draws prompts with replacement and
    re-runs it on them (fold split, bin edges, per-bin choices, the guard's inner cross-validation, uniform's choice
    of verifier and temperature per N), so the interval covers the variance of the choices as well as of the
    prompts. Copies of a prompt share a fold. A resample holds about 63% distinct prompts, so each refit learns from
    less than the real run does: with few prompts the interval sits somewhat low (conservative). A resample that
    uniform Best-of-N never matches counts at uniform's largest cost / the plan's spend, a lower bound. A resample in
    which some fold's training prompts afford no plan at the budget (their probes cost more) measures a mix of plan
    and baseline, not the plan, and is left out; the interval is then conditional on the budget being affordable,
    so when more than (1 - confidence) / 2 of the resamples are left out there is no interval. Returns the interval
    (or None), the share of the kept resamples counted at the bound (above (1 - confidence) / 2, the upper end is
    itself a lower bound), and the share left out."""
    if resamples < 1:
        return None, 0.0, 0.0
    n_prompts = len(pb.hardness)
    rng = np.random.default_rng([seed, 99])
    ratios, capped = np.empty(resamples), np.zeros(resamples, dtype=bool)
    kept = np.ones(resamples, dtype=bool)
    for i in range(resamples):
        index = np.sort(rng.integers(0, n_prompts, n_prompts))
        outcome = _cross_validate(pb, index, folds, seed + i + 1, inner_folds)
        kept[i] = outcome.folds_over_budget == 0
        ratios[i], capped[i] = _outcome_ratio(outcome)
    left_out = float(1 - kept.mean())
    alpha = (1 - confidence) / 2
    if left_out > alpha:
        return None, 0.0, left_out
    low, high = np.quantile(ratios[kept], [alpha, 1 - alpha])
    return (float(low), float(high)), float(capped[kept].mean()), left_out


def _affordable(pb: _Problem, prompts: np.ndarray, probe_costs: np.ndarray, where: str):
    """``_fit`` on ``prompts``, or a ``BudgetTooSmall`` that says, in sample-equivalents, what the cheapest plan
    there costs and how much of it is probes."""
    try:
        return _fit(pb, prompts)
    except BudgetTooSmall as exc:
        unit = pb.table.unit_size
        raise BudgetTooSmall(f"budget {pb.budget / unit:g} is below the cheapest plan on {where} "
                             f"({exc.cheapest / unit:.4g} sample-equivalents per prompt, "
                             f"{float(probe_costs[prompts].mean()) / unit:.4g} of them probes); raise the budget or "
                             "draw fewer probe samples", exc.cheapest) from None


def plan(table: StrategyTable, hardness: np.ndarray, budget: float, *, bins: int = 5, folds: int = 5,
         seed: int = 0, difficulty_kind: str = "predicted", probe: tuple[float, int] | None = None,
         probe_costs: np.ndarray | None = None, resamples: int = 400, guard: bool = True,
         inner_folds: int = 4, guard_confidence: float = 0.95, fallback_se: float = 1.0) -> PlanResult:
    """Cross-validated adaptive plan against uniform Best-of-N, and the final plan fitted on every prompt.

    ``budget``: sample-equivalents per prompt, probes included (``probe`` = (temperature, m) when difficulty is
    predicted from m probe samples; ``probe_costs`` their per-prompt cost in the table's unit, default m
    sample-equivalents). The efficiency ratio is the cost uniform Best-of-N needs to match the plan's
    cross-validated accuracy divided by what the plan really spent; its interval is a percentile bootstrap over
    prompts that re-runs the whole procedure on each resample (``refit_ratio_interval``). Per-bin accuracies in
    ``per_bin`` are those of the final plan measured on the prompts it was fitted on (in-sample, unlike
    ``adaptive_accuracy``)."""
    n_prompts = len(hardness)
    if n_prompts < folds * bins:
        raise ValueError(f"{n_prompts} prompts are too few for {folds} folds x {bins} bins")
    if table.values.shape[0] != n_prompts:
        raise ValueError("difficulty and strategy table disagree on the number of prompts")
    unit = table.unit_size
    if probe_costs is None:
        probe_costs = np.full(n_prompts, 0.0 if probe is None else probe[1] * unit)
    plain = np.asarray(table.cost_matrix(), dtype=np.float64)
    pb = _Problem(table, table.values, plain + np.asarray(probe_costs)[:, None], plain, _uniform_candidates(table),
                  np.asarray(hardness, dtype=np.float64), budget * unit, bins, guard_confidence,
                  fallback_se)
    everyone = np.arange(n_prompts)
    final_fit = _affordable(pb, everyone, np.asarray(probe_costs), "these prompts")  # the saved plan, fitted first
    fold_of = _fold_of(everyone, folds, seed)
    for f in range(folds):  # every fold's plan too, or the cross-validated figures would not be the plan's
        _affordable(pb, everyone[fold_of != f], np.asarray(probe_costs), f"the training prompts of fold {f + 1}")
    outcome = _cross_validate(pb, everyone, folds, seed, inner_folds if guard else None)
    adaptive, spend = float(outcome.accuracy.mean()), float(outcome.spent.mean())
    uniform_acc = {n: float(v.mean()) for n, v in outcome.uniform_acc.items()}
    uniform_cost = {n: float(v.mean()) for n, v in outcome.uniform_cost.items()}
    match, ratio = efficiency(adaptive, spend, uniform_acc, uniform_cost)
    interval, capped, left_out = refit_ratio_interval(pb, folds, seed, inner_folds if guard else None, resamples)
    n_at_budget = max((n for n in uniform_cost if uniform_cost[n] <= pb.budget * (1 + 1e-9)), default=min(uniform_acc))

    # The saved plan: the same rule on every prompt (its guard is the unguarded cross-validation over everyone).
    unguarded = _cross_validate(pb, everyone, folds, seed, None) if guard else outcome
    use_uniform = guard and not unguarded.wins(guard_confidence, seed)
    chosen, edges = final_fit
    if use_uniform:
        chosen, edges = np.array([_uniform_fallback(pb, everyone)]), np.zeros(0)
    all_bins = assign_bins(pb.hardness, edges)
    best_uniform = _uniform_by_n(pb, everyone)[n_at_budget]
    per_bin = []
    for b in range(len(chosen)):
        members = all_bins == b
        s = table.strategies[chosen[b]]
        cost = (pb.plain if use_uniform else pb.total)[members, chosen[b]].mean() / unit if members.any() else None
        per_bin.append({"bin": b, "prompts": int(members.sum()),
                        "difficulty_range": [float(pb.hardness[members].min()) if members.any() else None,
                                             float(pb.hardness[members].max()) if members.any() else None],
                        "strategy": asdict(s), "label": s.label(), "cost": cost,
                        "accuracy_in_sample": float(pb.values[members, chosen[b]].mean()) if members.any() else None,
                        "uniform_accuracy_in_sample": float(pb.values[members, best_uniform].mean())
                        if members.any() else None})
    unguarded_match, unguarded_ratio = efficiency(float(unguarded.accuracy.mean()), float(unguarded.spent.mean()),
                                                  {n: float(v.mean()) for n, v in unguarded.uniform_acc.items()},
                                                  {n: float(v.mean()) for n, v in unguarded.uniform_cost.items()})
    guard_info = {"enabled": guard, "confidence": guard_confidence, "fallback_se": fallback_se,
                  "plan_is_uniform": bool(use_uniform), "folds_uniform": outcome.folds_uniform,
                  "folds": folds, "unguarded_accuracy": float(unguarded.accuracy.mean()),
                  "unguarded_spend": float(unguarded.spent.mean()) / unit, "unguarded_ratio": unguarded_ratio}
    spec = {"difficulty": "none" if use_uniform else difficulty_kind, "bin_edges": [float(e) for e in edges],
            "strategies": [asdict(table.strategies[i]) for i in chosen], "budget": budget, "unit": table.unit,
            "unit_size": unit, "guard": {"plan_is_uniform": bool(use_uniform)}}
    methods: dict[str, float] = {}
    for i in outcome.assignment:
        key = table.strategies[i].method
        methods[key] = methods.get(key, 0.0) + 1 / n_prompts
    return PlanResult(budget=budget, bins=bins, difficulty=difficulty_kind, adaptive_accuracy=adaptive,
                      adaptive_spend=spend / unit, uniform_strategy=table.strategies[best_uniform].label(),
                      uniform_accuracy=uniform_acc[n_at_budget],
                      uniform_budget_to_match=None if match is None else match / unit, efficiency_ratio=ratio,
                      efficiency_ratio_ci=interval, efficiency_ratio_ci_capped=capped,
                      efficiency_ratio_ci_over_budget=left_out, spec=spec, probe=None if use_uniform else probe,
                      per_bin=per_bin, assignments=outcome.assignment, unit=table.unit, unit_size=unit,
                      guard=guard_info, methods=methods,
                      uniform_curve=[[n, uniform_cost[n] / unit, uniform_acc[n]] for n in sorted(uniform_acc)])


def efficiency_curve(table: StrategyTable, hardness: np.ndarray, budgets: list[float], log=None,
                     **options) -> list[dict]:
    """The plan's cross-validated efficiency at each budget (those the probes leave room at), with intervals;
    ``log`` hears of each budget as it is done (the bootstrap refits make each take a while)."""
    rows = []
    for b in budgets:
        try:
            r = plan(table, hardness, b, **options)
        except ValueError as exc:
            rows.append({"budget": b, "skipped": str(exc)})
            if log:
                log(f"efficiency curve, budget {b:g}: skipped ({exc})")
            continue
        if log:
            ci = r.efficiency_ratio_ci
            log(f"efficiency curve, budget {b:g}: ratio "
                + ("n/a" if r.efficiency_ratio is None else f"{r.efficiency_ratio:.2f}")
                + ("" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"))
        rows.append({"budget": b, "adaptive_accuracy": r.adaptive_accuracy, "adaptive_spend": r.adaptive_spend,
                     "uniform_accuracy": r.uniform_accuracy, "uniform_budget_to_match": r.uniform_budget_to_match,
                     "efficiency_ratio": r.efficiency_ratio, "efficiency_ratio_ci": r.efficiency_ratio_ci,
                     "efficiency_ratio_ci_capped": r.efficiency_ratio_ci_capped,
                     "efficiency_ratio_ci_over_budget": r.efficiency_ratio_ci_over_budget,
                     "plan_is_uniform": r.guard.get("plan_is_uniform", False), "methods": r.methods,
                     "strategies": [b_["label"] for b_ in r.per_bin], "uniform_curve": r.uniform_curve})
    return rows


__all__ = ["PLAN_FORMAT", "PlanResult", "Strategy", "budget_to_match", "choose_per_bin", "efficiency_curve", "plan"]
