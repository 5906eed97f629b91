"""Rollout budgets per prompt: each step's samples go where the objective can learn from them (Knapsack RL).

Li et al. 2025 ("Knapsack RL: Unlocking Exploration of LLMs via Optimizing Budget Allocation", arXiv 2509.25849)
treat each prompt's rollouts as a knapsack item: giving prompt i n_i samples costs n_i and is worth
Value(n_i, p_i), p_i its success rate. Under a uniform n, prompts that are all-correct or all-wrong give GRPO a zero
gradient; solving max Σ_i Value(n_i, p_i) subject to Σ_i n_i = B moves their samples to prompts where the group
is likely to disagree. The paper's value for GRPO is P(the group is not all-equal) = 1 − p^n − (1 − p)^n times an
information-gain factor p(1 − p)²; here the value is the objective's own version of the first factor, P(the
objective's weights on the prompt's n samples are not all zero): the chance the prompt contributes any gradient.
With C correct samples among n and the reward as the verifier (a verifier's scores cannot be predicted from a success
rate), the weights depend only on (n, C), so the table M[n, c] = 1{weights on c ones and n − c zeros not all 0} is
computed once from the objective's weight function:

- rloo, grpo, dr-grpo: 0 < C < n (the group is not all-equal, the paper's factor);
- bon-exact at k: 0 < C ≤ min(n − 1, n − k + 1) (with more correct samples every k-subset's pick is right with or
  without any one sample, so every weight is 0; weights below 1e-10 of their parts count as 0 too (``objectives.
  combinatorics.cancelling_difference``), which moves the bound down at large n and k, e.g. from n = 39 at k = 16);
  bon-rl-v/-s and passk-chen likewise from their own weights; star: C > 0.

The issue asked for the expected magnitude E[Σ_i |w_i|] for the pass@k and Best-of-k objectives, and this module
used it until a review measured what it does: for an objective whose weights keep their expectation at every n
(rloo, bon-exact, bon-rl-v/-s), E[Σ_i |w_i|] is the same at every n (to 1e-12 under the binomial: 0.095 at p = 0.05
for rloo and bon-exact k = 1 at n = 5..32, 0.1715 for bon-exact k = 4), so it could rank prompts but not choose
their n, and the spare samples landed wherever rounding put them (bon-exact at k = 4, 32 candidates, budget 256:
4 prompts got 29 to 37 samples, the other 28 got 4 or 5).
The value counts an outcome whose weights are tiny (bon-exact at n = 16, k = 8 with 9 correct: largest weight 7.8e-5,
against 0.062 with 4 correct; bon-rlbp on an all-correct group) as much as one whose weights are large, and it drops
the paper's information-gain factor; it is exact about where an objective has no gradient at all, which is what the
allocation is for. The table assumes the reward selects (a learned verifier's scores cannot be predicted from a
success rate): with a learned verifier bon-exact's weights need not vanish past n − k + 1 correct samples, so the
value undercounts such prompts there.

An objective whose weights are never all zero (bon-rlb, which pushes down the samples of an all-wrong group too) has
the value 1 at every n and gives the allocation nothing to choose by; ``train`` refuses it
(``allocation_value_is_flat``). bon-rlbp and star are worth P(C > 0).

Estimator of the success rate: a Beta posterior per prompt; the data are the prompt's successes and trials over its
visits in this run, each earlier visit's counts multiplied by ``history_decay`` d at every later visit: d = 1 (the
default) counts every visit alike, d = 0 keeps the latest visit only (as the paper uses the previous epoch's rollouts:
the policy drifts, so older visits are stale; the default until real 300-step runs showed it finding fewer prompts
with a gradient than uniform allocation over the same draw, where d = 1 found more). An unseen prompt gets the
prior. The prior is fitted to the run by empirical Bayes (the default, ``prior_strength`` =
0): the Beta(α₀, β₀) that maximises the beta-binomial likelihood of every prompt's history, so that its spread
estimates the spread of success rates across this run's prompts (within the bounds below). A fixed prior, Beta(μs,
(1 − μ)s) with μ the pooled success rate and s = ``prior_strength`` pseudo-samples, is the alternative; it was the
default until a benchmark run showed how it misleads when each prompt has been seen once or twice: with μ ≈ 0.06 and
s = 1 the prior is Beta(0.06, 0.94), U-shaped, so a prompt seen 0 of 8 times is written off as p ≈ 0, and
reallocating over uniform's own prompts then found fewer prompts with a gradient than uniform did in the mean (−0.18
per step, interval −0.44..+0.08: not detected; benchmarks/rollouts.py; README). The fitted prior was not measured
best: in the frozen-policy simulation (benchmarks/rollouts_simulated.py) a 16-pseudo-sample prior did as well or
better (clearly better over a larger pool with drifting rates), and no prior made the allocation clearly better than
uniform allocation over the same prompts. It is the default because it is an estimate from the run rather than a setting. Instead of plugging
in a point estimate, the value is averaged over the posterior predictive: C ~ BetaBinomial(n, α, β), so an uncertain
prompt is worth less than one known to sit near p = 1/2.

The allocation is a multiple-choice knapsack, solved exactly by dynamic programming over the budget: every prompt
takes 0 samples (skipped) or between ``min_n`` and ``max_n``, and the total is exactly B. It depends only on the
history, never on the samples it is about to draw, so each sampled prompt's weights keep the expectation they have
at a fixed n, whatever its own n: for rloo and bon-exact the prompt's own gradient, for bon-rl-v and bon-rl-s Lemma
2's stated expectation (``KEEPS_EXPECTATION_AT_ANY_N``; tested by enumeration). For the others a prompt's expected
weight changes with its n (GRPO's standardised advantages, Dr. GRPO's (n − 1)/n, bon-rlb's and bon-rlbp's failure
probability estimated from the group, STaR's and passk-chen's weights), so a prompt given more samples also weighs
differently; the trainer warns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln

# What a prompt's earlier visits count for (1: every visit alike). Chosen on the training prompts' own counts
# (benchmarks/rollouts.py at 300 steps, rollouts_simulated.py): README, "Rollout allocation".
HISTORY_DECAY_DEFAULT = 1.0
# Objectives whose weights are not all zero exactly when the group is not all-equal (a baseline from its own mean).
GROUP_OBJECTIVES = frozenset({"rloo", "grpo", "dr-grpo"})
# Objectives whose expected update for a prompt is the same at every n (enumerated for every objective knapsack takes).
KEEPS_EXPECTATION_AT_ANY_N = ("rloo", "bon-exact", "bon-rl-v", "bon-rl-s")


@lru_cache(maxsize=32)
def outcome_values(objective: str, k: int, max_n: int) -> np.ndarray:
    """M[n, c] for n = 0..max_n, c = 0..max_n: 1 when the objective's weights on c correct and n − c wrong samples
    are not all zero, else 0 (also for c > n, and where the objective needs more samples than n)."""
    from infertune.objectives import get, sample_weights

    table = np.zeros((max_n + 1, max_n + 1))
    if objective in GROUP_OBJECTIVES:  # closed form (tested equal to the loop below): fast at large max_n
        n, c = np.arange(max_n + 1)[:, None], np.arange(max_n + 1)[None, :]
        table[:] = (c > 0) & (c < n)
        table.setflags(write=False)
        return table
    spec = get(objective)
    least = k + 1 if spec.needs_more_samples_than_k else k
    for size in range(max(least, 1), max_n + 1):
        for correct in range(size + 1):
            rewards = np.r_[np.ones(correct), np.zeros(size - correct)]
            table[size, correct] = float(np.any(sample_weights(objective, rewards, None, k=k) != 0))
    table.setflags(write=False)
    return table


def allocation_value_is_flat(objective: str, k: int, min_n: int, max_n: int) -> bool:
    """True when the objective's weights are non-zero at every outcome for every n in min_n..max_n: the value is 1
    whatever the success rate and n, so the knapsack has nothing to allocate by."""
    table = outcome_values(objective, k, max_n)
    return all(table[n, : n + 1].all() for n in range(min_n, max_n + 1))


def expected_values(table: np.ndarray, alpha, beta) -> np.ndarray:
    """V[i, n] = E[M[n, C]], C ~ BetaBinomial(n, α_i, β_i), for every prompt i and n = 0..max_n."""
    alpha = np.asarray(alpha, dtype=np.float64)[:, None, None]
    beta = np.asarray(beta, dtype=np.float64)[:, None, None]
    size = table.shape[0]
    n = np.arange(size, dtype=np.float64)[None, :, None]
    c = np.arange(size, dtype=np.float64)[None, None, :]
    valid = c <= n
    c_ok, rest = np.where(valid, c, 0.0), np.where(valid, n - c, 0.0)
    log_pmf = (gammaln(n + 1) - gammaln(c_ok + 1) - gammaln(rest + 1)
               + betaln(c_ok + alpha, rest + beta) - betaln(alpha, beta))
    pmf = np.where(valid, np.exp(log_pmf), 0.0)
    return (pmf * table[None]).sum(axis=2)


def solve(values, budget: int, min_n: int) -> np.ndarray:
    """The allocation n (one per prompt, each 0 or in [min_n, max_n], max_n = values.shape[1] − 1) that maximises
    Σ_i values[i, n_i] subject to Σ_i n_i = budget, exactly, by dynamic programming over the budget spent.

    O(prompts · budget · max_n). Among allocations of equal value, which one is returned is not part of the contract
    (the loop keeps the first n it finds for each prompt and budget). Raises ValueError when no allocation spends the
    budget exactly.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"values: expected [prompts, max_n + 1], got shape {v.shape}")
    if budget < 0 or min_n < 1:
        raise ValueError(f"budget must be >= 0 and min_n >= 1, got budget={budget}, min_n={min_n}")
    max_n = v.shape[1] - 1
    options = [0] + list(range(min_n, min(max_n, budget) + 1))
    best = np.full(budget + 1, -np.inf)
    best[0] = 0.0
    choices = np.zeros((v.shape[0], budget + 1), dtype=np.int64)
    for i in range(v.shape[0]):
        new = np.full(budget + 1, -np.inf)
        for n in options:
            candidate = np.full(budget + 1, -np.inf)
            candidate[n:] = best[: budget + 1 - n] + v[i, n]
            better = candidate > new
            new[better] = candidate[better]
            choices[i, better] = n
        best = new
    if not np.isfinite(best[budget]):
        raise ValueError(f"no allocation of {v.shape[0]} prompts, each 0 or {min_n}..{max_n} samples, spends exactly "
                         f"{budget} samples")
    out = np.zeros(v.shape[0], dtype=np.int64)
    left = budget
    for i in range(v.shape[0] - 1, -1, -1):
        out[i] = choices[i, left]
        left -= out[i]
    return out


