"""Compute-optimal test-time scaling: per-difficulty choice of strategy, N and temperature under a budget.

Snell et al. 2024: bin prompts by difficulty, pick per bin the strategy that is most accurate for the compute, and an
adaptive policy matches uniform Best-of-N with several times less compute. Here a strategy is (temperature, selection
rule, N) and its cost is N samples. For each prompt, every strategy's accuracy is the unbiased estimate from the
run's n samples (pass@N, BoN@N, maj@N curves), so every strategy is scored on the same data.

Per bin the choice is a knapsack (maximise mean accuracy subject to an average budget of B samples per prompt over
equal-size bins), solved exactly by dynamic programming over integer budgets. Choices are cross-validated: prompts
are split into folds, and the strategy applied to a fold's prompts is chosen from the other folds only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import curve_fit

from infertune.estimators import bon_curve, maj_curve, pass_curve, weighted_maj_curve
from infertune.verify.verifiers import SAMPLE_DEPENDENT_VERIFIERS


@dataclass(frozen=True)
class Strategy:
    temperature: float
    rule: str  # "bon:<verifier>", "maj", "wmaj:<verifier>", or "pass" (oracle: only for reference)
    n: int

    def label(self) -> str:
        return f"{self.rule}@{self.n} T={self.temperature:g}"


@dataclass
class StrategyTable:
    """Accuracy of every strategy on every prompt: values[p, s] for strategies[s]."""

    strategies: list[Strategy]
    values: np.ndarray
    prompt_ids: list[str]

    def costs(self) -> np.ndarray:
        return np.array([s.n for s in self.strategies])


def strategy_table(samples_by_temperature: dict, *, include_oracle: bool = False, seed: int = 0) -> StrategyTable:
    """All (temperature, rule, N) strategies a run supports. ``samples_by_temperature`` maps each temperature to a
    ``ScoredSamples`` of the same prompts (same order)."""
    temps = sorted(samples_by_temperature)
    ids = samples_by_temperature[temps[0]].prompt_ids
    columns, strategies = [], []
    for t in temps:
        s = samples_by_temperature[t]
        if s.prompt_ids != ids:
            raise ValueError(f"temperature {t}: the prompts differ from temperature {temps[0]}; plan needs the same "
                             "prompts at every temperature")
        curves = {"maj": np.asarray(maj_curve(s.answers, s.rewards, seed=seed))}
        for name, scores in s.scores.items():
            if name in SAMPLE_DEPENDENT_VERIFIERS:
                continue  # its BoN@N from n > N samples would see samples a policy of N does not draw
            curves[f"bon:{name}"] = bon_curve(scores, s.rewards)
            if np.all(scores >= 0):
                curves[f"wmaj:{name}"] = np.asarray(weighted_maj_curve(s.answers, scores, s.rewards, seed=seed))
        if include_oracle:
            curves["pass"] = bon_curve(s.rewards, s.rewards)
        for rule, curve in sorted(curves.items()):
            for n in range(1, s.n + 1):
                strategies.append(Strategy(float(t), rule, n))
                columns.append(curve[:, n - 1])
    return StrategyTable(strategies, np.stack(columns, axis=1), list(ids))


def difficulty(samples_by_temperature: dict, kind: str = "predicted", verifier: str | None = None, *,
               probe: tuple[float, int] | None = None) -> np.ndarray:
    """Per-prompt difficulty, higher = harder.

    "oracle": 1 − pass@1 from the rewards, pooled over temperatures. "predicted" needs no labels: with
    ``probe=(temperature, m)`` it is 1 − the mean verifier score of the prompt's first m samples at that temperature,
    exactly what ``infertune eval --policy`` can compute on a new prompt after drawing m probe samples; without a
    probe, 1 − the range-normalised mean score of all samples at every temperature (for analysis only).
    """
    if kind not in ("oracle", "predicted"):
        raise ValueError(f"difficulty must be oracle or predicted, got {kind!r}")
    if kind == "predicted" and probe is not None:
        temperature, m = probe
        if temperature not in samples_by_temperature:
            raise ValueError(f"no samples at probe temperature {temperature}; have {sorted(samples_by_temperature)}")
        s = samples_by_temperature[temperature]
        if not 1 <= m <= s.n:
            raise ValueError(f"probe samples must be in 1..{s.n} (the run's n), got {m}")
        name = verifier or _default_verifier(s)
        if name not in s.scores:
            raise ValueError(f"no verifier {name!r} in the run; have {sorted(s.scores)}")
        return 1.0 - probe_scores(name, s.scores[name][:, :m], s.answers.ids[:, :m]).mean(axis=1)
    values = []
    for s in samples_by_temperature.values():
        if kind == "oracle":
            values.append(s.rewards.mean(axis=1))
        else:
            name = verifier or _default_verifier(s)
            if name not in s.scores:
                raise ValueError(f"no verifier {name!r} in the run; have {sorted(s.scores)}")
            scores = s.scores[name]
            lo, hi = scores.min(), scores.max()
            values.append((scores.mean(axis=1) - lo) / (hi - lo) if hi > lo else np.zeros(len(scores)))
    return 1.0 - np.mean(values, axis=0)


def probe_scores(verifier: str, scores: np.ndarray, answer_ids: np.ndarray) -> np.ndarray:
    """Verifier scores of a prompt's probe samples as they would be computed from the probes alone: majority
    agreement depends on which other samples exist, so it is recomputed among the probes (leave-one-out share of
    the same answer; unparsed answers score 0); other verifiers score each sample on its own."""
    if verifier != "agreement":
        return np.asarray(scores, dtype=np.float64)
    ids = np.asarray(answer_ids)
    m = ids.shape[1]
    if m == 1:
        return np.zeros(ids.shape)
    same = (ids[:, :, None] == ids[:, None, :]).sum(axis=2) - 1
    return np.where(ids >= 0, same / (m - 1), 0.0)


def _default_verifier(samples) -> str:
    if not samples.scores:
        raise ValueError("predicted difficulty needs a verifier score column; run infertune score with a verifier")
    return sorted(samples.scores)[0]


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Inner quantile edges (bins − 1 of them)."""
    return np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])


