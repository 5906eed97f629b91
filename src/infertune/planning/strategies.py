"""Test-time strategies and what each is worth and costs on every prompt: the table the planner chooses from.

Five methods (``Strategy.method``):

- ``parallel``: N samples at a temperature, one picked by a rule (Best-of-N by a verifier, majority, weighted
  majority). Valued, like ``infertune eval``, by the evaluation core's unbiased per-prompt curves over the run's
  samples: from n i.i.d. samples every N ≤ n is estimated at once.
- ``sequential``: Best-of-N with a stop rule: samples drawn one at a time until the verifier scores one at least
  ``threshold``, at most N; valued exactly (``estimators.stop_rule``) from the same i.i.d. samples as ``parallel``.
- ``beam`` and ``lookahead``: search against a process reward model (``infertune.models.search``). A search is not
  a subset of i.i.d. samples, so it is run: R independent runs per prompt (``planning.runs``), each writing its
  chosen answer and its token count to a store. The per-prompt value is the mean reward of the R runs, an unbiased
  estimate of the search's success probability p on that prompt with variance p(1 − p)/R; the cost is the mean of
  the runs' token counts.
- ``revise``: C chains of L attempts (``infertune.models.revise``). C_max i.i.d. chains of L_max attempts are run per
  prompt; a strategy (C ≤ C_max, L ≤ L_max) uses each chain's first L attempts, and is valued by the evaluation
  core's unbiased subset estimators over chains (selection by a verifier: each chain offers its best-scored attempt
  and the best chain wins, which is Best-of-N over all C·L attempts when scores do not tie; by majority: each
  chain votes with its last attempt).

With predicted difficulty a prompt's first m samples are its probes: they decide its bin. Every strategy draws
fresh samples independent of them: parallel ones are valued on samples m .. n − 1 (applying a plan draws the bin's
N samples at indices m .. m + N − 1), search and revisions on runs seeded apart from the pool. Best-of-N and its
stop rule also come in a variant that keeps the probes as candidates (``keeps_probes``; ``estimators.forced``):
Best-of-(m + N) over the probes and N fresh samples for the cost of N, valued conditionally on the prompt's own
probes, N = 0 answering with the best probe; the stop rule looks at the probes first. Other rules (majority votes,
search, revisions) never reuse a probe.

Costs are per prompt in the table's unit: ``tokens`` (generated tokens, plus the context a revision re-reads), or
``samples`` where a run does not record tokens (then only parallel strategies exist and N samples cost N). Probes
are not in ``costs``; the planner adds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infertune.evaluation import EvalConfig, per_prompt_curves
from infertune.verify import compares_samples

METHODS = ("parallel", "sequential", "beam", "lookahead", "revise")


@dataclass(frozen=True)
class Strategy:
    temperature: float
    rule: str  # "bon:<verifier>", "maj", "wmaj:<verifier>", or "pass" (oracle: only for reference)
    n: int  # samples of budget: parallel samples, beams per round, or chains x attempts
    method: str = "parallel"
    width: int = 0  # beam and lookahead: M, the continuations of each kept partial answer
    lookahead: int = 0  # lookahead: k rollout steps
    chains: int = 0  # revise: C chains of n / C attempts
    threshold: float | None = None  # sequential: stop at the first sample whose verifier score is at least this
    keeps_probes: bool = False  # Best-of-N or its stop rule over the prompt's probes and n fresh samples

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"strategy method must be one of {METHODS}, got {self.method!r}")
        if (self.method == "sequential") != (self.threshold is not None):
            raise ValueError("a threshold belongs to sequential strategies, and every sequential strategy needs one")
        if self.method == "sequential" and not self.rule.startswith("bon:"):
            raise ValueError(f"a sequential strategy stops on a verifier's score: its rule is bon:<verifier>, "
                             f"got {self.rule!r}")
        if self.method == "revise" and (self.chains < 1 or self.n % self.chains):
            raise ValueError(f"revise needs n a multiple of chains, got n={self.n}, chains={self.chains}")
        if self.keeps_probes and (self.method not in ("parallel", "sequential") or not self.rule.startswith("bon:")):
            raise ValueError(f"only Best-of-N and its stop rule keep probes as candidates, not {self.method} "
                             f"{self.rule!r}")
        if self.n < (0 if self.keeps_probes and self.method == "parallel" else 1):
            raise ValueError(f"a strategy draws at least one sample (none only Best-of-N keeping its probes), got "
                             f"n={self.n}")

    @property
    def attempts(self) -> int:
        return self.n // self.chains if self.method == "revise" else 1

    def label(self) -> str:
        t = f"T={self.temperature:g}"
        n = f"probes+{self.n}" if self.keeps_probes else f"{self.n}"
        if self.method == "parallel":
            return f"{self.rule}@{n} {t}"
        if self.method == "sequential":
            return f"stop>={self.threshold:g} {self.rule}@{n} {t}"
        if self.method == "revise":
            return f"revise {self.chains}x{self.attempts} {self.rule} {t}"
        k = f" k={self.lookahead}" if self.method == "lookahead" else ""
        return f"{self.method}{k} M={self.width} {self.rule}@{self.n} {t}"


@dataclass
class StrategyTable:
    """Accuracy and cost of every strategy on every prompt: values[p, s] and costs[p, s] for strategies[s]."""

    strategies: list[Strategy]
    values: np.ndarray
    prompt_ids: list[str]
    costs: np.ndarray | None = None  # None: each strategy costs its N (the samples unit)
    unit: str = "samples"
    unit_size: float = 1.0  # units per sample-equivalent: the mean tokens of one sample in the tokens unit
    variances: np.ndarray | None = None  # per-prompt variance of run-valued estimates (nan where not estimable)

    def cost_matrix(self) -> np.ndarray:
        if self.costs is not None:
            return self.costs
        return np.broadcast_to(np.array([s.n for s in self.strategies], dtype=np.float64), self.values.shape)

    def mean_costs(self) -> np.ndarray:
        return self.cost_matrix().mean(axis=0)


def combine(tables: list[StrategyTable]) -> StrategyTable:
    """One table from several over the same prompts and unit (parallel, search, revisions)."""
    first = tables[0]
    for t in tables[1:]:
        if t.prompt_ids != first.prompt_ids:
            raise ValueError("strategy tables cover different prompts; plan needs every strategy on the same ones")
        if t.unit != first.unit:
            raise ValueError(f"strategy tables count cost in {first.unit} and {t.unit}")
    variances = [t.variances if t.variances is not None else np.full(t.values.shape, np.nan) for t in tables]
    return StrategyTable([s for t in tables for s in t.strategies], np.concatenate([t.values for t in tables], 1),
                         list(first.prompt_ids), np.concatenate([t.cost_matrix() for t in tables], 1), first.unit,
                         first.unit_size, np.concatenate(variances, 1))


def strategy_table(samples_by_temperature: dict, *, include_oracle: bool = False, seed: int = 0,
                   skip: int = 0, unit: str = "auto") -> StrategyTable:
    """All parallel (temperature, rule, N) strategies a run supports, valued on each prompt's samples ``skip`` ..
    n − 1 (skip = the probe count m). ``samples_by_temperature`` maps each temperature to a ``ScoredSamples`` of the
    same prompts (same order). ``unit``: tokens (N times the prompt's mean tokens per sample), samples, or auto
    (tokens when every sample records its count)."""
    from infertune.store import sample_columns

    temps = sorted(samples_by_temperature)
    ids = samples_by_temperature[temps[0]].prompt_ids
    if unit == "auto":
        unit = "tokens" if all(s.tokens is not None for s in samples_by_temperature.values()) else "samples"
    if unit not in ("tokens", "samples"):
        raise ValueError(f"cost unit must be tokens, samples or auto, got {unit!r}")
    columns, costs, strategies = [], [], []
    for t in temps:
        s = samples_by_temperature[t]
        if skip:
            if s.n <= skip:
                raise ValueError(f"temperature {t}: {s.n} samples per prompt leave none beyond the {skip} probes")
            s = sample_columns(s, skip)
        if s.prompt_ids != ids:
            raise ValueError(f"temperature {t}: the prompts differ from temperature {temps[0]}; plan needs the same "
                             "prompts at every temperature")
        if unit == "tokens" and s.tokens is None:
            raise ValueError(f"temperature {t}: some samples do not record their token count; use unit samples")
        per_sample = s.tokens.mean(axis=1) if unit == "tokens" else np.ones(len(ids))
        curves = per_prompt_curves(s, EvalConfig(seed=seed), rules=parallel_rules(s, include_oracle))
        for rule, curve in sorted(curves.items()):
            for n in range(1, s.n + 1):
                strategies.append(Strategy(float(t), rule, n))
                columns.append(curve.values[:, n - 1])
                costs.append(n * per_sample)
    return StrategyTable(strategies, np.stack(columns, axis=1), list(ids), np.stack(costs, axis=1), unit,
                         reference_sample_cost(samples_by_temperature, skip) if unit == "tokens" else 1.0)


def stop_table(samples_by_temperature: dict, *, quantiles: list[float], caps: list[int], skip: int = 0,
               unit: str = "tokens", unit_size: float = 1.0) -> StrategyTable | None:
    """Best-of-N with a stop rule (``estimators.stop_rule``) for every verifier usable for Best-of-N, threshold and
    cap N, valued on each prompt's samples ``skip`` .. n − 1 like the parallel strategies. Thresholds are the
    ``quantiles`` of the verifier's scores over every prompt and temperature (no labels read). None when there is
    nothing to add."""
    from infertune.evaluation import stop_rule_curves
    from infertune.planning.sequential import score_thresholds
    from infertune.store import sample_columns

    if not quantiles or not caps:
        return None
    temps = sorted(samples_by_temperature)
    pools = {t: sample_columns(samples_by_temperature[t], skip) if skip else samples_by_temperature[t]
             for t in temps}
    first = pools[temps[0]]
    names = [v for v in sorted(first.scores) if not compares_samples(v)]
    strategies, columns, costs = [], [], []
    for name in names:
        pooled = np.concatenate([pools[t].scores[name].ravel() for t in temps])
        for threshold in score_thresholds(pooled, quantiles):
            for t in temps:
                pool = pools[t]
                values, _, spent = stop_rule_curves(pool, name, threshold, unit)
                for cap in sorted({c for c in caps if 1 <= c <= pool.n}):
                    strategies.append(Strategy(float(t), f"bon:{name}", cap, "sequential", threshold=threshold))
                    columns.append(values[:, cap - 1])
                    costs.append(spent[:, cap - 1])
    if not strategies:
        return None
    return StrategyTable(strategies, np.stack(columns, axis=1), list(first.prompt_ids), np.stack(costs, axis=1),
                         unit, unit_size)


def kept_probe_table(samples_by_temperature: dict, probe: tuple[float, int], *, quantiles: list[float],
                     caps: list[int], unit: str = "tokens", unit_size: float = 1.0) -> StrategyTable | None:
    """Best-of-N and its stop rule keeping the m probes (the first m samples at the probe temperature) as
    candidates (``estimators.forced``), for every verifier usable for Best-of-N and temperature: Best-of-(m + N) for
    N = 0 .. n − m fresh samples from samples m .. n − 1 (N = 0 once, at the probe temperature), and the stop rule
    at the same thresholds as ``stop_table`` (empty ``quantiles``: none) and ``caps``. Costs count the fresh
    samples only; the planner adds the probes, as for every strategy. None when there is nothing to add."""
    from infertune.estimators import bon_curve_forced, stop_curves_forced
    from infertune.planning.sequential import score_thresholds
    from infertune.store import sample_columns

    probe_t, m = probe
    temps = sorted(samples_by_temperature)
    if probe_t not in samples_by_temperature:
        raise ValueError(f"no samples at probe temperature {probe_t}; have {temps}")
    probes = sample_columns(samples_by_temperature[probe_t], 0, m)
    pools = {t: sample_columns(samples_by_temperature[t], m) for t in temps}
    names = [v for v in sorted(probes.scores) if not compares_samples(v)]
    strategies, columns, costs = [], [], []
    for t in temps:
        pool = pools[t]
        if unit == "tokens" and pool.tokens is None:
            raise ValueError(f"temperature {t}: some samples do not record their token count; use unit samples")
        charged = pool.tokens.astype(np.float64) if unit == "tokens" else np.ones(pool.rewards.shape)
        per_sample = charged.mean(axis=1)
        for name in names:
            values = bon_curve_forced(pool.scores[name], pool.rewards, probes.scores[name], probes.rewards)
            # N = 0 (the best probe) draws nothing at any temperature: one column, at the probe temperature.
            for n in range(0 if t == probe_t else 1, pool.n + 1):
                strategies.append(Strategy(float(t), f"bon:{name}", n, keeps_probes=True))
                columns.append(values[:, n])
                costs.append(n * per_sample)
    for name in names if quantiles and caps else []:
        pooled = np.concatenate([pools[t].scores[name].ravel() for t in temps])
        for threshold in score_thresholds(pooled, quantiles):
            for t in temps:
                pool = pools[t]
                charged = pool.tokens.astype(np.float64) if unit == "tokens" else np.ones(pool.rewards.shape)
                values, _, spent = stop_curves_forced(pool.scores[name], pool.rewards, charged, probes.scores[name],
                                                      probes.rewards, threshold)
                for cap in sorted({c for c in caps if 1 <= c <= pool.n}):
                    strategies.append(Strategy(float(t), f"bon:{name}", cap, "sequential", threshold=threshold,
                                               keeps_probes=True))
                    columns.append(values[:, cap])
                    costs.append(spent[:, cap])
    if not strategies:
        return None
    return StrategyTable(strategies, np.stack(columns, axis=1), list(probes.prompt_ids), np.stack(costs, axis=1),
                         unit, unit_size)


def parallel_rules(samples, include_oracle: bool = False) -> list[str]:
    rules = ["maj"]
    for name, scores in samples.scores.items():
        if compares_samples(name):
            continue  # its BoN@N from n > N samples would see samples a plan of N does not draw
        rules.append(f"bon:{name}")
        if np.all(scores >= 0):
            rules.append(f"wmaj:{name}")
    return rules + (["pass"] if include_oracle else [])


def reference_sample_cost(samples_by_temperature: dict, skip: int = 0) -> float:
    """Tokens of one sample-equivalent: the mean tokens per sample at the lowest temperature, over every prompt and
    sample after the probes. Budgets are given in sample-equivalents and converted with this one constant."""
    s = samples_by_temperature[min(samples_by_temperature)]
    return float(s.tokens[:, skip:].mean())


def run_table(strategy: Strategy, samples, unit: str = "tokens") -> StrategyTable:
    """A search strategy valued from its runs (a ``ScoredSamples`` whose n samples per prompt are n independent
    runs): value = mean reward of the runs, cost = their mean tokens, variance = the unbiased estimate
    p̂(1 − p̂)/(R − 1) of the value's variance p(1 − p)/R (nan with one run)."""
    if unit == "tokens" and samples.tokens is None:
        raise ValueError(f"{strategy.label()}: its runs do not record token counts")
    runs = samples.n
    values = samples.rewards.mean(axis=1)
    costs = samples.tokens.mean(axis=1) if unit == "tokens" else np.full(len(values), float(strategy.n))
    variance = values * (1 - values) / (runs - 1) if runs > 1 else np.full(len(values), np.nan)
    return StrategyTable([strategy], values[:, None], list(samples.prompt_ids), costs[:, None].astype(np.float64),
                         unit, 1.0, variance[:, None])


@dataclass
class ChainLayout:
    """How a revision store's sample indices map to chains: index = chain · attempts + attempt."""

    chains: int
    attempts: int
    temperature: float
    window: int = 2
    skip_single: bool = field(default=True)  # chains of one attempt are parallel sampling, already in the table


def revision_table(samples, layout: ChainLayout, *, seed: int = 0, unit: str = "tokens") -> StrategyTable:
    """Every (C ≤ chains, L ≤ attempts, rule) revision strategy, from a store of C_max chains of L_max attempts
    per prompt (``ScoredSamples`` with n = C_max · L_max, tokens = what each attempt is charged)."""
    from infertune.store import scored_from_arrays

    c_max, l_max = layout.chains, layout.attempts
    if samples.n < c_max * l_max:
        raise ValueError(f"revision runs hold {samples.n} attempts per prompt, fewer than {c_max} x {l_max}")
    if unit == "tokens" and samples.tokens is None:
        raise ValueError("revision runs do not record token counts")
    count = len(samples.prompt_ids)
    shape = (count, c_max, l_max)
    rewards = samples.rewards[:, : c_max * l_max].reshape(shape)
    codes = samples.answers.ids[:, : c_max * l_max].reshape(shape)
    scores = {v: s[:, : c_max * l_max].reshape(shape) for v, s in samples.scores.items() if not compares_samples(v)}
    charged = (samples.tokens[:, : c_max * l_max].reshape(shape).astype(np.float64) if unit == "tokens"
               else np.ones(shape))
    strategies, columns, costs = [], [], []
    for length in range(2 if layout.skip_single else 1, l_max + 1):
        chain_cost = charged[:, :, :length].sum(axis=2).mean(axis=1)
        last_answers = np.where(codes[:, :, length - 1] >= 0, codes[:, :, length - 1].astype(str), None)
        chain_sets = {"maj": (rewards[:, :, length - 1], last_answers, {})}
        for v, s in scores.items():
            window = s[:, :, :length]
            best = window.max(axis=2, keepdims=True)
            tied = window == best
            chain_reward = (rewards[:, :, :length] * tied).sum(axis=2) / tied.sum(axis=2)
            chain_sets[f"bon:{v}"] = (chain_reward, np.full((count, c_max), None, dtype=object), {v: best[..., 0]})
            if np.all(s >= 0):
                chain_sets[f"wmaj:{v}"] = (rewards[:, :, length - 1], last_answers, {v: s[:, :, length - 1]})
        for rule, (r, answers, sc) in chain_sets.items():
            chain_samples = scored_from_arrays(list(samples.prompt_ids), r, np.asarray(answers, dtype=object), sc)
            curve = per_prompt_curves(chain_samples, EvalConfig(seed=seed), rules=[rule])[rule]
            for c in range(1, c_max + 1):
                strategies.append(Strategy(layout.temperature, rule, c * length, "revise", chains=c))
                columns.append(curve.values[:, c - 1])
                costs.append(c * chain_cost)
    return StrategyTable(strategies, np.stack(columns, axis=1), list(samples.prompt_ids), np.stack(costs, axis=1),
                         unit, 1.0)


def strategy_costs(table: StrategyTable, probe: tuple[float, int] | None) -> np.ndarray:
    """Mean cost per prompt of each strategy, probes included in the samples unit: N + m with m probes (predicted
    difficulty), N without (oracle difficulty, which cannot be computed on new prompts). In the tokens unit the
    probes count as m sample-equivalents (``unit_size`` tokens each)."""
    n = table.mean_costs()
    return n if probe is None else n + probe[1] * table.unit_size