EMPIRICAL_PRIOR_MIN_PROMPTS = 8
FALLBACK_PRIOR_STRENGTH = 2.0  # before that many prompts were seen: the pooled rate with 2 pseudo-samples
# The fitted prior's mean stays inside FITTED_MEAN_BOUNDS and its strength (α₀ + β₀) inside PRIOR_STRENGTH_BOUNDS: a
# run whose prompts all failed (or all succeeded) has a likelihood that keeps rising as the prior collapses onto 0 or
# 1. The bounds are where the fit stops, and they show in the allocation: prompts that vary less than binomial
# sampling would (say 8 prompts seen 1 of 8 times each) fit the upper strength bound, a prior so strong that every
# prompt is treated alike and the allocation ignores their histories; prompts seen all-wrong or all-right and
# nothing between fit the lower one, a U-shaped prior that trusts each prompt's own visit.
FITTED_MEAN_BOUNDS = (1e-4, 1 - 1e-4)
PRIOR_STRENGTH_BOUNDS = (0.1, 1000.0)


def fit_beta_prior(successes, trials) -> tuple[float, float]:
    """(α₀, β₀) maximising Σ_j log BetaBinomial(successes_j | trials_j, α₀, β₀), over mean μ in ``FITTED_MEAN_BOUNDS``
    and strength α₀ + β₀ in ``PRIOR_STRENGTH_BOUNDS`` (the binomial coefficients do not depend on the prior); the
    optimiser's answer is kept only if its likelihood is at least the starting point's (pooled mean, strength 2)."""
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(trials, dtype=np.float64)
    if s.shape != t.shape or s.size == 0 or np.any(t < 1) or np.any(s < 0) or np.any(s > t):
        raise ValueError("fit_beta_prior: expected matching non-empty arrays, 0 <= successes <= trials, trials >= 1")
    lowest, highest = FITTED_MEAN_BOUNDS
    mu0 = float(np.clip(s.sum() / t.sum(), lowest, highest))

    def negative_log_likelihood(x) -> float:
        mu, strength = expit(x[0]), np.exp(x[1])
        a, b = mu * strength, (1 - mu) * strength
        return float(-(betaln(s + a, t - s + b) - betaln(a, b)).sum())

    bounds = [tuple(np.log([lowest / (1 - lowest), highest / (1 - highest)])), tuple(np.log(PRIOR_STRENGTH_BOUNDS))]
    start = np.array([np.log(mu0 / (1 - mu0)), np.log(2.0)])
    best = minimize(negative_log_likelihood, start, method="L-BFGS-B", bounds=bounds).x
    if negative_log_likelihood(best) > negative_log_likelihood(start):
        best = start
    mu, strength = float(expit(best[0])), float(np.exp(best[1]))
    return mu * strength, (1 - mu) * strength