def assign_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, values, side="right")


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
    uniform_strategy: str
    uniform_accuracy: float  # cross-validated, at N = budget
    uniform_budget_to_match: float | None  # None: uniform Best-of-N never matches within n
    efficiency_ratio: float | None
    policy: dict
    per_bin: list[dict] = field(default_factory=list)
    assignments: np.ndarray | None = None  # the strategy index each prompt got under cross-validation


def _uniform_candidates(table: StrategyTable) -> list[int]:
    """Best-of-N strategies (any verifier and temperature): the uniform baseline picks among these. Without a
    verifier usable for Best-of-N (only agreement), uniform majority vote is the baseline."""
    bon = [i for i, s in enumerate(table.strategies) if s.rule.startswith("bon:")]
    return bon or [i for i, s in enumerate(table.strategies) if s.rule == "maj"]


def _uniform_accuracy_by_n(table: StrategyTable, train: np.ndarray, test: np.ndarray) -> dict[int, float]:
    """For each N, the best (verifier, temperature) on the training prompts, scored on the test prompts."""
    result = {}
    for n in sorted({table.strategies[i].n for i in _uniform_candidates(table)}):
        idx = [i for i in _uniform_candidates(table) if table.strategies[i].n == n]
        best = idx[int(np.argmax(table.values[np.ix_(train, idx)].mean(axis=0)))]
        result[n] = float(table.values[test, best].mean())
    return result


