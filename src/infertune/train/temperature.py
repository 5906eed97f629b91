"""Auto-temperature: B-STaR's rule, choosing the sampling temperature whose samples have the highest balance score.

B-STaR (Zeng et al. 2024, arXiv 2412.17256, Algorithm 1 and its released ``train_bstar.sh``) samples a small set of
training queries at every temperature of a grid (0.50 to 1.20 in steps of 0.05, 64 samples each) before each
iteration and trains the iteration at the temperature (and reward threshold) with the highest mean balance score
(``telemetry.balance_score``). When the policy's exploration collapses (too few distinct correct samples per query),
a higher temperature scores higher; when the samples get too noisy for the selection to stay correct, a lower one
does.

The trainer applies the rule every ``temperature_every`` steps as a local search: the candidates are the current
temperature and its neighbours one ``temperature_step`` away (inside [min_temperature, max_temperature]), all
sampled on the same probe prompts with the same seed, so the comparison is paired (every candidate's samples come
from the same uniforms; only the temperature differs). A run thus moves at most one step per probe instead of
searching B-STaR's whole grid each iteration, which would cost it ~15 times the probe samples. Ties keep the
current temperature. Probe samples train nothing; a step's training samples are drawn and scored at one temperature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class TemperatureChoice:
    temperature: float
    candidates: tuple[float, ...]
    balances: tuple[float, ...]


def candidate_temperatures(current: float, step: float, low: float, high: float) -> tuple[float, ...]:
    """The current temperature and its neighbours ± step, inside [low, high], ascending, without repeats."""
    if step <= 0 or not 0 < low <= high:
        raise ValueError(f"need step > 0 and 0 < low <= high, got step={step}, low={low}, high={high}")
    values = {round(min(max(t, low), high), 10) for t in (current - step, current, current + step)}
    return tuple(sorted(values))


def choose(candidates, balances, current: float) -> float:
    """The candidate with the highest balance score; among equals, the one nearest the current temperature.
    Candidates whose balance is not a number (no samples) are never chosen over one that has a balance."""
    b = np.asarray(balances, dtype=np.float64)
    t = np.asarray(candidates, dtype=np.float64)
    if not np.any(np.isfinite(b)):
        return float(current)
    best = np.nanmax(b)
    tied = np.flatnonzero(b == best)
    return float(t[tied[np.argmin(np.abs(t[tied] - current))]])


def bstar_step(current: float, balance_at: Callable[[float], float], *, step: float, low: float,
               high: float) -> TemperatureChoice:
    """One application of the rule: the balance score of fresh samples at each candidate (``balance_at(T)``), and
    the candidate that maximises it."""
    candidates = candidate_temperatures(current, step, low, high)
    balances = tuple(float(balance_at(t)) for t in candidates)
    return TemperatureChoice(choose(candidates, balances, current), candidates, balances)