@dataclass
class SuccessHistory:
    """Each prompt's successes and trials in this run (the allocation's evidence): the sum over its visits, each
    visit's counts multiplied by ``decay`` at every later one (1, the default: every visit alike; 0: the latest visit
    only; visits, not steps: a prompt's history does not age while it is not drawn)."""

    latest: dict[str, tuple[float, float]] = field(default_factory=dict)  # the histories (named so in checkpoints)
    decay: float = HISTORY_DECAY_DEFAULT

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"history decay must be in [0, 1] (0: the latest visit only), got {self.decay}")

    def record(self, prompt_ids, rewards_rows) -> None:
        for pid, rewards in zip(prompt_ids, rewards_rows):
            r = np.asarray(rewards, dtype=np.float64)
            if r.size:
                successes, trials = self.latest.get(pid, (0.0, 0.0)) if self.decay else (0.0, 0.0)
                self.latest[pid] = (self.decay * successes + float(r.sum()), self.decay * trials + float(r.size))

    def prior_mean(self) -> float:
        """Pooled success rate of the histories (each prompt weighted by its, possibly decayed, trials; 0.5 before
        any), kept inside [0.01, 0.99]."""
        if not self.latest:
            return 0.5
        successes, trials = np.array(list(self.latest.values())).T
        return float(np.clip(successes.sum() / trials.sum(), 0.01, 0.99))

    def prior(self, prior_strength: float) -> tuple[float, float]:
        """(α₀, β₀): fitted by empirical Bayes when ``prior_strength`` is 0 (module docstring), else centred on the
        pooled rate with ``prior_strength`` pseudo-samples. Before ``EMPIRICAL_PRIOR_MIN_PROMPTS`` prompts have been
        seen the empirical prior has too little to fit and is the pooled one with ``FALLBACK_PRIOR_STRENGTH``
        pseudo-samples (Beta(1, 1) before any visit)."""
        mu = self.prior_mean()
        if prior_strength > 0:
            return mu * prior_strength, (1 - mu) * prior_strength
        if len(self.latest) < EMPIRICAL_PRIOR_MIN_PROMPTS:
            return mu * FALLBACK_PRIOR_STRENGTH, (1 - mu) * FALLBACK_PRIOR_STRENGTH
        successes, trials = np.array(list(self.latest.values())).T
        return fit_beta_prior(successes, trials)

    def posterior(self, prompt_ids, prior_strength: float) -> tuple[np.ndarray, np.ndarray]:
        """(α, β) of each prompt's Beta posterior."""
        alpha0, beta0 = self.prior(prior_strength)
        seen = [self.latest.get(pid, (0.0, 0)) for pid in prompt_ids]
        successes = np.array([s for s, _ in seen])
        trials = np.array([t for _, t in seen], dtype=np.float64)
        return alpha0 + successes, beta0 + trials - successes

    def state(self) -> dict:
        return {pid: list(v) for pid, v in self.latest.items()}

    @classmethod
    def from_state(cls, state: dict, decay: float = HISTORY_DECAY_DEFAULT) -> "SuccessHistory":
        return cls({pid: (float(s), float(t)) for pid, (s, t) in state.items()}, decay)


def allocate(prompt_ids, history: SuccessHistory, *, objective: str, k: int, budget: int, min_n: int, max_n: int,
             prior_strength: float) -> np.ndarray:
    """Samples for each candidate prompt (0: skipped) under ``budget``, for ``objective`` (module docstring)."""
    alpha, beta = history.posterior(prompt_ids, prior_strength)
    values = expected_values(outcome_values(objective, k, max_n), alpha, beta)
    return solve(values, budget, min_n)