def plan(table: StrategyTable, hardness: np.ndarray, budget: float, *, bins: int = 5, folds: int = 5,
         seed: int = 0, difficulty_kind: str = "predicted", edges_from_train: bool = True) -> PlanResult:
    """Cross-validated adaptive policy against uniform Best-of-N at the same budget, and the final policy."""
    n_prompts = len(hardness)
    if n_prompts < folds * bins:
        raise ValueError(f"{n_prompts} prompts are too few for {folds} folds x {bins} bins")
    if not table.values.shape[0] == n_prompts:
        raise ValueError("difficulty and strategy table disagree on the number of prompts")
    costs = table.costs()
    fold_of = np.random.default_rng(seed).permutation(n_prompts) % folds
    adaptive_correct = np.zeros(n_prompts)
    assignments = np.zeros(n_prompts, dtype=int)
    uniform_by_n: dict[int, np.ndarray] = {}
    for f in range(folds):
        train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        chosen, edges = _fit(table, hardness, train, costs, budget, bins)
        test_bins = assign_bins(hardness[test], edges)
        assignments[test] = chosen[test_bins]
        adaptive_correct[test] = table.values[test, chosen[test_bins]]
        for n, acc in _uniform_accuracy_by_n(table, train, test).items():
            uniform_by_n.setdefault(n, np.zeros(folds))[f] = acc * len(test)
    adaptive = float(adaptive_correct.mean())
    uniform = {n: float(v.sum() / n_prompts) for n, v in uniform_by_n.items()}
    # Uniform Best-of-N at the same budget (its N is an integer: the largest not above the budget).
    n_at_budget = max((n for n in uniform if n <= budget), default=min(uniform))
    match = next((n for n in sorted(uniform) if uniform[n] >= adaptive - 1e-12), None)
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
                        "strategy": asdict(s), "label": s.label(),
                        "accuracy": float(table.values[members, chosen[b]].mean()) if members.any() else None,
                        "uniform_accuracy": float(table.values[members, best_uniform].mean()) if members.any()
                        else None})
    policy = {"difficulty": difficulty_kind, "bin_edges": [float(e) for e in edges],
              "strategies": [asdict(table.strategies[i]) for i in chosen], "budget": budget}
    return PlanResult(budget=budget, bins=bins, difficulty=difficulty_kind, adaptive_accuracy=adaptive,
                      uniform_strategy=table.strategies[best_uniform].label(),
                      uniform_accuracy=uniform[n_at_budget], uniform_budget_to_match=match,
                      efficiency_ratio=(match / budget) if match is not None else None, policy=policy,
                      per_bin=per_bin, assignments=assignments)


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


POLICY_FORMAT = "infertune-policy/1"


