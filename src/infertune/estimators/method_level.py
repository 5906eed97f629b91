"""Method-level intervals: how well a fine-tuning *method* does, over the problems and fine-tuning seeds a user meets.

A model fine-tuned with a method depends on its seed, and a benchmark on its problems; both are sources of variance,
crossed (every seed's model is evaluated on the same problems). Values x[s, p] of one arm (seed s, problem p) follow
x = μ + u_s + v_p + e_sp, and the arm's mean over S seeds and P problems has variance σ²_u/S + σ²_v/P + σ²_e/(SP).
The two-way ANOVA mean squares give it without bias: (max(MS_seed − MS_err, 0) + MS_prompt) / (SP). With as few
seeds as a CPU budget allows, the seed component is estimated from S − 1 degrees of freedom, so the interval uses a t
quantile with Satterthwaite's degrees of freedom instead of a normal one (a bootstrap over three seeds has only ten
distinct resamples and covers far less than it claims). Differences between arms keep the problems paired: the
per-problem differences of seed means carry the problem and residual variance, and each arm adds its own seed
variance. An arm with one model (the base) has no seed variance; its interval is over problems only.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from infertune.estimators.bootstrap import Interval


def _components(x: np.ndarray):
    """(seed variance of the mean and its Satterthwaite terms, per-problem seed means) for x [S, P, ...]."""
    n_seeds, n_prompts = x.shape[:2]
    prompt_means = x.mean(axis=0)
    if n_seeds < 2:
        zero = np.zeros(x.shape[2:])
        return zero, zero, prompt_means
    grand = x.mean(axis=(0, 1))
    seed_means = x.mean(axis=1)
    ms_seed = n_prompts * ((seed_means - grand) ** 2).sum(axis=0) / (n_seeds - 1)
    resid = x - seed_means[:, None] - prompt_means[None] + grand
    ms_err = (resid**2).sum(axis=(0, 1)) / ((n_seeds - 1) * (n_prompts - 1))
    scale = n_seeds * n_prompts
    var = np.maximum(ms_seed - ms_err, 0.0) / scale
    # Satterthwaite: the variance of that estimate, from the mean squares' own degrees of freedom.
    var_of_var = np.where(var > 0, (ms_seed**2 / (n_seeds - 1) + ms_err**2 / ((n_seeds - 1) * (n_prompts - 1)))
                          / scale**2, 0.0)
    return var, var_of_var, prompt_means


def _t_interval(point, parts: list[tuple[np.ndarray, np.ndarray]], confidence: float) -> Interval:
    """point ± t·sqrt(Σ var_i), df = (Σ var_i)² / Σ var_of_var_i (Satterthwaite)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    total = sum(v for v, _ in parts)
    denom = sum(w for _, w in parts)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, total**2 / np.where(denom > 0, denom, 1.0), np.inf)
    df = np.maximum(df, 1.0)
    half = stats.t.ppf(0.5 + confidence / 2, df) * np.sqrt(total)
    return Interval(np.asarray(point), point - half, point + half, confidence, 0)


def _check(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[1] < 2:
        raise ValueError(f"{name}: expected shape [seeds, problems, ...] with at least 2 problems, got {arr.shape}")
    return arr


def method_interval(values, confidence: float = 0.95) -> Interval:
    """The arm's mean over seeds and problems with a method-level interval; values [seeds, problems, ...]."""
    x = _check(values, "values")
    n_prompts = x.shape[1]
    seed_var, seed_vv, prompt_means = _components(x)
    prompt_var = prompt_means.var(axis=0, ddof=1) / n_prompts  # = MS_prompt / (SP): problem + residual variance
    return _t_interval(x.mean(axis=(0, 1)), [(seed_var, seed_vv), (prompt_var, prompt_var**2 / (n_prompts - 1))],
                       confidence)


def method_difference(a, b, confidence: float = 0.95) -> Interval:
    """Mean of arm a minus arm b, evaluated on the same problems, with a method-level interval (problems paired,
    each arm's seeds its own)."""
    xa, xb = _check(a, "a"), _check(b, "b")
    if xa.shape[1:] != xb.shape[1:]:
        raise ValueError(f"arms must share problems and trailing shape: {xa.shape} vs {xb.shape}")
    n_prompts = xa.shape[1]
    va, vva, pa = _components(xa)
    vb, vvb, pb = _components(xb)
    diff_var = (pa - pb).var(axis=0, ddof=1) / n_prompts
    point = xa.mean(axis=(0, 1)) - xb.mean(axis=(0, 1))
    return _t_interval(point, [(va, vva), (vb, vvb), (diff_var, diff_var**2 / (n_prompts - 1))], confidence)
