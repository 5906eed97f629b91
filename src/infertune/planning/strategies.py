"""Test-time strategies and what each is worth on every prompt: the table the planner chooses from.

A strategy is (temperature, selection rule, N). Its accuracy on a prompt is the unbiased estimate, from the run's
samples at that temperature, of what the rule picks from N samples: the per-prompt curves of the evaluation core,
so every strategy is scored on the same data, the way ``infertune eval`` scores it.

With predicted difficulty a prompt's first m samples are its probes: they decide its bin. Applying a plan then draws
the bin's N samples with indices m .. m + N − 1, never reusing a probe, so the samples selected from are independent
of the ones that chose the strategy (at any temperature: a sample's randomness depends on its index, not on the
temperature). The table therefore values every strategy on samples m .. n − 1 only, and a strategy costs N + m.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infertune.evaluation import EvalConfig, per_prompt_curves
from infertune.verify import compares_samples


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


def strategy_table(samples_by_temperature: dict, *, include_oracle: bool = False, seed: int = 0,
                   skip: int = 0) -> StrategyTable:
    """All (temperature, rule, N) strategies a run supports, valued on each prompt's samples ``skip`` .. n − 1 (skip
    = the probe count m). ``samples_by_temperature`` maps each temperature to a ``ScoredSamples`` of the same prompts
    (same order)."""
    from infertune.store import sample_columns

    temps = sorted(samples_by_temperature)
    ids = samples_by_temperature[temps[0]].prompt_ids
    columns, strategies = [], []
    for t in temps:
        s = samples_by_temperature[t]
        if skip:
            if s.n <= skip:
                raise ValueError(f"temperature {t}: {s.n} samples per prompt leave none beyond the {skip} probes")
            s = sample_columns(s, skip)
        if s.prompt_ids != ids:
            raise ValueError(f"temperature {t}: the prompts differ from temperature {temps[0]}; plan needs the same "
                             "prompts at every temperature")
        rules = ["maj"]
        for name, scores in s.scores.items():
            if compares_samples(name):
                continue  # its BoN@N from n > N samples would see samples a policy of N does not draw
            rules.append(f"bon:{name}")
            if np.all(scores >= 0):
                rules.append(f"wmaj:{name}")
        if include_oracle:
            rules.append("pass")
        curves = per_prompt_curves(s, EvalConfig(seed=seed), rules=rules)
        for rule, curve in sorted(curves.items()):
            for n in range(1, s.n + 1):
                strategies.append(Strategy(float(t), rule, n))
                columns.append(curve.values[:, n - 1])
    return StrategyTable(strategies, np.stack(columns, axis=1), list(ids))




def strategy_costs(table: StrategyTable, probe: tuple[float, int] | None) -> np.ndarray:
    """Samples a strategy draws per prompt, probes included: N + m with m probes (predicted difficulty), N without
    (oracle difficulty, which cannot be computed on new prompts)."""
    n = table.costs()
    return n if probe is None else n + probe[1]