@dataclass
class PlanConfig:
    """How to plan test-time compute for a run."""

    budget: float = field(default=4.0, metadata={"help": "Average samples per prompt the policy may spend."})
    difficulty: str = field(default="predicted", metadata={
        "help": "predicted (from verifier scores, usable on unlabelled prompts) or oracle (pass@1 from rewards)."})
    verifier: str | None = field(default=None, metadata={"help": "Verifier whose scores predict difficulty "
                                                                 "(default: the first score column)."})
    probe_samples: int = field(default=4, metadata={
        "help": "Predicted difficulty uses each prompt's first PROBE_SAMPLES samples, as eval --policy does on new "
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


def plan_run(store, config: PlanConfig) -> dict:
    """Plan a stored run: the policy, its cross-validated accuracy against uniform Best-of-N, and co-scaling."""
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
    table = strategy_table(samples, seed=config.seed)
    probe = None
    if config.difficulty == "predicted":
        probe = (min(samples) if config.probe_temperature is None else float(config.probe_temperature),
                 config.probe_samples)
    hardness = difficulty(samples, config.difficulty, config.verifier, probe=probe)
    result = plan(table, hardness, config.budget, bins=config.bins, folds=config.folds, seed=config.seed,
                  difficulty_kind=config.difficulty)
    verifier = config.verifier or (_default_verifier(next(iter(samples.values())))
                                   if config.difficulty == "predicted" else None)
    result.policy.update(verifier=verifier, task=tasks_seen[0], format=POLICY_FORMAT,
                         cross_validated_accuracy=result.adaptive_accuracy)
    if probe is not None:
        result.policy["probe"] = {"temperature": probe[0], "samples": probe[1]}
    fits = coscaling_fit(pass_curves_by_temperature(samples))
    n = next(iter(samples.values())).n
    return {"plan": result, "coscaling": fits,
            "best_temperature": best_temperature(fits, [2**i for i in range(12) if 2**i <= 16 * n]),
            "pass_curves": pass_curves_by_temperature(samples), "prompts": len(hardness), "n": n}


def plot_coscaling(pass_curves: dict, fits: list[dict], best: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.85, max(len(pass_curves), 1)))
    for color, fit in zip(colors, fits):
        curve = pass_curves[fit["temperature"]]
        n = np.arange(1, curve.size + 1)
        left.plot(n, curve, "o", ms=3, color=color, label=f"T={fit['temperature']:g} measured")
        if fit["a"] is not None:
            grid = np.logspace(0, np.log2(16 * curve.size), 100, base=2)
            left.plot(grid, _law(grid, fit["a"], fit["b"]), "-", color=color,
                      label=f"fit a={fit['a']:.2f}, b={fit['b']:.2f}, R²={fit['r2']:.3f}")
    left.set_xscale("log", base=2)
    left.set_xlabel("N")
    left.set_ylabel("pass@N")
    left.set_title("pass@N(T) ≈ exp(a(T)·N^b(T))")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    if best:
        right.step([b["n"] for b in best], [b["best_temperature"] for b in best], where="mid")
        right.set_xscale("log", base=2)
    right.set_xlabel("N")
    right.set_ylabel("best temperature (fitted)")
    right.set_title("Predicted best temperature for each N")
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- co-scaling of N and temperature (Chow et al.) ----------------------------------------------------------------

def _law(n, a, b):
    return np.exp(a * np.power(n, b))


def coscaling_fit(pass_by_temperature: dict[float, np.ndarray]) -> list[dict]:
    """Fit pass@N(T) ≈ exp(a(T)·N^b(T)) per temperature, on the mean pass@N curve for N = 1..n.

    Returns a(T), b(T), R² of the fit on pass@N and the largest absolute error. A curve that is 0 or 1 everywhere
    has nothing to fit and is reported without parameters.
    """
    fits = []
    for t, curve in sorted(pass_by_temperature.items()):
        curve = np.asarray(curve, dtype=np.float64)
        n = np.arange(1, curve.size + 1, dtype=np.float64)
        row = {"temperature": float(t), "a": None, "b": None, "r2": None, "max_abs_error": None}
        if 0 < curve[0] < 1:
            try:
                (a, b), _ = curve_fit(_law, n, curve, p0=(np.log(curve[0]), -0.5), maxfev=20_000)
                fitted = _law(n, a, b)
                ss_res = float(((curve - fitted) ** 2).sum())
                ss_tot = float(((curve - curve.mean()) ** 2).sum())
                row.update(a=float(a), b=float(b), r2=1 - ss_res / ss_tot if ss_tot > 0 else 1.0,
                           max_abs_error=float(np.abs(curve - fitted).max()))
            except RuntimeError:
                pass
        fits.append(row)
    return fits


def best_temperature(fits: list[dict], ns) -> list[dict]:
    """The temperature whose fitted law predicts the highest pass@N, for each N (extrapolated beyond the data)."""
    usable = [f for f in fits if f["a"] is not None]
    out = []
    for n in ns:
        if not usable:
            break
        preds = {f["temperature"]: float(_law(n, f["a"], f["b"])) for f in usable}
        t = max(preds, key=preds.get)
        out.append({"n": int(n), "best_temperature": t, "predicted_pass": preds[t]})
    return out


def pass_curves_by_temperature(samples_by_temperature: dict) -> dict[float, np.ndarray]:
    out = {}
    for t, s in samples_by_temperature.items():
        binary = np.all((s.rewards == 0) | (s.rewards == 1))
        curve = pass_curve(s.rewards) if binary else bon_curve(s.rewards, s.rewards)
        out[float(t)] = curve.mean(axis=0)
    return out
